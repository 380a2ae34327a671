package tests

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// Every config shape frp accepts is judged as frp runs it, on every frp
// of the matrix: a proxy from an included file that the server refuses
// is named (and fails at once), an admin API over HTTPS is asked over
// HTTPS, a disabled proxy is not waited for (frp 0.66 and later; older
// ones refuse the key), and a relative -c is read against the unit's
// WorkingDirectory=.
func TestTunnelConfigShapes(t *testing.T) {
	eachFRP(t, func(t *testing.T, version string) {
		sb := newSandbox(t)
		s := newFRPScene(t, sb, version)
		s.server("")
		taken := s.port()
		s.client("base", sandbox.ClientOpts{RemotePort: taken})
		s.client("inc", sandbox.ClientOpts{IncludePort: taken})
		s.client("tls", sandbox.ClientOpts{TLS: true})
		s.client("rel", sandbox.ClientOpts{Relative: true})
		s.client("tok", sandbox.ClientOpts{Token: "wrong-token"})
		disabled := version >= "v0.66.0"
		if disabled {
			s.client("dis", sandbox.ClientOpts{Disabled: true})
		}
		s.install()
		// base takes the port before inc's included proxy asks for it.
		if _, err := sb.Systemctl(context.Background(), "start", "moonfrp-server", "moonfrp-client-base"); err != nil {
			t.Fatal(err)
		}
		if err := sandbox.WaitAccepts(context.Background(), taken); err != nil {
			t.Fatal(err)
		}

		r := bulk(t, sb, nil, "start", "-o", "json", "--tunnel-deadline=8s")
		wantCode(t, r, 1)
		res := results(t, r.stdout)
		if f := failedUnits(res); strings.Join(f, " ") != "moonfrp-client-inc moonfrp-client-tok" {
			t.Fatalf("failed %v, want moonfrp-client-inc and moonfrp-client-tok", f)
		}
		// Every broken tunnel here is one that frp has refused: the run
		// ends soon after its last healthy tunnel is proven.
		var lastOK, end time.Time
		for _, ev := range parseEvents(t, r.stdout) {
			ts, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(ev["time"]))
			switch {
			case ev["event"] == "result" && ev["ok"] == true && ts.After(lastOK):
				lastOK = ts
			case ev["event"] == "summary":
				end = ts
			}
		}
		if d := end.Sub(lastOK); lastOK.IsZero() || d > 2*time.Second {
			t.Errorf("the run ended %s after its last healthy tunnel was proven, want within 2s", d)
		}
		wantContains(t, "inc's reason", res["moonfrp-client-inc"]["reason"].(string), "proxy iinc start error: port already used")
		if d := res["moonfrp-client-inc"]["duration_ms"].(float64); d > 5000 {
			t.Errorf("a refused included proxy failed after %.0f ms: it can only come right after 30 s", d)
		}
		for _, u := range []string{"moonfrp-client-tls", "moonfrp-client-rel"} {
			if tun := tunnelOf(t, res[u]); tun["check"] != "admin API" || tun["state"] != "online" {
				t.Errorf("%s: tunnel %v, want online by its admin API", u, tun)
			}
		}
		if cfg := tunnelOf(t, res["moonfrp-client-rel"])["config"]; cfg != filepath.Join(s.CfgDir, "frpc-rel.toml") {
			t.Errorf("relative config resolved to %v, want it in WorkingDirectory=", cfg)
		}
		if disabled && res["moonfrp-client-dis"]["ok"] != true {
			t.Errorf("a disabled proxy was waited for: %v", res["moonfrp-client-dis"]["reason"])
		}
	})
}

// A process of another user listens on [::1]:PORT while frpc, told
// webServer.addr = "localhost", binds 127.0.0.1:PORT. localhost is both
// addresses here (a private /etc/hosts), and a client that dials the name
// reaches [::1] first. The admin password goes to frpc's own socket only:
// the impostor receives nothing, and the verdict is frp's.
func TestTunnelAdminImpostorGetsNothing(t *testing.T) {
	sb := newSandbox(t)
	s := newFRPScene(t, sb, sandbox.FRPDefault)
	s.server("")
	s.client("imp", sandbox.ClientOpts{AdminAddr: "localhost"})
	s.install()
	port := s.AdminPorts["moonfrp-client-imp"]

	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	// Where any user may run it: go test's own directory is root's.
	impDir, err := os.MkdirTemp("", "moonfrp-impostor-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(impDir)
	if err := os.Chmod(impDir, 0o755); err != nil {
		t.Fatal(err)
	}
	impBin := filepath.Join(impDir, "impostor")
	if err := os.WriteFile(impBin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	imp := exec.Command(impBin)
	imp.Env = append(os.Environ(), impostorEnv+"="+fmt.Sprintf("[::1]:%d", port))
	imp.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := imp.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := imp.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { imp.Process.Kill(); imp.Wait() }()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "listening" {
		t.Fatalf("impostor did not start: %q", lines.Text())
	}
	got := make(chan string, 16)
	go func() {
		for lines.Scan() {
			got <- lines.Text()
		}
		close(got)
	}()

	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("::1 localhost\n127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	judged := 0
	for _, args := range [][]string{{"start", "-o", "json", "--tunnel-deadline=5s"}, {"list", "-o", "json"}} {
		cmd := bulkCmd(sb, nil, args...)
		// Root makes a mount namespace whose /etc/hosts has ::1 first,
		// then becomes the sandbox user.
		cmd.Args = append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount --bind "$0" /etc/hosts && u=$1 g=$2 && shift 2 && exec setpriv --reuid="$u" --regid="$g" --clear-groups -- "$@"`,
			hosts, fmt.Sprint(sb.UID), fmt.Sprint(sb.GID)}, cmd.Args...)
		cmd.Path, cmd.SysProcAttr = "/usr/bin/unshare", nil
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		t.Logf("moonfrp-bulk %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		if err != nil {
			t.Fatalf("%s: %v", args[0], err)
		}
		for _, ev := range parseEvents(t, stdout.String()) {
			switch {
			case ev["event"] == "result" && ev["unit"] == "moonfrp-client-imp.service":
				judged++
				if tun := tunnelOf(t, ev); ev["ok"] != true || tun["check"] != "admin API" || tun["state"] != "online" {
					t.Errorf("run: %v, tunnel %v; want online by frpc's own admin API", ev["reason"], tun)
				}
			case ev["name"] == "moonfrp-client-imp":
				judged++
				if ev["tunnel"] != "online" {
					t.Errorf("list: %v (%v), want online", ev["tunnel"], ev["tunnel_why"])
				}
			}
		}
	}
	if judged != 2 {
		t.Fatalf("the run and list judged the client %d times, want 2", judged)
	}
	select {
	case l := <-got:
		t.Errorf("the impostor on [::1]:%d received: %s", port, l)
	case <-time.After(200 * time.Millisecond):
		// Each request was made, and answered, before its run ended.
	}
}

// impostorEnv makes the test binary an impostor (see TestMain): it
// listens on the address it names and prints a line for every connection
// and every line it is sent.
const impostorEnv = "MOONFRP_TEST_IMPOSTOR"
