package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/lock"
	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// newHost boots a Debian host with a real system manager for one test and
// powers it off when the test ends. Where it cannot boot it skips, except
// under CI=true, where that is a failure.
func newHost(t *testing.T) *sandbox.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	h, err := sandbox.BootHost(ctx)
	if err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("no booted host here: %v", err)
		}
		t.Fatalf("boot host: %v", err)
	}
	t.Cleanup(func() {
		h.Stop()
		if err := h.StopErr(); err != nil {
			t.Errorf("host teardown: %v", err)
		}
	})
	return h
}

func setupHostFRP(t *testing.T, h *sandbox.Host, clients int) *sandbox.HostTunnels {
	t.Helper()
	frpDir := frpBinaries(t, sandbox.FRPDefault)
	ht, err := sandbox.NewHostTunnels(context.Background(), h, sandbox.HostTunnelOpts{FRP: frpDir, Bin: binary,
		Shim: "../bash/moonfrp-bulk.sh", Clients: clients, WrongToken: 2})
	if err != nil {
		t.Fatal(err)
	}
	return ht
}

// installStandInOnHost lays the stand-in MoonFRP (tests/moonfrp) out in
// the host's /usr/local/bin, as install.sh lays out the real one.
func installStandInOnHost(t *testing.T, h *sandbox.Host) {
	t.Helper()
	ents, err := os.ReadDir("moonfrp")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		mode := os.FileMode(0o644)
		if e.Name() == "moonfrp" || e.Name() == "moonfrp.sh" {
			mode = 0o755
		}
		if err := h.Install(filepath.Join("moonfrp", e.Name()), "/usr/local/bin/"+e.Name(), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// hostRun runs a command in the host and returns stdout, stderr and the exit code.
func hostRun(t *testing.T, h *sandbox.Host, name string, args ...string) result {
	t.Helper()
	cmd := h.Command(context.Background(), name, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), wall: time.Since(start), code: cmd.ProcessState.ExitCode()}
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("%s in host: %v", name, err)
	}
	t.Logf("host: %s %s: exit %d in %s\nstderr:\n%s", name, strings.Join(args, " "), r.code, r.wall.Round(time.Millisecond), r.stderr)
	return r
}

func hostInvocations(t *testing.T, h *sandbox.Host, names []string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for _, n := range names {
		out, _ := h.Run(context.Background(), "systemctl", "show", "-p", "InvocationID", "--value", n)
		ids[n] = strings.TrimSpace(out)
	}
	return ids
}

// dashboardOnline counts the proxies online on frps's dashboard.
func dashboardOnline(t *testing.T, port int) int {
	t.Helper()
	on, err := sandbox.DashboardOnline(context.Background(), port)
	if err != nil {
		t.Fatal(err)
	}
	return len(on)
}

