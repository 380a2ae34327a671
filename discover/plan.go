package discover

import (
	"net"
	"net/netip"
	"strings"

	"github.com/moonfrp/moonfrp-bulk/frp"
)

// Phase is one step of a plan: units that run in parallel, after the
// phases before it. Number counts from 1 everywhere (text, JSON, results).
type Phase struct {
	Number int
	Name   string
	Units  []string
	// Held marks, on restart, the frp clients and visitors of a server
	// that the same plan restarts: they are stopped before the server
	// phase and started once the server accepts, so that none logs in to
	// the new server only to be restarted. (It would log in again while
	// the server still held its old session's proxies, and be refused
	// with "proxy [...] already exists" for the 30 s until frpc retries.)
	// Once stopped, they are started whatever stops the run from
	// launching, short of a second interrupt.
	Held bool
}

// Plan is what an operation will do: its phases in order, and what each
// unit's definition says (its Facts), read once and used by the dry run
// and the run alike.
type Plan struct {
	Operation string
	Phases    []Phase
	Facts     map[string]Facts
}

// Units returns every unit of the plan, in phase order.
func (p Plan) Units() []string {
	var all []string
	for _, ph := range p.Phases {
		all = append(all, ph.Units...)
	}
	return all
}

// IsServer reports whether a unit is a server: it runs frps, or it is
// named moonfrp-server (MoonFRP's name for it, whatever it runs).
func IsServer(name string, f Facts) bool {
	return f.FRPBinary == "frps" || TypeOf(name) == "server"
}

// NewPlan orders units in the phases MoonFRP's serial code implied: on
// start and restart the servers come first (and their clients wait until
// they accept connections), on stop they come last, so that clients are
// not left retrying against a vanished server. On restart, the clients of
// a server that is restarted too form a held phase of their own (see
// Phase.Held). Reload takes nothing down and is one phase. Empty phases
// are dropped.
func NewPlan(op string, units []Unit, facts map[string]Facts) Plan {
	p := Plan{Operation: op, Facts: facts}
	var servers, others []string
	for _, u := range units {
		if op != "reload" && IsServer(u.Name, facts[u.Name]) {
			servers = append(servers, u.Name)
		} else {
			others = append(others, u.Name)
		}
	}
	add := func(name string, units []string, held bool) {
		if len(units) > 0 {
			p.Phases = append(p.Phases, Phase{Number: len(p.Phases) + 1, Name: name, Units: units, Held: held})
		}
	}
	switch {
	case op == "stop":
		add("clients and visitors, before the server", others, false)
		add("server, last", servers, false)
	case op == "restart":
		held, rest := clientsOf(servers, others, facts)
		add("server, first", servers, false)
		add("clients and visitors of the server, stopped before it, started once it accepts", held, true)
		add("clients and visitors, after the server", rest, false)
	default:
		add("server, first", servers, false)
		add("clients and visitors, after the server", others, false)
	}
	if len(p.Phases) == 1 {
		p.Phases[0].Name = "all units"
	}
	return p
}

// clientsOf splits others into the frp clients and visitors that log in
// to one of servers on this host, and the rest. A client counts when its
// serverPort is a server's bindPort and its serverAddr is an address of
// this host that the server listens on: a literal, "localhost" or empty
// (frp's default); a name is never looked up here, and counts as remote.
func clientsOf(servers, others []string, facts map[string]Facts) (held, rest []string) {
	type bind struct {
		addr netip.Addr // invalid: every address
		port int
	}
	var binds []bind
	for _, s := range servers {
		f := facts[s]
		if f.FRPBinary != "frps" {
			continue
		}
		c, err := frp.Load(f.FRPConfig, f.FRPBinary, f.Owners(), f.WorkDir)
		if err != nil {
			continue
		}
		b := bind{port: c.BindPort}
		if a, err := netip.ParseAddr(c.BindAddr); err == nil && !a.IsUnspecified() {
			b.addr = a.Unmap()
		}
		binds = append(binds, b)
	}
	if len(binds) == 0 {
		return nil, others
	}
	local := localAddrs()
	for _, o := range others {
		f := facts[o]
		dials := false
		if f.FRPBinary == "frpc" {
			if c, err := frp.Load(f.FRPConfig, f.FRPBinary, f.Owners(), f.WorkDir); err == nil {
				a, ok := literal(c.ServerAddr)
				for _, b := range binds {
					dials = dials || (ok && c.ServerPort == b.port && (local[a] || a.IsLoopback()) && (!b.addr.IsValid() || b.addr == a))
				}
			}
		}
		if dials {
			held = append(held, o)
		} else {
			rest = append(rest, o)
		}
	}
	return held, rest
}

// literal returns the address a client's serverAddr names without a
// lookup: an IP literal, localhost, or the wildcard (frp's default).
func literal(addr string) (netip.Addr, bool) {
	switch addr {
	case "", "0.0.0.0", "localhost":
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), true
	case "::":
		return netip.IPv6Loopback(), true
	}
	a, err := netip.ParseAddr(strings.Trim(addr, "[]"))
	return a.Unmap(), err == nil
}

// localAddrs returns this host's interface addresses.
func localAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	as, _ := net.InterfaceAddrs()
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out[ip.Unmap()] = true
			}
		}
	}
	return out
}
