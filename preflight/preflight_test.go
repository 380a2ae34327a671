package preflight

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/discover"
)

// fake writes an executable script standing in for an frp binary.
func fake(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "frpc")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func facts(bin string) discover.Facts {
	return discover.Facts{FRPBinary: "frpc", FRPPath: bin, FRPConfig: "/etc/frp/c.toml"}
}

func TestCheckKeepsFRPsWords(t *testing.T) {
	ok := fake(t, `[ "$1" = verify ] && [ "$2" = -c ] && echo "frpc: the configuration file $3 syntax is ok"`)
	bad := fake(t, "printf 'parse config: \\033[31mproxy [p1] already exists\\033[0m\\n' >&2; exit 1\n")
	killed := fake(t, "kill -9 $$\n")
	units := []string{"ok.service", "bad.service", "gone.service", "killed.service", "notfrp.service"}
	got := Check(context.Background(), units, map[string]discover.Facts{
		"ok.service":     facts(ok),
		"bad.service":    facts(bad),
		"gone.service":   facts(filepath.Join(t.TempDir(), "nothing")),
		"killed.service": facts(killed),
		"notfrp.service": {},
	}, nil, 2)
	want := map[string]string{"bad.service": "parse config: proxy [p1] already exists"}
	if len(got) != len(want) || got["bad.service"] != want["bad.service"] {
		t.Errorf("refused %q, want %q (a check that cannot run refuses nothing; frp's words sanitised)", got, want)
	}
}

// A binary that serves instead of verifying, and forks as it does, is
// ended with everything it started when the check's time is up; one that
// exits but leaves a child holding its output is not waited for.
func TestCheckLeavesNoProcessBehind(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"serves forever", "sleep 3600 &\necho $! > \"$PIDFILE\"\nwait\n"},
		{"exits leaving a child", "sleep 3600 &\necho $! > \"$PIDFILE\"\nexit 0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidfile := filepath.Join(t.TempDir(), "child.pid")
			bin := fake(t, strings.Replace(tc.body, "$PIDFILE", pidfile, 1))
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			got := Check(ctx, []string{"u.service"}, map[string]discover.Facts{"u.service": facts(bin)}, nil, 1)
			if len(got) != 0 {
				t.Errorf("refused %q: a check that cannot tell refuses nothing", got)
			}
			// The bound is the check's deadline plus WaitDelay, far below
			// the hour the child would hold its output.
			if d := time.Since(start); d > time.Minute {
				t.Errorf("check took %s", d)
			}
			data, err := os.ReadFile(pidfile)
			if err != nil {
				t.Fatalf("the stand-in did not start its child: %v", err)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
			// The child was SIGKILLed; its parent (the stand-in or init)
			// reaps it, so await its disappearance.
			for syscall.Kill(pid, 0) == nil {
				if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && strings.Contains(string(st), ") Z ") {
					break
				}
				if time.Since(start) > time.Minute {
					t.Fatalf("child %d of the check still runs", pid)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// frp is asked again only about what it has not accepted as it is: a
// running frp started from the binary on disk, whose config has not
// changed since it read it, is not checked (frp exits on a config it
// refuses); a changed config, a replaced binary, a unit that does not
// run are. A templated config is not checked: frp renders it from its
// unit's environment, which the check does not have.
func TestCheckAsksOnlyAboutWhatFRPHasNotAccepted(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "c.toml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const valid = "serverAddr = \"127.0.0.1\"\nserverPort = 7000\n[[proxies]]\nname = \"p\"\ntype = \"tcp\"\nlocalPort = 22\nremotePort = 6000\n"
	refusing := fake(t, "echo 'refused'; exit 1\n")
	st, err := os.Stat(refusing)
	if err != nil {
		t.Fatal(err)
	}
	binAt := changed(st)
	for _, tc := range []struct {
		name    string
		text    string
		mainPID int
		started func(configAt time.Time) time.Time
		checked bool
	}{
		{"runs, config and binary older", valid, 42, func(c time.Time) time.Time { return later(c, binAt).Add(time.Second) }, false},
		{"config and binary changed after the start", valid, 42, func(c time.Time) time.Time { return binAt.Add(-time.Hour) }, true},
		{"binary replaced after the start", valid, 42, func(c time.Time) time.Time { return replaceAfter(t, refusing, later(c, binAt)) }, true},
		{"does not run", valid, 0, func(c time.Time) time.Time { return time.Time{} }, true},
		{"start time unknown", valid, 42, func(c time.Time) time.Time { return time.Time{} }, true},
		{"templated", "serverAddr = \"{{ .Envs.FRP_SERVER }}\"\n", 0, func(c time.Time) time.Time { return time.Time{} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write(tc.text)
			cst, err := os.Stat(conf)
			if err != nil {
				t.Fatal(err)
			}
			f := discover.Facts{FRPBinary: "frpc", FRPPath: refusing, FRPConfig: conf, MainPID: tc.mainPID, Started: tc.started(changed(cst))}
			got := Check(context.Background(), []string{"u.service"}, map[string]discover.Facts{"u.service": f}, nil, 1)
			if checked := got["u.service"] != ""; checked != tc.checked {
				t.Errorf("checked = %v (refused %q), want %v", checked, got, tc.checked)
			}
		})
	}
	// A reload in place recorded after the change counts as frp's read:
	// the process started from this binary, then its config changed
	// (written until its change time is after the start, on a coarse
	// clock), then it was reloaded.
	bst, err := os.Stat(refusing)
	if err != nil {
		t.Fatal(err)
	}
	started := changed(bst)
	var cfgAt time.Time
	for !cfgAt.After(started) {
		write(valid)
		cst, err := os.Stat(conf)
		if err != nil {
			t.Fatal(err)
		}
		cfgAt = changed(cst)
	}
	f := discover.Facts{FRPBinary: "frpc", FRPPath: refusing, FRPConfig: conf, MainPID: 42, Started: started}
	units := map[string]discover.Facts{"u.service": f}
	if got := Check(context.Background(), []string{"u.service"}, units, nil, 1); len(got) == 0 {
		t.Errorf("a config changed after its frp started was not checked")
	}
	reloaded := map[string]time.Time{"u.service": cfgAt.Add(time.Millisecond)}
	if got := Check(context.Background(), []string{"u.service"}, units, reloaded, 1); len(got) != 0 {
		t.Errorf("a config reloaded in place after its change was checked again: %q", got)
	}
}

func changed(st os.FileInfo) time.Time {
	s := st.Sys().(*syscall.Stat_t)
	return time.Unix(s.Ctim.Unix())
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// replaceAfter changes bin's inode (as an upgrade that writes it in place
// does) until its change time is after at, which it returns: file times
// come from a coarse clock.
func replaceAfter(t *testing.T, bin string, at time.Time) time.Time {
	t.Helper()
	for {
		if err := os.Chmod(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(bin)
		if err != nil {
			t.Fatal(err)
		}
		if changed(st).After(at) {
			return at
		}
	}
}
