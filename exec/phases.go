package exec

import "strings"

// IsServer reports whether unit is a MoonFRP server (frps) unit.
func IsServer(unit string) bool { return strings.HasPrefix(unit, "moonfrp-server") }

// Phases splits units into the phases MoonFRP's serial code implied: on
// start and restart the server comes first, so clients find it listening;
// on stop clients and visitors go first, so they are not left retrying
// against a vanished server. Reload takes nothing down, so it is one phase.
// Each phase runs in parallel inside; empty phases are dropped.
func Phases(op string, units []string) [][]string { return PhasesBy(op, units, IsServer) }

// PhasesBy is Phases with the servers picked by isServer.
func PhasesBy(op string, units []string, isServer func(string) bool) [][]string {
	if op == "reload" {
		return nonEmpty(units)
	}
	var servers, others []string
	for _, u := range units {
		if isServer(u) {
			servers = append(servers, u)
		} else {
			others = append(others, u)
		}
	}
	if op == "stop" {
		return nonEmpty(others, servers)
	}
	return nonEmpty(servers, others)
}

func nonEmpty(groups ...[]string) [][]string {
	var out [][]string
	for _, g := range groups {
		if len(g) > 0 {
			out = append(out, g)
		}
	}
	return out
}
