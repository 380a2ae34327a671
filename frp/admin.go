package frp

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
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
		Proxy: nil,
		// frpc's admin API over HTTPS usually has a self-signed
		// certificate. It is trusted because a request goes only to an
		// address whose listening socket belongs to the unit's own
		// process (see Owned), which is what a certificate would prove.
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
		TLSHandshakeTimeout: RequestTimeout,
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost: 1,
		// One idle connection per frpc would be a descriptor per tunnel
		// for 30 s: a thousand under a limit of 1,024. As many as the
		// looks in flight at once (exec's maxLooks) are enough to poll.
		MaxIdleConns:          16,
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

// call sends GET path to e at the address at and returns its answer
// (at most maxAPIBytes+1 bytes of it) when frp answered 200. at must be
// an address where e's listening socket belongs to the process the
// credentials are meant for (see Owned). Errors name the endpoint, never
// its credentials; an answer other than 200 is an *APIError with frp's
// words.
func (a *API) call(ctx context.Context, e Endpoint, at netip.Addr, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	scheme := "http"
	if e.TLS {
		scheme = "https"
	}
	u := scheme + "://" + netip.AddrPortFrom(at, uint16(e.Port)).String() + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w", e, err)
	}
	if e.User != "" || e.password != "" {
		req.SetBasicAuth(e.User, e.password)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("admin API %s did not answer within %s", e, RequestTimeout)
		}
		var oe *net.OpError
		if errors.As(err, &oe) {
			return nil, fmt.Errorf("admin API %s: %s", e, sanitize.Line(oe.Err.Error()))
		}
		return nil, fmt.Errorf("admin API %s: request failed", e)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBytes+1))
	if err != nil {
		return nil, fmt.Errorf("admin API %s: read answer: %w", e, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, &APIError{Endpoint: e, Code: resp.StatusCode, Useless: true, msg: "refused the config's credentials (401)"}
	case resp.StatusCode != http.StatusOK:
		msg := "answered " + strconv.Itoa(resp.StatusCode)
		if m := errorBody(body); m != "" {
			msg += ": " + m
		}
		return nil, &APIError{Endpoint: e, Code: resp.StatusCode, msg: msg}
	}
	return body, nil
}

// get fetches path from e, at the address at (see call), into v.
func (a *API) get(ctx context.Context, e Endpoint, at netip.Addr, path string, v any) error {
	body, err := a.call(ctx, e, at, path)
	if err != nil {
		return err
	}
	if len(body) > maxAPIBytes {
		return fmt.Errorf("admin API %s answered more than %d bytes", e, maxAPIBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &APIError{Endpoint: e, Code: http.StatusOK, Useless: true, msg: "answered something that is not frp's JSON"}
	}
	return nil
}

// APIError is an admin API's answer that is not what was asked for.
type APIError struct {
	Endpoint Endpoint
	Code     int
	// Useless says that asking again cannot help (wrong credentials, not
	// frp): the tunnel is better judged from its log.
	Useless bool
	msg     string
}

func (e *APIError) Error() string { return "admin API " + e.Endpoint.String() + " " + e.msg }

// maxErrorBody bounds what of an error answer becomes part of a reason.
const maxErrorBody = 200

// errorBody returns frp's words from an error answer: a JSON body
// {"code": 400, "msg": "..."} from frp 0.67 (any case of the keys, as Go
// decodes them), or plain text before; sanitised and bounded.
func errorBody(body []byte) string {
	var j struct {
		Msg string `json:"msg"`
	}
	text := string(body)
	if json.Unmarshal(body, &j) == nil {
		text = j.Msg
	}
	text = strings.TrimSpace(sanitize.Line(text))
	if r := []rune(text); len(r) > maxErrorBody {
		text = string(r[:maxErrorBody]) + "..."
	}
	return text
}

// Reload asks frpc, through its admin API at the address at (see call),
// to read its config again: frp's own reload (what `frpc reload -c`
// does). frpc answers 200 when it took the new config; otherwise, with
// frp's words, it keeps the config it had.
func (a *API) Reload(ctx context.Context, e Endpoint, at netip.Addr) error {
	_, err := a.call(ctx, e, at, "/api/reload")
	return err
}

// Status asks frpc's admin API for its proxies' status.
func (a *API) Status(ctx context.Context, e Endpoint, at netip.Addr) (Status, error) {
	var byType map[string][]ProxyStatus
	if err := a.get(ctx, e, at, "/api/status", &byType); err != nil {
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

// Accepts reports whether something accepts TCP connections at at:port.
// The connection is closed at once.
func Accepts(ctx context.Context, at netip.Addr, port int) error {
	d := net.Dialer{Timeout: 500 * time.Millisecond}
	where := netip.AddrPortFrom(at, uint16(port)).String()
	conn, err := d.DialContext(ctx, "tcp", where)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			return fmt.Errorf("nothing accepts on %s: %s", where, sanitize.Line(oe.Err.Error()))
		}
		return fmt.Errorf("nothing accepts on %s", where)
	}
	return conn.Close()
}
