package frp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/safefile"
)

// Lines as each frp release writes them to log.to (captured from real
// frpc 0.61.0, 0.65.0 and 0.71.0; run ids shortened).
var versionLines = map[string]struct{ login, started, tokenE, tokenW, portUsed, apiReq, apiResp string }{
	"0.61": {
		login:    "2026-12-06 05:15:30.119 [I] [client/service.go:287] [1fc407bd] login to server success, get run id [1fc407bd]",
		started:  "2026-12-06 05:15:30.125 [I] [client/control.go:168] [1fc407bd] [u1.p1] start proxy success",
		tokenE:   "2026-12-06 05:15:34.135 [E] [client/service.go:280] token in login doesn't match token from configuration",
		tokenW:   "2026-12-06 05:15:34.135 [W] [client/service.go:298] connect to server error: token in login doesn't match token from configuration",
		portUsed: "2026-12-06 05:15:49.723 [W] [client/control.go:166] [c4f488cf] [u1.p1] start error: port already used",
		apiReq:   "2026-12-06 05:15:52.309 [I] [client/admin_api.go:168] Http request [/api/status]",
		apiResp:  "2026-12-06 05:15:52.309 [I] [client/admin_api.go:168] Http response [/api/status]",
	},
	"0.65": {
		login:    "2026-12-06 05:16:00.119 [I] [client/service.go:317] [1fc407bd] login to server success, get run id [1fc407bd]",
		started:  "2026-12-06 05:16:00.125 [I] [client/control.go:172] [1fc407bd] [u1.p1] start proxy success",
		tokenE:   "2026-12-06 05:16:04.135 [E] [client/service.go:310] token in login doesn't match token from configuration",
		tokenW:   "2026-12-06 05:16:04.135 [W] [client/service.go:328] connect to server error: token in login doesn't match token from configuration",
		portUsed: "2026-12-06 05:16:19.723 [W] [client/control.go:170] [c4f488cf] [u1.p1] start error: port already used",
		apiReq:   "2026-12-06 05:16:22.309 [I] [client/admin_api.go:168] http request [/api/status]",
		apiResp:  "2026-12-06 05:16:22.309 [I] [client/admin_api.go:168] http response [/api/status]",
	},
	"0.71": {
		login:    "2026-12-06 05:16:25.129 [I] [client/service.go:332] [03acd7fa] login to server success, get run id [03acd7fa]",
		started:  "2026-12-06 05:16:25.131 [I] [client/control.go:174] [03acd7fa] [p1] start proxy success",
		tokenW:   "2026-12-06 05:16:29.980 [W] [client/service.go:323] connect to server error: token in login doesn't match token from configuration",
		portUsed: "2026-12-06 05:17:49.723 [W] [client/control.go:172] [c4f488cf] [p1] start error: port already used",
		apiReq:   "2026-12-06 05:16:32.309 [I] [http/middleware.go:35] http request: [/api/status]",
		apiResp:  "2026-12-06 05:16:32.309 [I] [http/middleware.go:38] http response [/api/status]: code [200]",
	},
}

const lineAPIFailed = "2026-12-06 05:18:31.041 [W] [http/handler.go:44] http response [/api/reload]: error: invalid argument: toml: line 30"

func logOf(lines ...string) LogState {
	var s LogState
	for _, l := range lines {
		if l != "" {
			s.Add(l)
		}
	}
	return s
}

