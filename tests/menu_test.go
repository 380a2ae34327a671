package tests

import (
	"context"
	"flag"
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
	t    *testing.T
	sb   *sandbox.Sandbox
	sock string
}

func (x tmux) run(args ...string) string {
	x.t.Helper()
	cmd := x.sb.Command(context.Background(), "tmux", append([]string{"-S", x.sock}, args...)...)
	cmd.Env = append(cmd.Env, "TERM=xterm-256color")
	out, err := cmd.CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

func (x tmux) pane() string { return x.run("capture-pane", "-p", "-t", "menu") }

// waitPane polls the screen until cond holds: a terminal offers no event
// to wait on, so this is a bounded poll of what a person would see.
func (x tmux) waitPane(what string, cond func(string) bool) string {
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

	x := tmux{t: t, sb: sb, sock: filepath.Join(sb.RuntimeDir, "tmux.sock")}
	x.run("-f", "/dev/null", "new-session", "-d", "-s", "menu", "-x", "160", "-y", "60",
		"env", "SHIM="+filepath.Join(work, "moonfrp-bulk.sh"), "SERVICES_SH="+filepath.Join(work, "moonfrp-services.sh"),
		"MOONFRP_BULK_BIN="+filepath.Join(work, "moonfrp-bulk"), "MOONFRP_BULK_ARGS=--user",
		"bash", filepath.Join(work, "menu.sh"))
	// Keep the pane after the menu exits, to read its last words.
	x.run("set-option", "-t", "menu", "remain-on-exit", "on")
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
	x.waitPane("the menu to close", func(p string) bool { return strings.Contains(p, "menu closed") })
}

var restartCount = regexp.MustCompile(`\(auto-restart loop(, \d+ restarts?)?\)`)

// normalise drops trailing blanks and the restart counts of crash-looping
// units (how many restarts systemd managed meanwhile depends on timing),
// and sorts each run of FAILED lines (failures are printed as they
// happen, in whatever order they happen).
func normalise(pane string) string {
	var lines []string
	for _, l := range strings.Split(pane, "\n") {
		lines = append(lines, strings.TrimRight(l, " "))
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
