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
	}, 2)
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
			got := Check(ctx, []string{"u.service"}, map[string]discover.Facts{"u.service": facts(bin)}, 1)
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
