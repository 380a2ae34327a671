package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// treeHashes maps each file of dir to its sha256.
func treeHashes(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	h := map[string][32]byte{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h[e.Name()] = sha256.Sum256(data)
	}
	return h
}

// installStandIn copies the stand-in MoonFRP (tests/moonfrp) into dir,
// as MoonFRP's install.sh lays out its modules: all in one directory.
func installStandIn(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("moonfrp")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join("moonfrp", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if e.Name() == "moonfrp" || e.Name() == "moonfrp.sh" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// integrateCmd runs `moonfrp-bulk integrate` as root, as an operator would.
func integrateCmd(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"integrate"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	t.Logf("integrate %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// TestIntegrateTakesEffectThroughMoonFRPsEntryPoints wires the shim into a
// stand-in MoonFRP that loads moonfrp-services.sh five times, as the real
// one does, and drives every entry point that reaches the bulk functions:
// the service CLI with and without --tag=, service bulk, and the menu's
// Restart All in a real terminal. --undo must restore the files byte for
// byte, and MoonFRP's own serial code must run again.
func TestIntegrateTakesEffectThroughMoonFRPsEntryPoints(t *testing.T) {
	specs := append(sandbox.SlowStop("moonfrp-client", 4, 100*time.Millisecond),
		sandbox.Spec{Name: "moonfrp-server", Behaviour: sandbox.Up, StopDelay: 100 * time.Millisecond},
		sandbox.Spec{Name: "moonfrp-client-9", Behaviour: sandbox.Crash, Message: "login to the server failed: authorization failed"})
	for i := range specs {
		specs[i].Config = "/etc/frp/" + strings.TrimPrefix(specs[i].Name, "moonfrp-") + ".toml"
	}
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	dataDir := filepath.Join(sb.RuntimeDir, "data")
	if err := sandbox.WriteIndex(dataDir, []sandbox.IndexEntry{
		{Path: "/etc/frp/client-1.toml", Type: "client", Tags: map[string]string{"env": "prod"}},
		{Path: "/etc/frp/client-3.toml", Type: "client", Tags: map[string]string{"env": "prod"}},
	}); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(sb.RuntimeDir, "usr-local-bin")
	shimDir := filepath.Join(sb.RuntimeDir, "share", "moonfrp-bulk")
	installStandIn(t, tree)
	original := treeHashes(t, tree)
	healthy := []string{"moonfrp-server", "moonfrp-client-1", "moonfrp-client-2", "moonfrp-client-3", "moonfrp-client-4"}

	moonfrp := func(args ...string) result {
		t.Helper()
		cmd := sb.Command(context.Background(), filepath.Join(tree, "moonfrp"), args...)
		cmd.Env = append(cmd.Env, "MOONFRP_BULK_ARGS=--user", "MOONFRP_DATA_DIR="+dataDir)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		r := result{stdout: stdout.String(), stderr: stderr.String(), wall: time.Since(start)}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		t.Logf("moonfrp %s: exit %d in %s\n%s%s", strings.Join(args, " "), r.code, r.wall.Round(time.Millisecond), r.stdout, r.stderr)
		return r
	}
	changed := func(before map[string]string) []string {
		var c []string
		for u, id := range invocationIDs(t, sb, healthy) {
			if id != before[u] {
				c = append(c, u)
			}
		}
		return c
	}

	r := integrateCmd(t, "--moonfrp-dir", tree, "--shim-dir", shimDir)
	wantCode(t, r, 0)
	wantContains(t, "integrate", r.stdout, "11 of 11 service functions run through moonfrp-bulk")
	r = integrateCmd(t, "--moonfrp-dir", tree, "--shim-dir", shimDir)
	wantCode(t, r, 0)
	wantContains(t, "second integrate", r.stdout, "already integrated")
	svc, _ := os.ReadFile(filepath.Join(tree, "moonfrp-services.sh"))
	if n := strings.Count(string(svc), "# >>> moonfrp-bulk >>>"); n != 1 {
		t.Fatalf("%d blocks after two integrates, want 1", n)
	}
	r = integrateCmd(t, "--moonfrp-dir", tree, "--shim-dir", shimDir, "--check")
	wantCode(t, r, 0)
	wantContains(t, "check", r.stdout, "Integrated: every service function runs through moonfrp-bulk.")

	t.Run("service restart", func(t *testing.T) {
		before := invocationIDs(t, sb, healthy)
		r := moonfrp("service", "restart")
		// moonfrp.sh runs under set -e: the shim's return value (one
		// failed unit) becomes its exit status.
		wantCode(t, r, 1)
		wantContains(t, "output", r.stderr, "Bulk restart complete: 5 succeeded, 1 failed", "  - moonfrp-client-9: ")
		if strings.Contains(r.stdout+r.stderr, "Restarting all MoonFRP services") || strings.Contains(r.stdout+r.stderr, "SERIAL") {
			t.Error("MoonFRP's serial code ran")
		}
		if c := changed(before); len(c) != len(healthy) {
			t.Errorf("restarted %v, want all of %v", c, healthy)
		}
		// MoonFRP's own restart stops everything, sleeps 2 s, then starts
		// everything: each unit is down for over 2 s. Through moonfrp-bulk
		// each unit is restarted in place.
		for _, u := range healthy {
			down := atou(sb.Show(context.Background(), u, "InactiveEnterTimestampMonotonic"))
			up := atou(sb.Show(context.Background(), u, "ActiveEnterTimestampMonotonic"))
			if up < down || up-down > 1_500_000 {
				t.Errorf("%s was down for %.1fs between stop and start: the serial restart's pause", u, float64(up-down)/1e6)
			}
		}
	})
	t.Run("service restart --tag", func(t *testing.T) {
		before := invocationIDs(t, sb, healthy)
		r := moonfrp("service", "restart", "all", "--tag=env:prod")
		wantCode(t, r, 0)
		wantContains(t, "output", r.stderr, "Bulk restart complete: 2 succeeded, 0 failed")
		if c := strings.Join(changed(before), " "); c != "moonfrp-client-1 moonfrp-client-3" && c != "moonfrp-client-3 moonfrp-client-1" {
			t.Errorf("restarted %q, want exactly the env:prod clients", c)
		}
	})
	t.Run("service bulk", func(t *testing.T) {
		before := invocationIDs(t, sb, healthy)
		r := moonfrp("service", "bulk", "--operation=restart", "--filter=name:client-2", "--max-parallel=3")
		wantCode(t, r, 0)
		wantContains(t, "output", r.stderr, "up to 3 at a time", "Bulk restart complete: 1 succeeded, 0 failed")
		if c := changed(before); len(c) != 1 || c[0] != "moonfrp-client-2" {
			t.Errorf("restarted %v, want moonfrp-client-2", c)
		}
	})
	t.Run("menu restart all", func(t *testing.T) {
		if _, err := exec.LookPath("tmux"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("tmux is not installed (make deps installs it)")
			}
			t.Skip("tmux is not installed")
		}
		before := invocationIDs(t, sb, healthy)
		x := &tmux{t: t, sb: sb, sock: filepath.Join(sb.RuntimeDir, "tmux-integrate.sock")}
		x.start(160, 50, "env", "MOONFRP_BULK_ARGS=--user", "MOONFRP_DATA_DIR="+dataDir, filepath.Join(tree, "moonfrp"))
		t.Cleanup(func() { _ = sb.Command(context.Background(), "tmux", "-S", x.sock, "kill-server").Run() })
		x.waitPane("the main menu", func(p string) bool { return strings.Contains(p, "2) Service Management") })
		x.run("send-keys", "-t", "menu", "2", "Enter")
		x.waitPane("the service menu", func(p string) bool { return strings.Contains(p, "3) Restart All Services") })
		x.run("send-keys", "-t", "menu", "3", "Enter")
		screen := x.waitPane("the restart to finish", func(p string) bool { return strings.Contains(p, "Press Enter to continue") })
		wantContains(t, "screen", screen, "Bulk restart complete: 5 succeeded, 1 failed",
			"[WARN] Restart operation reported failures. Review service logs for more information.")
		if strings.Contains(screen, "Restarting all MoonFRP services") {
			t.Errorf("the menu ran MoonFRP's serial restart:\n%s", screen)
		}
		x.run("send-keys", "-t", "menu", "Enter")
		x.run("send-keys", "-t", "menu", "0", "Enter")
		x.run("send-keys", "-t", "menu", "0", "Enter")
		x.waitExit("the menu to close")
		if c := changed(before); len(c) != len(healthy) {
			t.Errorf("restarted %v, want all of %v", c, healthy)
		}
	})

	r = integrateCmd(t, "--moonfrp-dir", tree, "--shim-dir", shimDir, "--undo")
	wantCode(t, r, 0)
	after := treeHashes(t, tree)
	if len(after) != len(original) {
		t.Errorf("files after --undo: %d, before integrate: %d", len(after), len(original))
	}
	for name, h := range original {
		if after[name] != h {
			t.Errorf("%s differs from the original after --undo", name)
		}
	}
	if _, err := os.Stat(shimDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("shim directory left after --undo: %v", err)
	}
	r = integrateCmd(t, "--moonfrp-dir", tree, "--shim-dir", shimDir, "--check")
	wantCode(t, r, 1)
	wantContains(t, "check after undo", r.stdout, "Not integrated", "Run 'moonfrp-bulk integrate' to restore it.")
	r = moonfrp("service", "stop")
	wantCode(t, r, 0)
	wantContains(t, "MoonFRP's own stop", r.stdout, "SERIAL stop_all_services done")
}

func atou(s string) uint64 { n, _ := strconv.ParseUint(s, 10, 64); return n }

// On a booted host, as root: integrate refuses a MoonFRP file that
// another user owns (and leaves it, and its owner, as they were), a
// MoonFRP directory that anyone may write, and --check never sources a
// module it refuses.
func TestHostIntegrateRefusesHostileOwnership(t *testing.T) {
	h := newHost(t)
	installStandInOnHost(t, h)
	if err := h.Install(binary, "/usr/local/bin/moonfrp-bulk", 0o755); err != nil {
		t.Fatal(err)
	}
	services := "/usr/local/bin/moonfrp-services.sh"
	before, err := os.ReadFile(h.Proc(services))
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, hostRun(t, h, "chown", "nobody:nogroup", services), 0)
	r := hostRun(t, h, "moonfrp-bulk", "integrate")
	wantCode(t, r, 3)
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 || !strings.Contains(lines[0], services+" belongs to uid 65534") {
		t.Errorf("integrate on a file of nobody's: want one line naming it, got:\n%s", r.stderr)
	}
	after, _ := os.ReadFile(h.Proc(services))
	owner, _ := h.Run(context.Background(), "stat", "-c", "%U", services)
	if string(after) != string(before) || strings.TrimSpace(owner) != "nobody" {
		t.Errorf("the refused file changed (owner now %q)", owner)
	}
	wantCode(t, hostRun(t, h, "chown", "root:root", services), 0)

	// A module of nobody's that --check would source: it is refused, and
	// never runs.
	ui := "/usr/local/bin/moonfrp-ui.sh"
	wantCode(t, hostRun(t, h, "sh", "-c", "echo 'touch /tmp/sourced-as-root' >> "+ui+" && chown nobody "+ui), 0)
	r = hostRun(t, h, "moonfrp-bulk", "integrate", "--check")
	wantCode(t, r, 3)
	wantContains(t, "integrate --check", r.stderr, ui+" belongs to uid 65534")
	if _, err := os.Stat(h.Proc("/tmp/sourced-as-root")); err == nil {
		t.Error("integrate --check sourced a module of nobody's as root")
	}
	wantCode(t, hostRun(t, h, "chown", "root", ui), 0)

	wantCode(t, hostRun(t, h, "chmod", "777", "/usr/local/bin"), 0)
	r = hostRun(t, h, "moonfrp-bulk", "integrate")
	wantCode(t, r, 3)
	wantContains(t, "integrate in a world-writable directory", r.stderr, "/usr/local/bin belongs to uid 0 with mode 0777")
}