// On the production path (root, the system manager, MoonFRP's hardened
// units, the real frp), a cold start and a restart through the shim's
// restart_all_services tell the truth: exactly the client with the wrong
// token fails, with frp's own words, and the good tunnels are online on
// the dashboard when the tool returns.
func TestHostRestartOfMoonFRPUnitsTellsTheTruth(t *testing.T) {
	h := newHost(t)
	hf := setupHostFRP(t, h, 4)

	r := hostRun(t, h, "moonfrp-bulk", "start", "-o", "json", "--tunnel-deadline=5s")
	wantCode(t, r, 1)
	res := results(t, r.stdout)
	if f := strings.Join(failedUnits(res), " "); f != "moonfrp-client-2" {
		t.Fatalf("failed %q, want moonfrp-client-2", f)
	}
	wantContains(t, "reason", res["moonfrp-client-2"]["reason"].(string), "token in login doesn't match token from configuration")
	if n := dashboardOnline(t, hf.Dash); n != 3 {
		t.Errorf("%d tunnels online at exit, want 3", n)
	}

	before := hostInvocations(t, h, hf.Names)
	r = hostRun(t, h, "bash", "-c", `set -euo pipefail
source /usr/share/moonfrp-bulk/moonfrp-bulk.sh
rc=0; restart_all_services || rc=$?
echo "rc=$rc"`)
	wantCode(t, r, 0)
	wantContains(t, "shim", r.stdout, "rc=1")
	wantContains(t, "shim", r.stderr, "Bulk restart complete: 4 succeeded, 1 failed", "  - moonfrp-client-2: frp refused the tunnel: connect to server error: token in login doesn't match")
	if n := dashboardOnline(t, hf.Dash); n != 3 {
		t.Errorf("%d tunnels online when restart_all_services returned, want 3", n)
	}
	for u, id := range hostInvocations(t, h, hf.Names) {
		if id == before[u] {
			t.Errorf("%s was not restarted", u)
		}
	}

	// MoonFRP's own CLI, after `moonfrp-bulk integrate` in the host.
	installStandInOnHost(t, h)
	r = hostRun(t, h, "moonfrp-bulk", "integrate")
	wantCode(t, r, 0)
	wantContains(t, "integrate", r.stdout, "Integrated moonfrp-bulk into /usr/local/bin/moonfrp-services.sh", "11 of 11")
	before = hostInvocations(t, h, hf.Names)
	r = hostRun(t, h, "moonfrp", "service", "restart")
	wantCode(t, r, 1) // set -e in moonfrp.sh: one tunnel failed
	wantContains(t, "moonfrp service restart", r.stderr, "Bulk restart complete: 4 succeeded, 1 failed", "  - moonfrp-client-2: ")
	if strings.Contains(r.stdout+r.stderr, "Restarting all MoonFRP services") {
		t.Error("MoonFRP's serial restart ran")
	}
	for u, id := range hostInvocations(t, h, hf.Names) {
		if id == before[u] {
			t.Errorf("%s was not restarted by moonfrp service restart", u)
		}
	}

	// Locks live in /run/moonfrp-bulk, root's alone, and are gone after.
	st, err := os.Lstat(h.Proc("/run/moonfrp-bulk"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o022 != 0 || !st.IsDir() {
		t.Errorf("/run/moonfrp-bulk: mode %v", st.Mode())
	}
	// Only the lock file itself stays (its byte locks went with the
	// runs); every pid file is gone.
	if ents, _ := os.ReadDir(h.Proc("/run/moonfrp-bulk")); len(ents) > 1 || (len(ents) == 1 && ents[0].Name() != lock.LockFile) {
		t.Errorf("files left after the runs: %v", ents)
	}
}

// A lock directory planted by another user, a run by a non-root user, and
// two overlapping root runs, each against the system manager.
func TestHostLocksAndUsers(t *testing.T) {
	h := newHost(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.Install(binary, "/usr/local/bin/moonfrp-bulk", 0o755))
	// Each stop takes half a second, so that the runs overlap. TERM is
	// ignored before the sleep is forked: systemd signals every process
	// that turns up in the cgroup while it kills, the new sleep included.
	must(h.WriteFile("/usr/local/bin/slow-stop", []byte(
		"#!/bin/sh\ntrap 'trap \"\" TERM; sleep 0.5; exit 0' TERM\nwhile :; do sleep 1 & wait; done\n"), 0o755))
	for i := 1; i <= 3; i++ {
		must(h.WriteFile(fmt.Sprintf("/etc/systemd/system/moonfrp-client-%d.service", i), []byte(
			"[Service]\nExecStart=/usr/local/bin/slow-stop\n"), 0o644))
	}
	if _, err := h.Run(context.Background(), "systemctl", "daemon-reload"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Run(context.Background(), "systemctl", "start", "moonfrp-client-1", "moonfrp-client-2", "moonfrp-client-3"); err != nil {
		t.Fatal(err)
	}

	t.Run("non-root against the system manager", func(t *testing.T) {
		r := hostRun(t, h, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "moonfrp-bulk", "restart")
		wantCode(t, r, 3)
		if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 {
			t.Errorf("want one line, got %q", r.stderr)
		}
		wantContains(t, "stderr", r.stderr, "needs root", "--user")
	})

	t.Run("two overlapping root runs", func(t *testing.T) {
		names := []string{"moonfrp-client-1", "moonfrp-client-2", "moonfrp-client-3"}
		before := hostInvocations(t, h, names)
		first := h.Command(context.Background(), "moonfrp-bulk", "restart", "--settle=0")
		var firstErr strings.Builder
		first.Stderr = &firstErr
		if err := first.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the first run holds its locks: its pid files exist
		// (written once each lock is held), beside the lock file.
		deadline := time.Now().Add(10 * time.Second)
		for {
			pids, _ := filepath.Glob(h.Proc("/run/moonfrp-bulk/*.pid"))
			if len(pids) == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the first run never held its locks")
			}
			time.Sleep(5 * time.Millisecond)
		}
		second := hostRun(t, h, "moonfrp-bulk", "restart", "--settle=0")
		if err := first.Wait(); err != nil {
			t.Fatalf("first run: %v\n%s", err, firstErr.String())
		}
		wantCode(t, second, 0)
		wantContains(t, "second run", second.stderr, "waiting for another moonfrp-bulk run (pid ")
		for u, id := range hostInvocations(t, h, names) {
			if id == before[u] {
				t.Errorf("%s was not restarted", u)
			}
		}
	})

	t.Run("planted lock directory", func(t *testing.T) {
		r := hostRun(t, h, "sh", "-c", "useradd --system mallory && rm -rf /run/moonfrp-bulk && install -d -o mallory -m 0777 /run/moonfrp-bulk")
		wantCode(t, r, 0)
		r = hostRun(t, h, "moonfrp-bulk", "restart", "moonfrp-client-1")
		wantCode(t, r, 3)
		wantContains(t, "stderr", r.stderr, "unsafe lock directory", "/run/moonfrp-bulk")
	})
}

// A service that runs as its own user and owns its log directory swaps
// its log for a symlink to /etc/shadow as it fails: root must not read
// through it. A unit that logs only to journald gets its reason from the
// journal.
func TestHostServiceUserSymlinkSwapAndJournalReason(t *testing.T) {
	h := newHost(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.Install(binary, "/usr/local/bin/moonfrp-bulk", 0o755))
	if r := hostRun(t, h, "sh", "-c", "useradd --system frpuser && install -d -o frpuser /var/log/frpuser"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	must(h.WriteFile("/etc/systemd/system/moonfrp-client-swap.service", []byte(`[Service]
User=frpuser
ExecStart=/bin/sh -c 'echo "login failed: swapped"; rm -f /var/log/frpuser/swap.log; ln -s /etc/shadow /var/log/frpuser/swap.log; exit 1'
Restart=always
RestartSec=5
StandardOutput=append:/var/log/frpuser/swap.log
StandardError=append:/var/log/frpuser/swap.log
`), 0o644))
	must(h.WriteFile("/etc/systemd/system/moonfrp-client-journal.service", []byte(`[Service]
ExecStart=/bin/sh -c 'echo "handshake refused by upstream (journal only)"; exit 1'
Restart=always
RestartSec=5
`), 0o644))
	if _, err := h.Run(context.Background(), "systemctl", "daemon-reload"); err != nil {
		t.Fatal(err)
	}
	r := hostRun(t, h, "moonfrp-bulk", "start", "-o", "json", "moonfrp-client-swap", "moonfrp-client-journal")
	wantCode(t, r, 1)
	res := results(t, r.stdout)
	shadow, _ := os.ReadFile(h.Proc("/etc/shadow"))
	for _, l := range strings.Split(string(shadow), "\n") {
		if strings.Contains(l, ":") && strings.Contains(r.stdout+r.stderr, l) {
			t.Fatalf("a line of /etc/shadow reached the output: %q", l)
		}
	}
	wantContains(t, "swap detail", res["moonfrp-client-swap"]["detail"].(string), "is a symlink, not read")
	wantContains(t, "journal reason", res["moonfrp-client-journal"]["reason"].(string), "handshake refused by upstream (journal only)")
}

// On the production path, --filter=config:changed selects exactly the
// unit whose config was edited after frp read it.
func TestHostConfigChangedFilter(t *testing.T) {
	h := newHost(t)
	hf := setupHostFRP(t, h, 3)
	wantCode(t, hostRun(t, h, "moonfrp-bulk", "start", "--tunnel-deadline=5s"), 1) // client 2 has a wrong token
	r := hostRun(t, h, "moonfrp-bulk", "list", "--filter=config:changed", "--names")
	wantCode(t, r, 0)
	if strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("right after start, config:changed selects %q", r.stdout)
	}
	wantCode(t, hostRun(t, h, "sh", "-c", "echo '# edited' >> /etc/frp/frpc-3.toml"), 0)
	r = hostRun(t, h, "moonfrp-bulk", "list", "--filter=config:changed", "--names")
	wantCode(t, r, 0)
	if strings.TrimSpace(r.stdout) != "moonfrp-client-3" {
		t.Errorf("config:changed selects %q, want moonfrp-client-3", r.stdout)
	}
	_ = hf
}
