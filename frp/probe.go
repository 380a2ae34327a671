package frp

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// State is where a tunnel stands.
type State string

// Tunnel states, in results, in `list` and in tunnel: filters.
const (
	Online       State = "online"        // logged in with every proxy running; a server that accepts
	LoggingIn    State = "logging-in"    // not logged in yet, no error seen
	LoginFailed  State = "login-failed"  // not logged in, and frp logged why
	ProxyError   State = "proxy-error"   // logged in, a proxy is not running
	NotListening State = "not-listening" // a server that does not accept connections
	Down         State = "down"          // the unit's process is not running
	Unchecked    State = "unchecked"     // an frp unit whose config cannot be used
	NotFRP       State = "not-frp"       // not an frp unit
)

// States lists every state, for messages and help.
var States = []State{Online, LoggingIn, LoginFailed, ProxyError, NotListening, Down, Unchecked, NotFRP}

// Checks: how a verdict was reached.
const (
	CheckAdmin = "admin API"
	CheckLog   = "log"
	CheckPort  = "port"
)

// Verdict is one look's answer about a running frp unit's tunnel.
type Verdict struct {
	State State
	// Why says what is wrong or missing; "" when online.
	Why string
	// Check is how the tunnel was judged: CheckAdmin, CheckLog or
	// CheckPort.
	Check string
	// Proxies is the admin API's answer, when it was asked.
	Proxies []ProxyStatus
	// Refused says that frp has refused the tunnel (the server rejected
	// its login, or a proxy) and will not try again for Retry, or, when
	// Retry is 0, not until someone changes a config: waiting for less
	// than that cannot make it come up.
	Refused bool
	Retry   time.Duration
	// AdminUseless says that the admin API cannot be asked (its
	// credentials were refused, it is not frp, its socket is another
	// process's): the log decides from then on.
	AdminUseless bool
	// Owned says that the verdict came from a socket that belongs to the
	// process Input.PID names (see Owned): a crash or restart since that
	// pid was read would have made it another's.
	Owned bool
	// Note is what a verdict that holds leaves unchecked, or why it was
	// reached another way than usual.
	Note string
}

// Input is what a probe looks with, besides its config.
type Input struct {
	API *API
	// PID is the unit's main process: only sockets of its process tree
	// are trusted with credentials or taken as the server's.
	PID int
	// Log is what frp's log said: since the operation began, or, for a
	// process that the caller did not start, its tail.
	Log LogState
	// LogIsAll says that the log read is all there will be about this
	// process's login (its tail, for a process started earlier): when it
	// shows no login, nothing will, and the tunnel cannot be judged.
	LogIsAll bool
	// NoAdmin judges a client by its log: its admin API proved useless.
	NoAdmin bool
}

// Probe looks once at a running frp unit's tunnel and says whether it is
// up, and if not, why and whether it still can come up. The caller
// polls, and owns every deadline; a probe never waits.
type Probe interface {
	Look(ctx context.Context, in Input) Verdict
}

// Probe returns the probe for the config's kind.
func (c Config) Probe() Probe {
	switch c.Kind {
	case Server:
		return serverProbe{c}
	case Visitor:
		return visitorProbe{c}
	}
	return clientProbe{c}
}

// serverProbe: frps is up when its own process accepts on bindPort.
type serverProbe struct{ c Config }

func (p serverProbe) Look(ctx context.Context, in Input) Verdict {
	v := Verdict{Check: CheckPort, State: NotListening}
	at, err := Owned(ctx, p.c.BindAddr, p.c.BindPort, in.PID)
	switch {
	case errors.Is(err, ErrNoProcess):
		v.Why = "frps is not running"
		return v
	case errors.Is(err, ErrNotListening):
		v.Why = fmt.Sprintf("nothing listens on %s yet", hostPort(p.c.BindAddr, p.c.BindPort))
		return v
	case errors.Is(err, errCannotTell):
		// The descriptors of a process that is not ours to read: no
		// credentials go to a server's port, so accepting is enough.
		as, aerr := Addrs(ctx, p.c.BindAddr)
		if aerr != nil {
			v.Why = aerr.Error()
			return v
		}
		for _, a := range as {
			if err = Accepts(ctx, a, p.c.BindPort); err == nil {
				v.State, v.Note = Online, "whose socket accepts could not be read"
				return v
			}
		}
		v.Why = err.Error()
		return v
	case err != nil:
		v.Why = err.Error()
		return v
	}
	if err := Accepts(ctx, at, p.c.BindPort); err != nil {
		v.Why = err.Error()
		return v
	}
	v.State, v.Owned = Online, true
	return v
}

// visitorProbe: a visitor-only frpc is up once logged in, which only its
// log tells (its admin API lists proxies, not visitors).
type visitorProbe struct{ c Config }

func (p visitorProbe) Look(_ context.Context, in Input) Verdict {
	return fromLog(p.c, in, "")
}

// clientProbe: frpc is up when it is logged in with every proxy of its
// config running, as its admin API says, or, without one, its log.
type clientProbe struct{ c Config }

