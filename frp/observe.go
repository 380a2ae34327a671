package frp

import (
	"context"
	"strings"

	"github.com/moonfrp/moonfrp-bulk/safefile"
	"github.com/moonfrp/moonfrp-bulk/sanitize"
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

// Judge names the state from what was seen: whether the tunnel is up, and
// the admin API's answer (nil when not asked) or the log.
func Judge(c Config, up bool, st *Status, log LogState) State {
	switch {
	case up:
		return Online
	case c.Kind == Server:
		return NotListening
	case st != nil && st.LoggedIn, st == nil && log.LoggedIn:
		return ProxyError
	case log.LastError != "":
		return LoginFailed
	}
	return LoggingIn
}

// maxObserveTail bounds the log read by Observe.
const maxObserveTail = 64 << 10

// Observe looks once at the tunnel of a running frp unit: a server must
// accept connections; a client is asked through its admin API, or, without
// one, judged from the tail of its log since its process last started. It
// returns the state and, when not online, why.
//
// mainPID, when known, must hold the admin API's listening socket before
// the config's credentials are sent to it: another local program could
// listen there while frpc restarts.
func Observe(ctx context.Context, api *API, c Config, opt safefile.Options, mainPID int) (State, string) {
	var log LogState
	if c.LogTo != "" {
		if f, err := safefile.Open(c.LogTo, c.LogOptions(opt)); err == nil {
			data, _ := f.ReadFrom(f.Size-maxObserveTail, maxObserveTail)
			f.Close()
			for _, l := range strings.Split(string(data), "\n") {
				if l = strings.TrimSpace(sanitize.Line(l)); l != "" {
					log.Add(l)
				}
			}
		}
	}
	switch {
	case c.Kind == Server:
		if err := Accepts(ctx, c.BindAddr, c.BindPort); err != nil {
			return NotListening, err.Error()
		}
		return Online, ""
	case c.Admin != nil && c.Kind != Visitor && c.AdminHeldBy(mainPID):
		st, err := api.Status(ctx, *c.Admin)
		if err != nil {
			return Judge(c, false, nil, log), err.Error()
		}
		if why := c.Up(st); why != "" {
			if log.LastError != "" {
				why = log.LastError
			}
			return Judge(c, false, &st, log), why
		}
		return Online, ""
	case c.LogTo != "":
		if !log.Seen {
			return Unchecked, "its log holds no login since it began (rotated?)"
		}
		if why := log.Up(c); why != "" {
			if log.LastError != "" {
				why = log.LastError
			}
			return Judge(c, false, nil, log), why
		}
		return Online, ""
	}
	return Unchecked, "no webServer and no log.to file to judge the tunnel by"
}

// AdminHeldBy reports whether process pid holds the admin API's listening
// socket, so that the config's credentials go to frpc and nobody else. It
// is true when that cannot be told (pid unknown, or its descriptors
// cannot be read), and when nothing listens on the port yet.
func (c Config) AdminHeldBy(pid int) bool {
	if c.Admin == nil || pid <= 0 {
		return c.Admin != nil
	}
	// Nothing listening yet (frpc binds its admin port just after it
	// starts): no other program holds it either; a request is refused.
	own, err := ListenerOf(pid, c.Admin.Port)
	return err != nil || own
}

// LogOptions says whose files may be read as the config's log.to: those
// the unit may read, but when the config belongs to a user other than
// root, only that user's, so that a config cannot make root read root's
// files.
func (c Config) LogOptions(unit safefile.Options) safefile.Options {
	if c.Owner != 0 {
		return safefile.Options{Owners: []int{c.Owner}, NotRoot: true}
	}
	return unit
}
