package tests

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// frpScene wraps sandbox.FRPScene for tests: every error fails the test.
type frpScene struct {
	t *testing.T
	*sandbox.FRPScene
}

// frpBinaries builds (once, cached) or finds the real frp of version.
// Under CI=true a failure to build is a failure, not a skip.
func frpBinaries(t *testing.T, version string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir, err := sandbox.FRPOf(ctx, version)
	if err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("no real frp %s: %v", version, err)
		}
		t.Fatalf("real frp %s: %v", version, err)
	}
	return dir
}

// eachFRP runs test once per frp release of the matrix (see
// sandbox.FRPVersions), as a subtest named after it, so that a failure
// names the version.
func eachFRP(t *testing.T, test func(t *testing.T, version string)) {
	for _, v := range sandbox.TestedFRPVersions() {
		t.Run("frp-"+v, func(t *testing.T) { test(t, v) })
	}
}

func newFRPScene(t *testing.T, sb *sandbox.Sandbox, version string) *frpScene {
	t.Helper()
	frpBinaries(t, version)
	sc, err := sandbox.NewFRPScene(context.Background(), sb, 20, version)
	if err != nil {
		t.Fatal(err)
	}
	return &frpScene{t: t, FRPScene: sc}
}

func (s *frpScene) must(err error) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
}

func (s *frpScene) port() int {
	s.t.Helper()
	p, err := s.Port()
	s.must(err)
	return p
}

func (s *frpScene) server(binary string)                   { s.must(s.Server(binary)) }
func (s *frpScene) client(id string, o sandbox.ClientOpts) { s.must(s.Client(id, o)) }
func (s *frpScene) visitor(id, owner, secret string, admin bool) {
	s.must(s.Visitor(id, owner, secret, admin))
}

func (s *frpScene) install() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.must(s.Install(ctx))
}

func (s *frpScene) lateFRPS(d time.Duration) string {
	p, err := s.LateFRPS(d)
	s.must(err)
	return p
}

