package discover

import "strings"

// Phase is one step of a plan: units that run in parallel, after the
// phases before it. Number counts from 1 everywhere (text, JSON, results).
type Phase struct {
	Number int
	Name   string
	Units  []string
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
// not left retrying against a vanished server. Reload takes nothing down
// and is one phase. Empty phases are dropped.
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
	add := func(name string, units []string) {
		if len(units) > 0 {
			p.Phases = append(p.Phases, Phase{Number: len(p.Phases) + 1, Name: name, Units: units})
		}
	}
	switch {
	case op == "stop":
		add("clients and visitors, before the server", others)
		add("server, last", servers)
	default:
		add("server, first", servers)
		add("clients and visitors, after the server", others)
	}
	if len(p.Phases) == 1 {
		p.Phases[0].Name = "all units"
	}
	return p
}

// ShortName is a unit's name without .service, as MoonFRP's bash prints it.
func ShortName(unit string) string { return strings.TrimSuffix(unit, ".service") }
