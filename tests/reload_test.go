package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// echoServer answers every line it is sent with the same line, until the
// test ends.
func echoServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// echo sends a line on conn and reads it back.
func echo(conn net.Conn, r *bufio.Reader, line string) error {
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(conn, line); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != line {
		return fmt.Errorf("echoed %q, want %q", got, line)
	}
	return nil
}

func mainPIDs(t *testing.T, sb *sandbox.Sandbox, names []string) map[string]string {
	t.Helper()
	pids := map[string]string{}
	for _, n := range names {
		pids[n] = sb.Show(context.Background(), n, "MainPID")
	}
	return pids
}

// reload of MoonFRP's units (ExecReload=kill -HUP, which ends frpc) goes
// through frp's own reload: an open connection through an unchanged
// proxy keeps echoing, no process is replaced, an added and a moved proxy
// come online, a proxy that frp refuses is named with frp's words; frps
// and an frpc without an admin API are left running and reported as
// needing a restart, which --restart-if-needed then does.
func TestReloadInPlace(t *testing.T) {
	eachFRP(t, func(t *testing.T, version string) {
		sb := newSandbox(t)
		s := newFRPScene(t, sb, version)
		s.server("")
		for i := 1; i <= 4; i++ {
			o := sandbox.ClientOpts{}
			if i == 1 {
				o.LocalPort = echoServer(t)
			}
			s.client(fmt.Sprint(i), o)
		}
		s.client("5", sandbox.ClientOpts{NoAdmin: true})
		s.install()
		wantCode(t, bulk(t, sb, nil, "start"), 0)
		names := sandbox.Names(s.Specs)

		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.RemotePorts["moonfrp-client-1"]))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		if err := echo(conn, r, "before"); err != nil {
			t.Fatalf("through the tunnel before the reload: %v", err)
		}

		// Client 2 gains a proxy, client 3's moves to another remote port,
		// client 4 gains one on a port that is taken (client 1's).
		added, moved := s.port(), s.port()
		edit := func(unit string, f func(string) string) {
			p := s.ConfigPath(unit)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(f(string(data))), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		extra := func(name string, port int) func(string) string {
			return func(c string) string {
				return c + fmt.Sprintf("\n[[proxies]]\nname = %q\ntype = \"tcp\"\nlocalIP = \"127.0.0.1\"\nlocalPort = 9\nremotePort = %d\n", name, port)
			}
		}
		edit("moonfrp-client-2", extra("added2", added))
		edit("moonfrp-client-3", func(c string) string {
			return strings.Replace(c, fmt.Sprintf("remotePort = %d", s.RemotePorts["moonfrp-client-3"]), fmt.Sprintf("remotePort = %d", moved), 1)
		})
		edit("moonfrp-client-4", extra("clash4", s.RemotePorts["moonfrp-client-1"]))

		before := mainPIDs(t, sb, names)
		res := bulk(t, sb, nil, "reload", "-o", "json", "--tunnel-deadline=8s")
		wantCode(t, res, 1)
		got := results(t, res.stdout)
		if f := failedUnits(got); strings.Join(f, " ") != "moonfrp-client-4 moonfrp-client-5 moonfrp-server" {
			t.Errorf("not ok: %v, want client 4 (refused), and client 5 and the server (need a restart)", f)
		}
		wantContains(t, "client 4's reason", got["moonfrp-client-4"]["reason"].(string), "port already used")
		for _, u := range []string{"moonfrp-client-5", "moonfrp-server"} {
			if got[u]["needs_restart"] != true || !strings.HasPrefix(got[u]["reason"].(string), "needs a restart: ") {
				t.Errorf("%s: %v, want it left running, needing a restart", u, got[u])
			}
		}
		wantContains(t, "summary", res.stderr, "2 need a restart", "  ~ moonfrp-server: needs a restart: frps has no reload of its own")
		for u, pid := range mainPIDs(t, sb, names) {
			if pid != before[u] || pid == "0" {
				t.Errorf("%s: MainPID %s -> %s: a reload must not replace the process", u, before[u], pid)
			}
		}
		if err := echo(conn, r, "after"); err != nil {
			t.Errorf("the open connection through an unchanged proxy broke: %v", err)
		}
		online := s.online()
		for _, name := range []string{"u2.added2", "u3.p3"} {
			if !online[name] {
				t.Errorf("%s is not online on frps's dashboard after the reload: %v", name, online)
			}
		}

		// --restart-if-needed restarts exactly what needed it.
		res = bulk(t, sb, nil, "reload", "-o", "json", "--restart-if-needed", "moonfrp-client-5", "moonfrp-client-1")
		wantCode(t, res, 0)
		after := mainPIDs(t, sb, []string{"moonfrp-client-5", "moonfrp-client-1"})
		if after["moonfrp-client-5"] == before["moonfrp-client-5"] {
			t.Error("--restart-if-needed did not restart moonfrp-client-5")
		}
		if after["moonfrp-client-1"] != before["moonfrp-client-1"] {
			t.Error("--restart-if-needed restarted moonfrp-client-1, which frp reloads in place")
		}
		r5 := results(t, res.stdout)["moonfrp-client-5"]
		if tun := tunnelOf(t, r5); tun["state"] != "online" {
			t.Errorf("restarted client 5's tunnel: %v", tun)
		}
		// It succeeded: no reason, and no "needs a restart" on it.
		if r5["reason"] != "" || r5["needs_restart"] != false {
			t.Errorf("restarted client 5: reason %q, needs_restart %v", r5["reason"], r5["needs_restart"])
		}
	})
}

