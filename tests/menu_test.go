package tests

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

var updateFixtures = flag.Bool("update", false, "rewrite tests/testdata fixtures from this run")

// tmux drives a terminal session as the sandbox user.
type tmux struct {
	t      *testing.T
	sb     *sandbox.Sandbox
	sock   string
	status string // where start's wrapper writes the exit status
}

func (x *tmux) run(args ...string) string {
	x.t.Helper()
	cmd := x.sb.Command(context.Background(), "tmux", append([]string{"-S", x.sock}, args...)...)
	cmd.Env = append(cmd.Env, "TERM=xterm-256color")
	out, err := cmd.CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

func (x *tmux) pane() string { return x.run("capture-pane", "-p", "-t", "menu") }

// start opens the session "menu" running argv in a terminal of the given
// size. The command runs under a wrapper that writes its exit
// status to a file when it ends, for waitExit: tmux 3.3 has been seen in
// CI both to mark a pane dead before drawing its last bytes and to leave
// an exited pane process unreaped, so neither the screen nor the pane's
// state is a reliable sign that the program ended.
func (x *tmux) start(width, height int, argv ...string) {
	x.status = x.sock + ".status"
	x.run(append([]string{"-f", "/dev/null", "new-session", "-d", "-s", "menu", "-x", fmt.Sprint(width), "-y", fmt.Sprint(height),
		"sh", "-c", `"$@"; echo $? >"$0.tmp" && mv "$0.tmp" "$0"`, x.status}, argv...)...)
	// Keep the pane after the program exits, to read its last words.
	x.run("set-option", "-t", "menu", "remain-on-exit", "on")
}

// stop ends the tmux server when the test ends.
func (x *tmux) stop() {
	x.t.Cleanup(func() { _ = x.sb.Command(context.Background(), "tmux", "-S", x.sock, "kill-server").Run() })
}

// waitExit waits for the program started by start to end, and fails the
// test unless it exited with status 0.
func (x *tmux) waitExit(what string) {
	x.t.Helper()
	if st := x.waitStatus(what); st != "0" {
		x.t.Fatalf("%s: exit status %s, want 0; screen:\n%s", what, st, x.pane())
	}
}

// waitStatus waits for the program started by start to end and returns
// its exit status.
func (x *tmux) waitStatus(what string) string {
	x.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(x.status); err == nil {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("timed out waiting for %s; screen:\n%s", what, x.pane())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitPane polls the screen until cond holds: a terminal offers no event
// to wait on, so this is a bounded poll of what a person would see.
func (x *tmux) waitPane(what string, cond func(string) bool) string {
	x.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		p := x.pane()
		if cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("timed out waiting for %s; screen:\n%s", what, p)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMenuRestartAllInTmux chooses "Restart all" in a stand-in MoonFRP menu
// running in a real terminal, over 50 sandbox units with three broken.
func TestMenuRestartAllInTmux(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux is not installed (make deps installs it)")
		}
		t.Skip("tmux is not installed")
	}
	specs := sandbox.Fleet(48, 300*time.Millisecond)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	work := filepath.Join(sb.RuntimeDir, "menu")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	copyInto(t, work, "../bash/moonfrp-bulk.sh", "bash/moonfrp-services.sh", "bash/menu.sh", binary)

	x := &tmux{t: t, sb: sb, sock: filepath.Join(sb.RuntimeDir, "tmux.sock")}
	x.start(160, 60, "env", "SHIM="+filepath.Join(work, "moonfrp-bulk.sh"), "SERVICES_SH="+filepath.Join(work, "moonfrp-services.sh"),
		"MOONFRP_BULK_BIN="+filepath.Join(work, "moonfrp-bulk"), "MOONFRP_BULK_ARGS=--user",
		"bash", filepath.Join(work, "menu.sh"))
	t.Cleanup(func() {
		cmd := sb.Command(context.Background(), "tmux", "-S", x.sock, "kill-server")
		_ = cmd.Run()
	})
	x.waitPane("the menu prompt", func(p string) bool { return strings.Contains(p, "Choice:") })
	x.run("send-keys", "-t", "menu", "3", "Enter")

	// While it runs, the progress is one line, redrawn in place.
	live := x.waitPane("the live progress line", func(p string) bool { return strings.Contains(p, "Progress: ") })
	if n := strings.Count(live, "Progress: "); n != 1 {
		t.Errorf("%d progress lines on screen mid-run, want one redrawn line:\n%s", n, live)
	}
	if !regexp.MustCompile(`(?m)^Progress: \d+/50 services\.\.\. \d+ ok, \d+ failed, \d+ running`).MatchString(live) {
		t.Errorf("live line not as expected:\n%s", live)
	}

	final := x.waitPane("the prompt to come back", func(p string) bool { return strings.Count(p, "Choice:") == 2 })
	screen := normalise(final)
	if strings.Contains(screen, "Progress: ") {
		t.Errorf("the progress line was left on screen:\n%s", screen)
	}
	if !regexp.MustCompile(`(?m)^Choice:$`).MatchString(screen) {
		t.Errorf("the menu prompt is not intact at the start of its line:\n%s", screen)
	}
	fixture := filepath.Join("testdata", "menu-restart-all.txt")
	if *updateFixtures {
		if err := os.WriteFile(fixture, []byte(screen), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatalf("read fixture (go test -run TestMenu -update writes it): %v", err)
	}
	if screen != string(want) {
		t.Errorf("screen differs from %s:\n--- got\n%s\n--- want\n%s", fixture, screen, want)
	}

	x.run("send-keys", "-t", "menu", "0", "Enter")
	x.waitExit("the menu to close")
}

var (
	restartCount = regexp.MustCompile(`\(auto-restart loop(, \d+ restarts?)?\)`)
	elapsed      = regexp.MustCompile(` in (\d+m)?\d+\.\ds$`)
)

// normalise drops trailing blanks, the elapsed time of a run and the
// restart counts of crash-looping units (both depend on timing),
// and sorts each run of FAILED lines (failures are printed as they
// happen, in whatever order they happen).
func normalise(pane string) string {
	var lines []string
	for _, l := range strings.Split(pane, "\n") {
		l = strings.TrimRight(l, " ")
		if strings.HasPrefix(l, "Bulk ") {
			l = elapsed.ReplaceAllString(l, " in N.Ns")
		}
		lines = append(lines, l)
	}
	for i := 0; i < len(lines); {
		j := i
		for j < len(lines) && strings.HasPrefix(lines[j], "FAILED ") {
			j++
		}
		sort.Strings(lines[i:j])
		i = max(j, i+1)
	}
	s := strings.TrimRight(strings.Join(lines, "\n"), "\n") + "\n"
	return restartCount.ReplaceAllString(s, "(auto-restart loop, N restarts)")
}
