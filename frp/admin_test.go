package frp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func endpointOf(t *testing.T, srv *httptest.Server, user, pw string) Endpoint {
	t.Helper()
	host, port, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(srv.URL, "http://"), "https://"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return Endpoint{Addr: host, Port: p, User: user, password: pw, TLS: strings.HasPrefix(srv.URL, "https:")}
}

var loopback = netip.MustParseAddr("127.0.0.1")

func TestStatus(t *testing.T) {
	answers := map[string]string{
		"/empty":   `{}`,
		"/running": `{"tcp":[{"name":"u5.p5","type":"tcp","status":"running","err":"","local_addr":"127.0.0.1:9","remote_addr":"127.0.0.1:22004"}],"udp":[{"name":"u5.d","type":"udp","status":"start error","err":"port already used"}]}`,
	}
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "admin" || p != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte(answers[path]))
	}))
	defer srv.Close()
	api := NewAPI()
	defer api.Close()
	ctx := context.Background()
	e := endpointOf(t, srv, "admin", "pw")

	path = "/empty"
	st, err := api.Status(ctx, e, loopback)
	if err != nil || st.LoggedIn {
		t.Fatalf("{}: %+v %v, want not logged in", st, err)
	}
	path = "/running"
	st, err = api.Status(ctx, e, loopback)
	if err != nil || !st.LoggedIn || len(st.Proxies) != 2 {
		t.Fatalf("running: %+v %v", st, err)
	}

	bad := endpointOf(t, srv, "admin", "wrong")
	_, err = api.Status(ctx, bad, loopback)
	var ae *APIError
	if err == nil || !strings.Contains(err.Error(), "(401)") || strings.Contains(err.Error(), "wrong") || !errors.As(err, &ae) || !ae.Useless {
		t.Errorf("bad credentials: %v", err)
	}
}

// An admin API over HTTPS (webServer.tls) with a self-signed
// certificate is asked over HTTPS, and answers.
func TestStatusOverTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"tcp":[{"name":"p1","type":"tcp","status":"running"}]}`))
	}))
	defer srv.Close()
	api := NewAPI()
	defer api.Close()
	st, err := api.Status(context.Background(), endpointOf(t, srv, "admin", "pw"), loopback)
	if err != nil || !st.LoggedIn {
		t.Fatalf("HTTPS admin API: %+v %v", st, err)
	}
}

// frp's error answers become part of a reason: plain text up to 0.66,
// JSON from 0.67; either way sanitised and bounded.
func TestErrorBodies(t *testing.T) {
	cases := []struct{ body, want string }{
		{`{"code":400,"msg":"load config error: proxy [p1] is duplicated"}`, "load config error: proxy [p1] is duplicated"},
		{`{"Code":400,"Msg":"bad request"}`, "bad request"},
		{"reload frpc proxy config error: bad port\n", "reload frpc proxy config error: bad port"},
		{"\x1b[31mred\x1b[0m", "red"},
		{strings.Repeat("x", 500), strings.Repeat("x", maxErrorBody) + "..."},
	}
	for _, c := range cases {
		if got := errorBody([]byte(c.body)); got != c.want {
			t.Errorf("errorBody(%q) = %q, want %q", c.body, got, c.want)
		}
	}
}

// A hostile or broken endpoint cannot stall the run, grow memory without
// bound, redirect the tool elsewhere, or make it use a proxy.
func TestStatusSurvivesHostileEndpoints(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("mode") {
		case "slow":
			<-block
		case "huge":
			w.Write([]byte(`{"tcp":[`))
			chunk := []byte(strings.Repeat(`{"name":"x","status":"running"},`, 1000))
			for i := 0; i < 100; i++ {
				w.Write(chunk)
			}
		case "redirect":
			http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusFound)
		default:
			w.Write([]byte("<html>not frp</html>"))
		}
	}))
	defer srv.Close()
	defer close(block) // before Close, which waits for handlers
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	api := NewAPI()
	defer api.Close()
	e := endpointOf(t, srv, "", "")
	for _, mode := range []string{"slow", "huge", "redirect", "garbage"} {
		start := time.Now()
		var v map[string]any
		err := api.get(context.Background(), e, loopback, "/api/status?mode="+mode, &v)
		if err == nil {
			t.Errorf("%s: no error", mode)
		}
		if d := time.Since(start); d > RequestTimeout+time.Second {
			t.Errorf("%s: took %s", mode, d)
		}
	}
}

func TestAccepts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := Accepts(context.Background(), loopback, port); err != nil {
		t.Errorf("listening: %v", err)
	}
	l.Close()
	if err := Accepts(context.Background(), loopback, port); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("closed: %v", err)
	}
}