// A client judged by its log, on every release's own words: up when it
// logged in and started its proxy under either name form; a rejected
// login or a refused proxy is final; admin API request lines are never a
// reason.
func TestClientFromLogOnEveryRelease(t *testing.T) {
	c := Config{Kind: Client, User: "u1", Proxies: []string{"p1"}, LogTo: "/x"}
	for v, l := range versionLines {
		cases := []struct {
			name    string
			log     LogState
			state   State
			why     string
			refused bool
			retry   time.Duration
		}{
			{"up", logOf(l.login, l.apiReq, l.started, l.apiResp, lineAPIFailed), Online, "", false, 0},
			{"wrong token", logOf(l.tokenE, l.tokenW, l.apiReq, l.apiResp), LoginFailed,
				"connect to server error: token in login doesn't match token from configuration", true, 0},
			{"port used", logOf(l.login, l.portUsed, l.apiReq), ProxyError, "proxy p1 start error: port already used", true, ProxyRetry},
			{"logging in", logOf(l.apiReq, l.apiResp, lineAPIFailed), LoggingIn, "not logged in to its server yet", false, 0},
		}
		for _, tc := range cases {
			t.Run(v+" "+tc.name, func(t *testing.T) {
				got := c.Probe().Look(context.Background(), Input{Log: tc.log})
				if got.State != tc.state || got.Why != tc.why || got.Refused != tc.refused || got.Retry != tc.retry || got.Check != CheckLog {
					t.Errorf("got %+v\nwant state %s why %q refused %v retry %s", got, tc.state, tc.why, tc.refused, tc.retry)
				}
			})
		}
	}
}

// A client judged by its admin API (served by this process, so its
// socket is the unit's): both name forms, a refused proxy, a login not
// made yet, a disabled proxy not expected, and a 401 that hands the
// judgement to the log.
func TestClientFromAdminAPI(t *testing.T) {
	answers := map[string]string{
		"0.61 running": `{"tcp":[{"name":"u1.p1","type":"tcp","status":"running","err":""}]}`,
		"0.71 running": `{"tcp":[{"name":"p1","type":"tcp","status":"running","err":"","source":""}]}`,
		"port used":    `{"tcp":[{"name":"p1","type":"tcp","status":"start error","err":"port already used"}]}`,
		"not in":       `{}`,
		"wait":         `{"tcp":[{"name":"p1","type":"tcp","status":"wait start","err":""}]}`,
	}
	var answer string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pw, _ := r.BasicAuth(); pw != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte(answers[answer]))
	}))
	defer srv.Close()
	api := NewAPI()
	defer api.Close()
	e := endpointOf(t, srv, "admin", "pw")
	c := Config{Kind: Client, User: "u1", Proxies: []string{"p1"}, Admin: &e, LogTo: "/x"}
	in := Input{API: api, PID: os.Getpid()}
	cases := []struct {
		answer  string
		state   State
		why     string
		refused bool
	}{
		{"0.61 running", Online, "", false},
		{"0.71 running", Online, "", false},
		{"port used", ProxyError, "proxy p1 start error: port already used", true},
		{"not in", LoggingIn, "not logged in to its server yet", false},
		{"wait", ProxyError, "proxy p1 is wait start", false},
	}
	for _, tc := range cases {
		answer = tc.answer
		got := c.Probe().Look(context.Background(), in)
		if got.State != tc.state || got.Why != tc.why || got.Refused != tc.refused || got.Check != CheckAdmin {
			t.Errorf("%s: got %+v, want %s %q refused=%v", tc.answer, got, tc.state, tc.why, tc.refused)
		}
	}
	bad := e
	bad.password = "wrong"
	c.Admin = &bad
	in.Log = logOf(versionLines["0.71"].login, versionLines["0.71"].started)
	if got := c.Probe().Look(context.Background(), in); got.State != Online || got.Check != CheckLog || !got.AdminUseless {
		t.Errorf("401: got %+v, want online from the log, the admin API useless", got)
	}
	// Another process's socket: the credentials stay here.
	c.Admin = &e
	in.PID = otherProcess(t)
	if got := c.Probe().Look(context.Background(), in); got.Check != CheckLog || !got.AdminUseless || got.Note == "" {
		t.Errorf("foreign socket: got %+v, want judged from the log, with a note", got)
	}
}