func (p clientProbe) Look(ctx context.Context, in Input) Verdict {
	if in.Log.Rejected != "" {
		// The server's word on the latest login: no look can undo it.
		return Verdict{State: LoginFailed, Why: in.Log.Rejected, Check: p.check(in), Refused: true}
	}
	if p.c.Admin == nil || in.NoAdmin || len(p.c.Proxies) == 0 {
		// Without proxies (all disabled, say), /api/status says {} both
		// before the login and after it: only the log tells.
		return fromLog(p.c, in, "")
	}
	at, err := Owned(ctx, p.c.Admin.Addr, p.c.Admin.Port, in.PID)
	switch {
	case errors.Is(err, ErrNoProcess):
		return Verdict{State: Down, Check: CheckAdmin, Why: "frpc is not running"}
	case errors.Is(err, ErrNotListening):
		// frpc binds its admin port just after it starts.
		return Verdict{State: LoggingIn, Check: CheckAdmin, Why: fmt.Sprintf("its admin API %s is not listening yet", p.c.Admin)}
	case err != nil:
		// Not frpc's socket, or not knowably: the credentials stay here.
		v := fromLog(p.c, in, "admin API not asked: "+err.Error())
		v.AdminUseless = true
		return v
	}
	st, err := in.API.Status(ctx, *p.c.Admin, at)
	var ae *APIError
	if errors.As(err, &ae) && ae.Useless && p.c.LogTo != "" {
		v := fromLog(p.c, in, err.Error())
		v.AdminUseless = true
		return v
	}
	if err != nil {
		// A timeout or an error answer: frp's log says what it can
		// meanwhile, and the admin API is asked again next time.
		return fromLog(p.c, in, err.Error())
	}
	v := Verdict{Check: CheckAdmin, Proxies: st.Proxies, Note: p.c.storeNote(), Owned: true}
	if !st.LoggedIn {
		v.State, v.Why = LoggingIn, "not logged in to its server yet"
		if in.Log.LastError != "" {
			v.State, v.Why = LoginFailed, in.Log.LastError
		}
		return v
	}
	by := map[string]ProxyStatus{}
	for _, s := range st.Proxies {
		by[s.Name] = s
	}
	for _, name := range p.c.Proxies {
		s, ok := p.c.reported(by, name)
		switch {
		case !ok:
			v.State, v.Why = ProxyError, fmt.Sprintf("proxy %s not reported yet", name)
			return v
		case s.Status == "start error" && s.Err != "":
			// frpc asks its server again only after ProxyRetry.
			v.State, v.Why, v.Refused, v.Retry = ProxyError, fmt.Sprintf("proxy %s start error: %s", name, s.Err), true, ProxyRetry
			return v
		case s.Status != "running":
			v.State, v.Why = ProxyError, fmt.Sprintf("proxy %s is %s", name, s.Status)
			if s.Err != "" {
				v.Why += ": " + s.Err
			}
			return v
		}
	}
	v.State = Online
	return v
}

func (p clientProbe) check(in Input) string {
	if p.c.Admin == nil || in.NoAdmin {
		return CheckLog
	}
	return CheckAdmin
}

// reported finds proxy want of the config among the admin API's answer,
// by either name form (see Reports).
func (c Config) reported(by map[string]ProxyStatus, want string) (ProxyStatus, bool) {
	if s, ok := by[want]; ok {
		return s, true
	}
	if c.User != "" {
		s, ok := by[c.User+"."+want]
		return s, ok
	}
	return ProxyStatus{}, false
}

func (c Config) storeNote() string {
	if c.Store {
		return "proxies kept in frp's store (store.path) are not checked"
	}
	return ""
}

// fromLog judges a client or visitor from its log. note says why the log
// decides, when it is not the usual way.
func fromLog(c Config, in Input, note string) Verdict {
	v := Verdict{Check: CheckLog, Note: joinNotes(note, c.storeNote())}
	if c.LogTo == "" {
		v.State, v.Why = Unchecked, "no log.to file to judge the tunnel by"
		if note != "" {
			v.Why = note + "; " + v.Why
		}
		return v
	}
	if !in.Log.Seen && in.LogIsAll {
		v.State, v.Why = Unchecked, "its log holds no login since it began (rotated?)"
		return v
	}
	missing := in.Log.Up(c)
	if missing == "" {
		v.State = Online
		return v
	}
	v.State, v.Why = judgeLog(c, in.Log), missing
	if in.Log.LastError != "" {
		v.Why = in.Log.LastError
	}
	if in.Log.Rejected != "" {
		v.Refused = true
		return v
	}
	for _, name := range c.Proxies {
		if why := in.Log.refused(c, name); why != "" && !in.Log.started(c, name) {
			v.Why, v.Refused, v.Retry = fmt.Sprintf("proxy %s start error: %s", name, why), true, ProxyRetry
			break
		}
	}
	return v
}

// judgeLog names the state of a tunnel that is not up, from its log.
func judgeLog(c Config, log LogState) State {
	switch {
	case log.LoggedIn && c.Kind != Visitor:
		return ProxyError
	case log.LastError != "":
		return LoginFailed
	}
	return LoggingIn
}

func joinNotes(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
