package frp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/moonfrp/moonfrp-bulk/sanitize"
)

// maxAPIBytes bounds an admin API answer: a hostile or broken endpoint
// cannot make the tool read more.
const maxAPIBytes = 1 << 20

// RequestTimeout bounds one admin API request, connect to last byte.
const RequestTimeout = 2 * time.Second

// ProxyStatus is one proxy as frpc's admin API reports it.
type ProxyStatus struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Status string `json:"status"` // new, wait start, start error, running, check failed, closed
	Err    string `json:"err"`
}

// Status is frpc's answer to GET /api/status.
type Status struct {
	// LoggedIn is false when frpc answered {}: it has no session with
	// its server.
	LoggedIn bool
	Proxies  []ProxyStatus
}

// API asks frpc admin APIs and frps dashboards. One API may be used by
// many goroutines; it keeps connections to each endpoint alive, so that
// polling one frpc does not open a connection per look.
type API struct {
	client *http.Client
}

// NewAPI returns an API whose requests ignore proxy settings from the
// environment (the endpoints are local) and never follow redirects.
func NewAPI() *API {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: RequestTimeout,
		DisableCompression:    true,
	}
	return &API{client: &http.Client{
		Transport: tr,
		Timeout:   RequestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// Close drops idle connections.
func (a *API) Close() { a.client.CloseIdleConnections() }

// get fetches path from e into v. Errors name the endpoint, never its
// credentials.
func (a *API) get(ctx context.Context, e Endpoint, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	u := "http://" + hostPort(dialAddr(e.Addr), e.Port) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", e, err)
	}
	if e.User != "" || e.password != "" {
		req.SetBasicAuth(e.User, e.password)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("admin API %s did not answer within %s", e, RequestTimeout)
		}
		var oe *net.OpError
		if errors.As(err, &oe) {
			return fmt.Errorf("admin API %s: %s", e, sanitize.Line(oe.Err.Error()))
		}
		return fmt.Errorf("admin API %s: request failed", e)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBytes+1))
	if err != nil {
		return fmt.Errorf("admin API %s: read answer: %w", e, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("admin API %s refused the config's credentials (401)", e)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("admin API %s answered %s", e, strconv.Itoa(resp.StatusCode))
	case len(body) > maxAPIBytes:
		return fmt.Errorf("admin API %s answered more than %d bytes", e, maxAPIBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("admin API %s answered something that is not frp's JSON", e)
	}
	return nil
}

// Status asks frpc's admin API for its proxies' status.
func (a *API) Status(ctx context.Context, e Endpoint) (Status, error) {
	var byType map[string][]ProxyStatus
	if err := a.get(ctx, e, "/api/status", &byType); err != nil {
		return Status{}, err
	}
	st := Status{LoggedIn: len(byType) > 0}
	for _, list := range byType {
		for _, p := range list {
			p.Name, p.Status, p.Err = sanitize.Line(p.Name), sanitize.Line(p.Status), sanitize.Line(p.Err)
			st.Proxies = append(st.Proxies, p)
		}
	}
	sort.Slice(st.Proxies, func(i, j int) bool { return st.Proxies[i].Name < st.Proxies[j].Name })
	return st, nil
}

// DashboardProxy is one proxy as frps's dashboard lists it.
type DashboardProxy struct {
	Name   string `json:"name"`
	Status string `json:"status"` // online or offline
}

// ServerProxies asks frps's dashboard for its proxies of one type (tcp,
// udp, http, ...).
func (a *API) ServerProxies(ctx context.Context, e Endpoint, typ string) ([]DashboardProxy, error) {
	var resp struct {
		Proxies []DashboardProxy `json:"proxies"`
	}
	if err := a.get(ctx, e, "/api/proxy/"+typ, &resp); err != nil {
		return nil, err
	}
	return resp.Proxies, nil
}

// Accepts reports whether something accepts TCP connections at addr:port;
// the wildcard addresses mean this host. The connection is closed at once.
func Accepts(ctx context.Context, addr string, port int) error {
	d := net.Dialer{Timeout: 500 * time.Millisecond}
	conn, err := d.DialContext(ctx, "tcp", hostPort(dialAddr(addr), port))
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			return fmt.Errorf("nothing accepts on %s: %s", hostPort(dialAddr(addr), port), sanitize.Line(oe.Err.Error()))
		}
		return fmt.Errorf("nothing accepts on %s", hostPort(dialAddr(addr), port))
	}
	return conn.Close()
}

// Up says whether st shows a tunnel that is up for c: logged in, and every
// proxy of the config running. It returns "" when up, else what is not.
func (c Config) Up(st Status) string {
	if !st.LoggedIn {
		return "not logged in to its server yet"
	}
	by := map[string]ProxyStatus{}
	for _, p := range st.Proxies {
		by[p.Name] = p
	}
	for _, name := range c.Proxies {
		p, ok := by[name]
		switch {
		case !ok:
			return fmt.Sprintf("proxy %s not reported yet", name)
		case p.Status != "running":
			if p.Err != "" {
				return fmt.Sprintf("proxy %s %s: %s", name, p.Status, p.Err)
			}
			return fmt.Sprintf("proxy %s is %s", name, p.Status)
		}
	}
	return ""
}