// A server is up when its own process accepts at its bindAddr:bindPort.
func TestServerProbe(t *testing.T) {
	port := listen(t, "127.0.0.1:0")
	c := Config{Kind: Server, BindAddr: "0.0.0.0", BindPort: port}
	if got := c.Probe().Look(context.Background(), Input{PID: os.Getpid()}); got.State != Online || got.Check != CheckPort {
		t.Errorf("own socket: %+v", got)
	}
	if got := c.Probe().Look(context.Background(), Input{PID: otherProcess(t)}); got.State != NotListening {
		t.Errorf("another process's socket: %+v, want not-listening", got)
	}
}

// Proxies from includes count, and enabled = false ones do not.
func TestIncludesAndDisabled(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/inc", 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(dir+"/"+name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("frpc.toml", "user = \"u\"\nincludes = [\"inc/*.toml\"]\n[[proxies]]\nname = \"a\"\n[[proxies]]\nname = \"off\"\nenabled = false\n")
	write("inc/one.toml", "[[proxies]]\nname = \"b\"\n[[visitors]]\nname = \"v\"\n")
	write("inc/skip.txt", "[[proxies]]\nname = \"no\"\n")
	// A directory that the glob matches is no file to include (frp skips it).
	if err := os.MkdirAll(dir+"/inc/dir.toml", 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Load(dir+"/frpc.toml", "frpc", safefile.Options{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmtAny(c.Proxies); got != fmtAny([]string{"a", "b"}) || len(c.Visitors) != 1 || len(c.Includes) != 1 {
		t.Errorf("proxies %v visitors %v includes %v", c.Proxies, c.Visitors, c.Includes)
	}
	if _, err := Load("frpc.toml", "frpc", safefile.Options{}, ""); err == nil {
		t.Error("a relative config without a working directory was read")
	}
	if _, err := Load(dir+"/frpc.toml", "frpc", safefile.Options{}, ""); err == nil {
		t.Error("relative includes without a working directory were read")
	}
}

// A new process starts with a clean slate: a login that the process
// before it had rejected is no verdict on it (its config may be fixed).
func TestANewProcessForgetsTheOldRefusal(t *testing.T) {
	l := versionLines["0.71"]
	log := logOf(l.tokenW, "2026-12-06 05:20:00.000 [I] [sub/root.go:194] start frpc service for config file [/etc/frp/frpc-1.toml]",
		"2026-12-06 05:20:00.010 [I] [client/service.go:312] try to connect to server...")
	c := Config{Kind: Client, User: "u1", Proxies: []string{"p1"}, LogTo: "/x"}
	if v := c.Probe().Look(context.Background(), Input{Log: log}); v.Refused || v.State != LoggingIn || log.LastError != "" {
		t.Errorf("after a new start: %+v (last error %q), want logging in, nothing refused", v, log.LastError)
	}
}

// A server whose main process is gone (pid 0, or one that exited) is not
// up, whoever else listens on its port.
func TestServerProbeWithoutItsProcess(t *testing.T) {
	port := listen(t, "127.0.0.1:0")
	c := Config{Kind: Server, BindAddr: "127.0.0.1", BindPort: port}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{0, gone.Process.Pid} {
		if v := c.Probe().Look(context.Background(), Input{PID: pid}); v.State != NotListening || v.Owned {
			t.Errorf("pid %d: %+v, want not listening", pid, v)
		}
	}
}

// A client whose proxies are all disabled answers {} on its admin API
// whether logged in or not: its log decides.
func TestClientWithoutProxiesIsJudgedByItsLog(t *testing.T) {
	admin := Endpoint{Addr: "127.0.0.1", Port: 1}
	c := Config{Kind: Client, User: "u1", Admin: &admin, LogTo: "/x"}
	v := c.Probe().Look(context.Background(), Input{Log: logOf(versionLines["0.71"].login), PID: os.Getpid()})
	if v.State != Online || v.Check != CheckLog {
		t.Errorf("%+v, want online from its log", v)
	}
}
