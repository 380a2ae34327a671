package frp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func endpointOf(t *testing.T, srv *httptest.Server, user, pw string) Endpoint {
	t.Helper()
	host, port, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return Endpoint{Addr: host, Port: p, User: user, password: pw}
}

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
	st, err := api.Status(ctx, e)
	if err != nil || st.LoggedIn {
		t.Fatalf("{}: %+v %v, want not logged in", st, err)
	}
	path = "/running"
	st, err = api.Status(ctx, e)
	if err != nil || !st.LoggedIn || len(st.Proxies) != 2 {
		t.Fatalf("running: %+v %v", st, err)
	}
	cfg := Config{Kind: Client, Proxies: []string{"u5.p5", "u5.d"}}
	if got, want := cfg.Up(st), "proxy u5.d start error: port already used"; got != want {
		t.Errorf("Up = %q, want %q", got, want)
	}
	if got := (Config{Kind: Client, Proxies: []string{"u5.p5"}}).Up(st); got != "" {
		t.Errorf("Up with the running proxy only = %q", got)
	}

	bad := endpointOf(t, srv, "admin", "wrong")
	_, err = api.Status(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "(401)") || strings.Contains(err.Error(), "wrong") {
		t.Errorf("bad credentials: %v", err)
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
		err := api.get(context.Background(), e, "/api/status?mode="+mode, &v)
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
	if err := Accepts(context.Background(), "0.0.0.0", port); err != nil {
		t.Errorf("listening: %v", err)
	}
	l.Close()
	if err := Accepts(context.Background(), "", port); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("closed: %v", err)
	}
}

// Credentials go only to a port that frpc's own process listens on.
func TestAdminHeldBy(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := Config{Admin: &Endpoint{Addr: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port}}
	if !c.AdminHeldBy(os.Getpid()) {
		t.Error("the listening process is not recognised")
	}
	if os.Geteuid() == 0 && c.AdminHeldBy(1) {
		t.Error("another process passes for the listener")
	}
}

// A port nobody listens on yet (frpc binds its admin port just after it
// starts) is not another program's: frpc is not judged by its log instead.
func TestAdminHeldByWhileNothingListens(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if _, err := ListenerOf(os.Getpid(), port); !errors.Is(err, ErrNotListening) {
		t.Errorf("ListenerOf on a closed port: %v", err)
	}
	c := Config{Admin: &Endpoint{Addr: "127.0.0.1", Port: port}}
	if !c.AdminHeldBy(os.Getpid()) {
		t.Error("a port nobody listens on counts as another program's")
	}
}