// online asks frps's dashboard which tcp proxies are online right now.
func (s *frpScene) online() map[string]bool {
	s.t.Helper()
	on, err := s.Online(context.Background())
	s.must(err)
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
	eachFRP(t, func(t *testing.T, version string) {
		sb := newSandbox(t)
		s := newFRPScene(t, sb, version)
		s.server("")
		dead := []int{s.port(), s.port()}
		for i := 1; i <= 10; i++ {
			o := sandbox.ClientOpts{}
			switch i {
			case 3:
				o.Token = "wrong-token"
			case 4, 5:
				o.RemotePort = dead[0]
			case 7:
				o.ServerPort = dead[1]
			}
			s.client(fmt.Sprint(i), o)
		}
		s.install()

		for _, op := range []string{"start", "restart"} {
			t.Run(op, func(t *testing.T) {
				before := invocationIDs(t, sb, sandbox.Names(s.Specs))
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
				for u, proxy := range s.Proxies {
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
				// frp's refusals end their units at once; a refused
				// connection can still come right, so it waits its deadline.
				refusals := map[string]string{"moonfrp-client-3": "token in login doesn't match", portLoser: "start error: port already used"}
				began := runStart(t, r.stdout)
				for u, words := range refusals {
					seen := refusalTime(t, filepath.Join(sb.LogDir, "frpc-"+strings.TrimPrefix(u, "moonfrp-client-")+".log"), words, began)
					ended, err := time.Parse(time.RFC3339Nano, res[u]["time"].(string))
					if err != nil {
						t.Fatal(err)
					}
					if d := ended.Sub(seen); d > 2*time.Second {
						t.Errorf("%s failed %s after frp logged its refusal, want within 2s", u, d.Round(time.Millisecond))
					}
					wantContains(t, u+" reason", res[u]["reason"].(string), "frp refused the tunnel")
				}
				if d := res["moonfrp-client-7"]["duration_ms"].(float64); d < 5000 {
					t.Errorf("moonfrp-client-7 (connection refused) failed after %.0f ms, before its 5s deadline", d)
				}
				if op == "restart" {
					// The clients of the server were stopped before its new
					// process started, and started after it: none logged in
					// to the new server only to be restarted.
					srv := monotonic(t, sb, "moonfrp-server", "ExecMainStartTimestampMonotonic")
					for i := 1; i <= 10; i++ {
						u := fmt.Sprintf("moonfrp-client-%d", i)
						stopped, started := monotonic(t, sb, u, "InactiveEnterTimestampMonotonic"), monotonic(t, sb, u, "ExecMainStartTimestampMonotonic")
						if held := i != 7; held && !(stopped < srv && srv < started) {
							t.Errorf("%s stopped at %d and started at %d; the server started at %d, between them", u, stopped, started, srv)
						}
					}
					if data, err := os.ReadFile(filepath.Join(sb.LogDir, "frps.log")); err == nil && strings.Contains(string(data), "already exists") {
						t.Errorf("frps refused a proxy that already existed:\n%s", data)
					}
				}
				// list judges every tunnel as the run did.
				l := bulk(t, sb, nil, "list", "-o", "json")
				wantCode(t, l, 0)
				for _, ev := range parseEvents(t, l.stdout) {
					name := ev["name"].(string)
					if tun, ok := res[name]["tunnel"].(map[string]any); ok && ev["tunnel"] != tun["state"] {
						t.Errorf("%s: list says %v, the run said %v", name, ev["tunnel"], tun["state"])
					}
				}
				after := invocationIDs(t, sb, sandbox.Names(s.Specs))
				for u, id := range after {
					if id == "" || id == before[u] {
						t.Errorf("%s: InvocationID %q -> %q: not (re)started", u, before[u], id)
					}
				}
			})
		}
	})
}

// monotonic returns a unit's timestamp property, in µs on the monotonic
// clock.
func monotonic(t *testing.T, sb *sandbox.Sandbox, unit, prop string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(sb.Show(context.Background(), unit, prop), 10, 64)
	if err != nil {
		t.Fatalf("%s %s: %v", unit, prop, err)
	}
	return v
}

// refusalTime returns when frp first logged a line containing words in
// the log at path after the time after (frp stamps lines in local time,
// to the millisecond).
func refusalTime(t *testing.T, path, words string, after time.Time) time.Time {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, words) && len(l) > 23 {
			if ts, err := time.ParseInLocation("2006-01-02 15:04:05.000", l[:23], time.Local); err == nil && !ts.Before(after.Truncate(time.Millisecond)) {
				return ts
			}
		}
	}
	t.Fatalf("%s: frp did not log %q after %s", path, words, after)
	return time.Time{}
}