// A change that frp's reload ignores (a new server address) is detected:
// the unit is reported as needing a restart and left running; with
// --restart-if-needed it is restarted, and proven on its new server.
func TestReloadOfAMovedServerNeedsARestart(t *testing.T) {
	eachFRP(t, func(t *testing.T, version string) {
		sb := newSandbox(t)
		s := newFRPScene(t, sb, version)
		s.server("")
		s.client("1", sandbox.ClientOpts{})
		// A second frps, the one the client moves to.
		bindB, dashB := s.port(), s.port()
		data, err := os.ReadFile(s.CfgDir + "/frps.toml")
		if err != nil {
			t.Fatal(err)
		}
		cfgB := strings.NewReplacer(fmt.Sprintf("bindPort = %d", s.Bind), fmt.Sprintf("bindPort = %d", bindB),
			fmt.Sprintf("webServer.port = %d", s.Dash), fmt.Sprintf("webServer.port = %d", dashB), "frps.log", "frps-b.log").Replace(string(data))
		pathB := s.CfgDir + "/frps-b.toml"
		if err := os.WriteFile(pathB, []byte(cfgB), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(pathB, sb.UID, sb.GID); err != nil {
			t.Fatal(err)
		}
		s.Specs = append(s.Specs, sandbox.Spec{Name: "moonfrp-server-b", ExecStart: s.FRP + "/frps -c " + pathB})
		s.install()
		wantCode(t, bulk(t, sb, nil, "start"), 0)

		p := s.ConfigPath("moonfrp-client-1")
		c, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(c), fmt.Sprintf("serverPort = %d", s.Bind), fmt.Sprintf("serverPort = %d", bindB), 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		before := sb.Show(context.Background(), "moonfrp-client-1", "MainPID")
		r := bulk(t, sb, nil, "reload", "-o", "json", "moonfrp-client-1")
		wantCode(t, r, 7)
		res := results(t, r.stdout)["moonfrp-client-1"]
		if res["needs_restart"] != true || !strings.Contains(res["reason"].(string), fmt.Sprintf("names the server 127.0.0.1:%d now, but frpc is logged in elsewhere", bindB)) {
			t.Errorf("result %v, want a restart needed for the moved server", res)
		}
		if pid := sb.Show(context.Background(), "moonfrp-client-1", "MainPID"); pid != before {
			t.Errorf("MainPID %s -> %s: the unit was touched", before, pid)
		}

		r = bulk(t, sb, nil, "reload", "-o", "json", "--restart-if-needed", "moonfrp-client-1")
		wantCode(t, r, 0)
		if pid := sb.Show(context.Background(), "moonfrp-client-1", "MainPID"); pid == before {
			t.Error("--restart-if-needed did not restart the client")
		}
		on, err := sandbox.DashboardOnline(context.Background(), dashB)
		if err != nil || !on["u1.p1"] {
			t.Errorf("the client's proxy is not online on its new server: %v %v", on, err)
		}
	})
}

// A config with a typo never takes a working tunnel down: restart leaves
// the unit as it was (its process, an open connection through it) and
// names frp's own words on the config; with --no-preflight it is
// restarted, and fails, as before.
func TestPreflightLeavesAWorkingTunnelUp(t *testing.T) {
	eachFRP(t, func(t *testing.T, version string) {
		sb := newSandbox(t)
		s := newFRPScene(t, sb, version)
		s.server("")
		s.client("1", sandbox.ClientOpts{LocalPort: echoServer(t)})
		s.client("2", sandbox.ClientOpts{})
		s.install()
		wantCode(t, bulk(t, sb, nil, "start"), 0)
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.RemotePorts["moonfrp-client-1"]))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		if err := echo(conn, r, "before"); err != nil {
			t.Fatal(err)
		}
		p := s.ConfigPath("moonfrp-client-1")
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, append(data, []byte("\n[[proxies]\nname = \"typo\"\n")...), 0o600); err != nil {
			t.Fatal(err)
		}
		names := []string{"moonfrp-client-1", "moonfrp-client-2"}
		before := mainPIDs(t, sb, names)

		dry := bulk(t, sb, nil, "restart", "--dry-run", "moonfrp-client-1", "moonfrp-client-2")
		wantCode(t, dry, 0)
		wantContains(t, "dry run", dry.stdout, "moonfrp-client-1 (config invalid, so left as it is: ")

		res := bulk(t, sb, nil, "restart", "-o", "json", "moonfrp-client-1", "moonfrp-client-2")
		wantCode(t, res, 1)
		got := results(t, res.stdout)
		wantContains(t, "reason", got["moonfrp-client-1"]["reason"].(string), "left running: config invalid: ")
		if got["moonfrp-client-2"]["ok"] != true {
			t.Errorf("client 2, whose config is fine, was not restarted: %v", got["moonfrp-client-2"]["reason"])
		}
		after := mainPIDs(t, sb, names)
		if after["moonfrp-client-1"] != before["moonfrp-client-1"] {
			t.Error("a unit whose config frp refuses was restarted")
		}
		if after["moonfrp-client-2"] == before["moonfrp-client-2"] {
			t.Error("client 2 was not restarted")
		}
		if err := echo(conn, r, "after"); err != nil {
			t.Errorf("the open connection broke: %v", err)
		}

		res = bulk(t, sb, nil, "restart", "--no-preflight", "--tunnel-deadline=3s", "moonfrp-client-1")
		wantCode(t, res, 1)
		if pid := sb.Show(context.Background(), "moonfrp-client-1", "MainPID"); pid == before["moonfrp-client-1"] {
			t.Error("--no-preflight did not restart the unit")
		}
	})
}

