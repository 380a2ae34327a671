package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// frpScene is a MoonFRP-shaped set of real frp tunnels in a sandbox: one
// frps with its dashboard on, and clients whose configs are written the
// way MoonFRP's generator writes them (loginFailExit = false, log.to,
// an admin API on 127.0.0.1).
type frpScene struct {
	t       *testing.T
	sb      *sandbox.Sandbox
	frp     string // directory of frpc and frps
	cfgDir  string
	bind    int
	dash    int
	specs   []sandbox.Spec
	clients map[string]string // unit -> proxy name as frps lists it
	ports   []int             // free ports, handed out once each
}

// port hands out a port that no other part of the scene uses.
func (s *frpScene) port() int {
	s.t.Helper()
	if len(s.ports) == 0 {
		s.t.Fatal("frp scene: out of free ports")
	}
	p := s.ports[0]
	s.ports = s.ports[1:]
	return p
}

// frpBinaries builds (once, cached) or finds the real frp. Under CI=true
// a failure to build is a failure, not a skip.
func frpBinaries(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir, err := sandbox.FRP(ctx)
	if err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("no real frp: %v", err)
		}
		t.Fatalf("real frp: %v", err)
	}
	return dir
}

func newFRPScene(t *testing.T, sb *sandbox.Sandbox) *frpScene {
	t.Helper()
	// All ports at once: ports asked for one by one may come back twice.
	ports, err := sandbox.FreePorts(64)
	if err != nil {
		t.Fatal(err)
	}
	s := &frpScene{t: t, sb: sb, frp: frpBinaries(t), cfgDir: filepath.Join(sb.StateDir, "frp"),
		bind: ports[0], dash: ports[1], ports: ports[2:], clients: map[string]string{}}
	if err := os.MkdirAll(s.cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *frpScene) write(name, body string) string {
	s.t.Helper()
	p := filepath.Join(s.cfgDir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Chown(p, s.sb.UID, s.sb.GID); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// server adds moonfrp-server; binary may be a wrapper around frps.
func (s *frpScene) server(binary string) {
	if binary == "" {
		binary = filepath.Join(s.frp, "frps")
	}
	cfg := s.write("frps.toml", fmt.Sprintf(`bindAddr = "127.0.0.1"
bindPort = %d
proxyBindAddr = "127.0.0.1"
auth.method = "token"
auth.token = "good-token"
webServer.addr = "127.0.0.1"
webServer.port = %d
webServer.user = "admin"
webServer.password = "dash-secret"
log.to = "%s"
log.level = "info"
`, s.bind, s.dash, filepath.Join(s.sb.LogDir, "frps.log")))
	s.specs = append(s.specs, sandbox.Spec{Name: "moonfrp-server", ExecStart: binary + " -c " + cfg})
}

// clientOpts vary one client from the healthy default.
type clientOpts struct {
	token      string // default good-token
	serverPort int    // default the scene's bind port
	remotePort int    // default a free port
	noAdmin    bool   // no webServer: proven from the log
	stcp       string // an stcp proxy with this secret instead of tcp
}

// client adds moonfrp-client-<id> with config frpc-<id>.toml and one proxy.
func (s *frpScene) client(id string, o clientOpts) {
	s.t.Helper()
	ports := []int{s.port(), s.port(), s.port()}
	if o.token == "" {
		o.token = "good-token"
	}
	if o.serverPort == 0 {
		o.serverPort = s.bind
	}
	if o.remotePort == 0 {
		o.remotePort = ports[1]
	}
	user := "u" + id
	var b strings.Builder
	fmt.Fprintf(&b, "user = %q\nserverAddr = \"127.0.0.1\"\nserverPort = %d\nloginFailExit = false\n", user, o.serverPort)
	fmt.Fprintf(&b, "auth.method = \"token\"\nauth.token = %q\n", o.token)
	fmt.Fprintf(&b, "log.to = %q\nlog.level = \"info\"\nlog.maxDays = 7\nlog.disablePrintColor = false\n", filepath.Join(s.sb.LogDir, "frpc-"+id+".log"))
	b.WriteString("transport.dialServerTimeout = 5\n")
	if !o.noAdmin {
		fmt.Fprintf(&b, "webServer.addr = \"127.0.0.1\"\nwebServer.port = %d\nwebServer.user = \"admin\"\nwebServer.password = \"pw-%s\"\n", ports[0], id)
	}
	name := "p" + id
	if o.stcp != "" {
		fmt.Fprintf(&b, "\n[[proxies]]\nname = %q\ntype = \"stcp\"\nsecretKey = %q\nlocalIP = \"127.0.0.1\"\nlocalPort = %d\n", name, o.stcp, ports[2])
	} else {
		fmt.Fprintf(&b, "\n[[proxies]]\nname = %q\ntype = \"tcp\"\nlocalIP = \"127.0.0.1\"\nlocalPort = %d\nremotePort = %d\n", name, ports[2], o.remotePort)
		s.clients["moonfrp-client-"+id] = user + "." + name
	}
	cfg := s.write("frpc-"+id+".toml", b.String())
	s.specs = append(s.specs, sandbox.Spec{Name: "moonfrp-client-" + id, ExecStart: filepath.Join(s.frp, "frpc") + " -c " + cfg})
}

// visitor adds moonfrp-visitor-<id>, a visitor of client owner's stcp proxy.
func (s *frpScene) visitor(id, ownerID, secret string) {
	s.t.Helper()
	ports := []int{s.port()}
	cfg := s.write("visitor-"+id+".toml", fmt.Sprintf(`user = "visitor%s"
serverAddr = "127.0.0.1"
serverPort = %d
auth.method = "token"
auth.token = "good-token"
log.to = %q
loginFailExit = false

[[visitors]]
name = "v%s"
type = "stcp"
serverUser = "u%s"
serverName = "p%s"
secretKey = %q
bindAddr = "127.0.0.1"
bindPort = %d
`, id, s.bind, filepath.Join(s.sb.LogDir, "visitor-"+id+".log"), id, ownerID, ownerID, secret, ports[0]))
	s.specs = append(s.specs, sandbox.Spec{Name: "moonfrp-visitor-" + id, ExecStart: filepath.Join(s.frp, "frpc") + " -c " + cfg})
}

func (s *frpScene) install() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.sb.Install(ctx, s.specs...); err != nil {
		s.t.Fatal(err)
	}
}

// online asks frps's dashboard which tcp proxies are online right now.
func (s *frpScene) online() map[string]bool {
	s.t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/api/proxy/tcp", s.dash), nil)
	req.SetBasicAuth("admin", "dash-secret")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		s.t.Fatalf("frps dashboard: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Proxies []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
		} `json:"proxies"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		s.t.Fatalf("frps dashboard: %v", err)
	}
	on := map[string]bool{}
	for _, p := range body.Proxies {
		if p.Status == "online" {
			on[p.Name] = true
		}
	}
	return on
}

// results indexes a run's result events by unit, without .service.
func results(t *testing.T, stdout string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, ev := range parseEvents(t, stdout) {
		if ev["event"] == "result" {
			out[strings.TrimSuffix(ev["unit"].(string), ".service")] = ev
		}
	}
	return out
}

func failedUnits(res map[string]map[string]any) []string {
	var f []string
	for u, ev := range res {
		if ev["ok"] != true {
			f = append(f, u)
		}
	}
	sort.Strings(f)
	return f
}

// The scenario of the tunnel-truth issue: a server and ten clients, of
// which client 3 has a wrong token, client 5 asks for client 4's remote
// port, and client 7 points at a port where nothing listens. Cold start
// and restart must both exit 1, name exactly the three broken clients
// with frp's own words, and leave the seven good tunnels online on the
// server's dashboard at the moment the tool exits.
func TestTunnelTruthNamesExactlyTheBrokenTunnels(t *testing.T) {
	sb := newSandbox(t)
	s := newFRPScene(t, sb)
	s.server("")
	dead := []int{s.port(), s.port()}
	for i := 1; i <= 10; i++ {
		o := clientOpts{}
		switch i {
		case 3:
			o.token = "wrong-token"
		case 4, 5:
			o.remotePort = dead[0]
		case 7:
			o.serverPort = dead[1]
		}
		s.client(fmt.Sprint(i), o)
	}
	s.install()

	for _, op := range []string{"start", "restart"} {
		t.Run(op, func(t *testing.T) {
			before := invocationIDs(t, sb, sandbox.Names(s.specs))
			r := bulk(t, sb, nil, op, "-o", "json", "--tunnel-deadline=5s")
			online := s.online() // at the moment the tool exited
			wantCode(t, r, 1)
			res := results(t, r.stdout)
			if len(res) != 11 {
				t.Fatalf("%d results, want 11", len(res))
			}
			failed := failedUnits(res)
			portLoser := "moonfrp-client-5"
			if res["moonfrp-client-4"]["ok"] != true {
				portLoser = "moonfrp-client-4"
			}
			want := []string{"moonfrp-client-3", portLoser, "moonfrp-client-7"}
			sort.Strings(want)
			if strings.Join(failed, " ") != strings.Join(want, " ") {
				t.Fatalf("failed %v, want %v", failed, want)
			}
			words := map[string]string{
				"moonfrp-client-3": "connect to server error: token in login doesn't match token from configuration",
				portLoser:          "start error: port already used",
				"moonfrp-client-7": "connect: connection refused",
			}
			for u, w := range words {
				wantContains(t, u+" reason (JSON)", res[u]["reason"].(string), w)
				wantContains(t, "summary", r.stderr, "  - "+u+": ")
				tun, _ := res[u]["tunnel"].(map[string]any)
				if tun == nil || tun["state"] == "online" {
					t.Errorf("%s: tunnel %v, want a state that is not online", u, tun)
				}
			}
			wantContains(t, "summary", r.stderr, "Bulk "+op+" complete: 8 succeeded, 3 failed")
			for u, proxy := range s.clients {
				good := res[u]["ok"] == true
				if good != online[proxy] {
					t.Errorf("%s: ok=%v but online on the dashboard=%v", u, good, online[proxy])
				}
				if good {
					tun := res[u]["tunnel"].(map[string]any)
					if tun["state"] != "online" || tun["check"] != "admin API" {
						t.Errorf("%s: tunnel %v", u, tun)
					}
				}
			}
			if n := len(online); n != 7 {
				t.Errorf("%d tunnels online at exit, want 7: %v", n, online)
			}
			if strings.Contains(r.stdout+r.stderr, "good-token") || strings.Contains(r.stdout+r.stderr, "pw-") {
				t.Errorf("a credential from a config reached the output")
			}
			after := invocationIDs(t, sb, sandbox.Names(s.specs))
			for u, id := range after {
				if id == "" || id == before[u] {
					t.Errorf("%s: InvocationID %q -> %q: not (re)started", u, before[u], id)
				}
			}
		})
	}
}

// invocationIDs returns each unit's InvocationID, which changes with every
// start: comparing before and after proves that a unit was (re)started.
func invocationIDs(t *testing.T, sb *sandbox.Sandbox, names []string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for _, n := range names {
		ids[n] = sb.Show(context.Background(), n, "InvocationID")
	}
	return ids
}

// lateFRPS writes a wrapper named frps that waits before it runs the real
// frps, so that the server accepts connections only late; it is still an
// frp unit, since its ExecStart runs "frps -c CONFIG".
func (s *frpScene) lateFRPS(delay time.Duration) string {
	s.t.Helper()
	dir := filepath.Join(s.sb.RuntimeDir, "late")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	p := filepath.Join(dir, "frps")
	body := fmt.Sprintf("#!/bin/sh\nsleep %.3f\nexec %s \"$@\"\n", delay.Seconds(), filepath.Join(s.frp, "frps"))
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		s.t.Fatal(err)
	}
	return p
}

func tunnelOf(t *testing.T, ev map[string]any) map[string]any {
	t.Helper()
	tun, _ := ev["tunnel"].(map[string]any)
	if tun == nil {
		t.Errorf("%s: no tunnel in its result", ev["unit"])
		return map[string]any{}
	}
	return tun
}

// A server that accepts only 0.7 s after it starts still gets its clients
// after it is ready: none of them logs a refused connection. Tunnels
// without an admin API are proven from frp's log, a visitor once it is
// logged in, and a unit that does not run frp keeps the systemd check.
// Then `list` shows the tunnel states, and --filter=tunnel:down restarts
// exactly the tunnel that went down.
func TestTunnelServerReadyLateLogPathVisitorAndTunnelFilter(t *testing.T) {
	sb := newSandbox(t)
	s := newFRPScene(t, sb)
	s.server(s.lateFRPS(700 * time.Millisecond))
	s.client("a", clientOpts{noAdmin: true})
	s.client("s", clientOpts{stcp: "stcp-secret"})
	s.visitor("1", "s", "stcp-secret")
	s.specs = append(s.specs, sandbox.Spec{Name: "moonfrp-client-plain", ExecStart: "/bin/sleep infinity"})
	s.install()

	r := bulk(t, sb, nil, "start", "-o", "json", "--tunnel-deadline=8s")
	wantCode(t, r, 0)
	res := results(t, r.stdout)
	for _, u := range []string{"moonfrp-server", "moonfrp-client-a", "moonfrp-client-s", "moonfrp-visitor-1", "moonfrp-client-plain"} {
		if res[u]["ok"] != true {
			t.Errorf("%s failed: %v", u, res[u]["reason"])
		}
	}
	if d := res["moonfrp-server"]["duration_ms"].(float64); d < 700 {
		t.Errorf("server proven after %.0f ms, before it could accept (700 ms)", d)
	}
	wantTunnel := map[string][2]string{ // unit -> check, kind
		"moonfrp-server":    {"port", "server"},
		"moonfrp-client-a":  {"log", "client"},
		"moonfrp-client-s":  {"admin API", "client"},
		"moonfrp-visitor-1": {"log", "visitor"},
	}
	for u, w := range wantTunnel {
		tun := tunnelOf(t, res[u])
		if tun["check"] != w[0] || tun["kind"] != w[1] || tun["state"] != "online" {
			t.Errorf("%s: tunnel %v, want check %q kind %q online", u, tun, w[0], w[1])
		}
	}
	if res["moonfrp-client-plain"]["tunnel"] != nil {
		t.Errorf("a unit that does not run frp got a tunnel: %v", res["moonfrp-client-plain"]["tunnel"])
	}
	for _, log := range []string{"frpc-a.log", "frpc-s.log", "visitor-1.log"} {
		data, err := os.ReadFile(filepath.Join(sb.LogDir, log))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "connection refused") {
			t.Errorf("%s: a client started before its server accepted:\n%s", log, data)
		}
	}

	r = bulk(t, sb, nil, "list", "-o", "json")
	wantCode(t, r, 0)
	states := map[string]any{}
	for _, ev := range parseEvents(t, r.stdout) {
		states[ev["name"].(string)] = ev["tunnel"]
	}
	for u, want := range map[string]string{"moonfrp-server": "online", "moonfrp-client-a": "online",
		"moonfrp-client-s": "online", "moonfrp-visitor-1": "online", "moonfrp-client-plain": "not-frp"} {
		if states[u] != want {
			t.Errorf("list: %s tunnel %v, want %s", u, states[u], want)
		}
	}

	if _, err := sb.Systemctl(context.Background(), "stop", "moonfrp-client-a"); err != nil {
		t.Fatal(err)
	}
	r = bulk(t, sb, nil, "list", "--filter=tunnel:down", "--names")
	wantCode(t, r, 0)
	if r.stdout != "moonfrp-client-a\n" {
		t.Errorf("tunnel:down lists %q, want only moonfrp-client-a", r.stdout)
	}
	names := sandbox.Names(s.specs)
	before := invocationIDs(t, sb, names)
	r = bulk(t, sb, nil, "restart", "--filter=tunnel:down")
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stderr, "Bulk restart complete: 1 succeeded, 0 failed")
	for u, id := range invocationIDs(t, sb, names) {
		if (id != before[u]) != (u == "moonfrp-client-a") {
			t.Errorf("%s: InvocationID %q -> %q; only moonfrp-client-a should restart", u, before[u], id)
		}
	}
}

// A server that cannot come up (its port is taken) is reported above its
// clients' failures, and its clients are started anyway.
func TestTunnelServerNotReadyIsSaidAboveItsClients(t *testing.T) {
	sb := newSandbox(t)
	s := newFRPScene(t, sb)
	blocker, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.bind))
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	s.server("")
	s.client("1", clientOpts{})
	s.install()

	r := bulk(t, sb, nil, "start", "--tunnel-deadline=3s")
	wantCode(t, r, 1)
	note := strings.Index(r.stderr, "  ! moonfrp-server was not ready, so its clients started without it: ")
	client := strings.Index(r.stderr, "  - moonfrp-client-1: ")
	if note < 0 || client < 0 || note > client {
		t.Errorf("want the server note above the client's failure:\n%s", r.stderr)
	}
	wantContains(t, "server reason", r.stderr, "address already in use")
}
