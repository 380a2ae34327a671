package report

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/sanitize"
)

type listEntry struct {
	SchemaVersion int               `json:"schema_version"`
	Unit          string            `json:"unit"`
	Name          string            `json:"name"`
	Type          string            `json:"type"`
	Load          string            `json:"load"`
	Active        string            `json:"active"`
	Sub           string            `json:"sub"`
	Tags          map[string]string `json:"tags"`
	// Tunnel is the frp tunnel's state (not-frp for other units),
	// TunnelWhy what is wrong when it is not online, and TunnelNote what
	// the judgement left unchecked or a file it was refused.
	Tunnel     string `json:"tunnel"`
	TunnelWhy  string `json:"tunnel_why"`
	TunnelNote string `json:"tunnel_note,omitempty"`
	// Aliases are the unit's other names (links to its file).
	Aliases []string `json:"aliases"`
	// Config says whether an frp unit's config changed since frp read it
	// (changed, unchanged, unknown), and ConfigWhy what changed.
	Config    string `json:"config"`
	ConfigWhy string `json:"config_why,omitempty"`
}

// List prints a selection: a table for people, or one JSON object per
// unit. Tags are blank when no config index is available.
func List(s *Streams, mode Mode, sel discover.Selection) error {
	if mode == JSON {
		enc := json.NewEncoder(s.Out)
		for _, u := range sel.Units {
			t := sel.Tags[u.Name]
			if t == nil {
				t = map[string]string{}
			}
			tun := sel.Tunnels[u.Name]
			if err := enc.Encode(listEntry{SchemaVersion: SchemaVersion, Unit: u.Name, Name: u.Short(), Type: u.Type(),
				Load: u.Load, Active: u.Active, Sub: u.Sub, Tags: t, Tunnel: string(tun.State), TunnelWhy: sanitize.Line(tun.Why),
				TunnelNote: sanitize.Line(tun.Note), Aliases: aliases(sel.Aliases[u.Name]),
				Config: sel.Configs[u.Name].State, ConfigWhy: sanitize.Line(sel.Configs[u.Name].Why)}); err != nil {
				return fmt.Errorf("write list: %w", err)
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UNIT\tLOAD\tACTIVE\tSUB\tTUNNEL\tCONFIG\tTAGS")
	for _, u := range sel.Units {
		cfg := sel.Configs[u.Name].State
		if cfg == "" || cfg == discover.ConfigUnknown {
			cfg = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.Short(), u.Load, u.Active, u.Sub, sel.Tunnels[u.Name].State, cfg, tagString(sel.Tags[u.Name]))
	}
	return tw.Flush()
}

func tagString(tags map[string]string) string {
	if len(tags) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ":" + tags[k]
	}
	return strings.Join(parts, ",")
}

type planEvent struct {
	SchemaVersion int    `json:"schema_version"`
	Event         string `json:"event"`
	settings
	Phases     [][]string `json:"phases"`
	PhaseNames []string   `json:"phase_names"`
	Missing    []string   `json:"missing"`
	// Refused are the units whose config frp's verify refused, with its
	// words: they would be left as they are.
	Refused map[string]string `json:"refused"`
}

// DryRun prints the plan: the exact units by phase and the settings.
func DryRun(s *Streams, mode Mode, p Header) error {
	if mode == JSON {
		ev := planEvent{SchemaVersion: SchemaVersion, Event: "plan", settings: p.settings(), Phases: [][]string{}, PhaseNames: []string{}, Missing: []string{},
			Refused: map[string]string{}}
		for u, why := range p.Refused {
			ev.Refused[u] = sanitize.Line(why)
		}
		for _, ph := range p.Phases {
			ev.Phases = append(ev.Phases, ph.Units)
			ev.PhaseNames = append(ev.PhaseNames, ph.Name)
			for _, u := range ph.Units {
				if p.Missing[u] {
					ev.Missing = append(ev.Missing, u)
				}
			}
		}
		return json.NewEncoder(s.Out).Encode(ev)
	}
	w := s.Out
	fmt.Fprintf(w, "Dry run: would %s %d service(s) on the %s manager, up to %d at a time\n",
		p.Operation, p.Units(), p.Manager, p.MaxParallel)
	if len(p.Filters) > 0 {
		fmt.Fprintf(w, "Filters: %s\n", strings.Join(p.Filters, " AND "))
	}
	verify := "off"
	if p.Verify {
		verify = fmt.Sprintf("on (frp tunnels proven within %s; other units settle %s)", p.TunnelDeadline, p.Settle)
	}
	fmt.Fprintf(w, "Timeout: %s per unit; verification: %s\n", p.Timeout, verify)
	if p.MaxFailGiven != "" {
		fmt.Fprintf(w, "Failure limit: stop launching after %d failed unit(s) (--max-fail=%s)\n", p.MaxFail, p.MaxFailGiven)
	}
	if p.Canary > 0 {
		fmt.Fprintf(w, "Canary: the first %d unit(s) of each phase go first; the rest only if all of them succeed\n", p.Canary)
	}
	for _, ph := range p.Phases {
		fmt.Fprintf(w, "Phase %d of %d (%s, %d unit(s), in parallel):\n", ph.Number, len(p.Phases), ph.Name, len(ph.Units))
		for i, u := range ph.Units {
			if p.Canary > 0 && i == min(p.Canary, len(ph.Units)) {
				fmt.Fprintf(w, "  -- then, if the canary succeeded:\n")
			}
			if p.Missing[u] {
				fmt.Fprintf(w, "  %s (not found: systemctl will refuse it)\n", short(u))
				continue
			}
			if why, ok := p.Refused[u]; ok {
				fmt.Fprintf(w, "  %s (config invalid, so left as it is: %s)\n", short(u), sanitize.Line(why))
				continue
			}
			fmt.Fprintf(w, "  %s\n", short(u))
		}
	}
	return nil
}

// aliases is names without .service, [] for none.
func aliases(names []string) []string {
	out := []string{}
	for _, n := range names {
		out = append(out, sanitize.Line(discover.ShortName(n)))
	}
	return out
}