// --filter=config:changed selects exactly the units whose config, or a
// file it includes, changed after frp read it; a reload in place or a
// restart reads it again.
func TestConfigChangedFilter(t *testing.T) {
	sb := newSandbox(t)
	s := newFRPScene(t, sb, sandbox.FRPDefault)
	s.server("")
	s.client("1", sandbox.ClientOpts{})
	s.client("2", sandbox.ClientOpts{})
	s.client("3", sandbox.ClientOpts{IncludePort: s.port()})
	s.install()
	wantCode(t, bulk(t, sb, nil, "start"), 0)
	changed := func() string {
		t.Helper()
		r := bulk(t, sb, nil, "list", "--filter=config:changed", "--names")
		wantCode(t, r, 0)
		return strings.Join(strings.Fields(r.stdout), " ")
	}
	if got := changed(); got != "" {
		t.Fatalf("right after start, config:changed selects %q", got)
	}
	touch := func(p string) {
		t.Helper()
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, append(data, []byte("\n# edited\n")...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	touch(s.ConfigPath("moonfrp-client-2"))
	touch(s.CfgDir + "/inc-3/extra.toml") // only the included file
	if got := changed(); got != "moonfrp-client-2 moonfrp-client-3" {
		t.Errorf("config:changed selects %q, want clients 2 and 3", got)
	}
	r := bulk(t, sb, nil, "list", "-o", "json")
	for _, ev := range parseEvents(t, r.stdout) {
		want := map[string]string{"moonfrp-client-2": "changed", "moonfrp-client-3": "changed", "moonfrp-client-1": "unchanged"}[ev["name"].(string)]
		if want != "" && ev["config"] != want {
			t.Errorf("list: %s config %v, want %s", ev["name"], ev["config"], want)
		}
	}
	// frp reads client 2's config again in place, and client 3's by a
	// restart: nothing has changed since.
	wantCode(t, bulk(t, sb, nil, "reload", "moonfrp-client-2"), 0)
	wantCode(t, bulk(t, sb, nil, "restart", "--filter=config:changed"), 0)
	if got := changed(); got != "" {
		t.Errorf("after the reload and the restart, config:changed selects %q", got)
	}
}