// runStart returns the time of a run's start event.
func runStart(t *testing.T, stdout string) time.Time {
	t.Helper()
	for _, ev := range parseEvents(t, stdout) {
		if ev["event"] == "start" {
			ts, err := time.Parse(time.RFC3339Nano, ev["time"].(string))
			if err != nil {
				t.Fatal(err)
			}
			return ts
		}
	}
	t.Fatal("no start event")
	return time.Time{}
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
	eachFRP(t, func(t *testing.T, version string) {
		sb := newSandbox(t)
		s := newFRPScene(t, sb, version)
		s.server(s.lateFRPS(700 * time.Millisecond))
		s.client("a", sandbox.ClientOpts{NoAdmin: true})
		s.client("s", sandbox.ClientOpts{STCP: "stcp-secret"})
		s.visitor("1", "s", "stcp-secret", false)
		s.visitor("2", "s", "stcp-secret", true)
		s.Specs = append(s.Specs, sandbox.Spec{Name: "moonfrp-client-plain", ExecStart: "/bin/sleep infinity"})
		s.install()

		r := bulk(t, sb, nil, "start", "-o", "json", "--tunnel-deadline=8s")
		wantCode(t, r, 0)
		res := results(t, r.stdout)
		for _, u := range []string{"moonfrp-server", "moonfrp-client-a", "moonfrp-client-s", "moonfrp-visitor-1", "moonfrp-visitor-2", "moonfrp-client-plain"} {
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
			"moonfrp-visitor-2": {"log", "visitor"}, // its admin API lists no visitors
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
		for _, log := range []string{"frpc-a.log", "frpc-s.log", "visitor-1.log", "visitor-2.log"} {
			data, err := os.ReadFile(filepath.Join(sb.LogDir, log))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(data), "connection refused") {
				t.Errorf("%s: a client started before its server accepted:\n%s", log, data)
			}
		}

		// A start of tunnels that already run starts no process and logs no
		// new login: they are up all the same.
		r = bulk(t, sb, nil, "start", "-o", "json", "--tunnel-deadline=3s")
		wantCode(t, r, 0)

		r = bulk(t, sb, nil, "list", "-o", "json")
		wantCode(t, r, 0)
		states := map[string]any{}
		for _, ev := range parseEvents(t, r.stdout) {
			states[ev["name"].(string)] = ev["tunnel"]
		}
		for u, want := range map[string]string{"moonfrp-server": "online", "moonfrp-client-a": "online",
			"moonfrp-client-s": "online", "moonfrp-visitor-1": "online", "moonfrp-visitor-2": "online", "moonfrp-client-plain": "not-frp"} {
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
		names := sandbox.Names(s.Specs)
		before := invocationIDs(t, sb, names)
		r = bulk(t, sb, nil, "restart", "--filter=tunnel:down")
		wantCode(t, r, 0)
		wantContains(t, "summary", r.stderr, "Bulk restart complete: 1 succeeded, 0 failed")
		for u, id := range invocationIDs(t, sb, names) {
			if (id != before[u]) != (u == "moonfrp-client-a") {
				t.Errorf("%s: InvocationID %q -> %q; only moonfrp-client-a should restart", u, before[u], id)
			}
		}

		// Without verification the clients still wait for the server.
		if _, err := sb.Systemctl(context.Background(), append([]string{"stop"}, names...)...); err != nil {
			t.Fatal(err)
		}
		sizes := map[string]int64{}
		for _, log := range []string{"frpc-a.log", "frpc-s.log"} {
			st, err := os.Stat(filepath.Join(sb.LogDir, log))
			if err != nil {
				t.Fatal(err)
			}
			sizes[log] = st.Size()
		}
		r = bulk(t, sb, nil, "start", "--no-verify")
		wantCode(t, r, 0)
		for log, size := range sizes {
			data, _ := os.ReadFile(filepath.Join(sb.LogDir, log))
			if strings.Contains(string(data[size:]), "connection refused") {
				t.Errorf("%s: with --no-verify a client started before its server accepted:\n%s", log, data[size:])
			}
		}
	})
}

// A server that cannot come up (its port is taken) is reported above its
// clients' failures, and its clients are started anyway.
func TestTunnelServerNotReadyIsSaidAboveItsClients(t *testing.T) {
	eachFRP(t, func(t *testing.T, version string) {
		sb := newSandbox(t)
		s := newFRPScene(t, sb, version)
		blocker, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", s.Bind))
		if err != nil {
			t.Fatal(err)
		}
		defer blocker.Close()
		s.server("")
		s.client("1", sandbox.ClientOpts{})
		s.install()

		r := bulk(t, sb, nil, "start", "--tunnel-deadline=3s")
		wantCode(t, r, 1)
		note := strings.Index(r.stderr, "  ! moonfrp-server was not ready, so its clients started without it: ")
		client := strings.Index(r.stderr, "  - moonfrp-client-1: ")
		if note < 0 || client < 0 || note > client {
			t.Errorf("want the server note above the client's failure:\n%s", r.stderr)
		}
		wantContains(t, "server reason", r.stderr, "address already in use")
	})
}
