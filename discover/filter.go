package discover

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/moonfrp/moonfrp-bulk/frp"
	"github.com/moonfrp/moonfrp-bulk/joblog"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// ValidForms lists the filter forms, for error messages and help.
const ValidForms = "tag:KEY, tag:KEY:VALUE, status:STATE, name:PATTERN, type:server|client|visitor, tunnel:STATE, config:changed|unchanged, last:failed|not-started|unfinished"

// What a last: filter selects from the previous run: its failed units,
// those it did not start (halted or interrupted), or either.
const (
	LastFailed     = "failed"
	LastNotStarted = "not-started"
	LastUnfinished = "unfinished"
)

// States accepted by status: filters. The first group is systemd's
// ActiveState, the second its SubState for services.
var activeStates = []string{"active", "inactive", "failed", "activating", "deactivating", "reloading"}
var subStates = []string{"running", "exited", "dead", "auto-restart"}

// StatusStates lists the states a status: filter accepts, besides down.
func StatusStates() []string { return append(append([]string(nil), activeStates...), subStates...) }

// StatusDown selects what an operator calls down: not active, or looping
// in auto-restart (systemd says "activating" for a crash loop).
const StatusDown = "down"

// Filter is one parsed --filter expression.
type Filter struct {
	Kind  string // tag, status, name or type
	Key   string // tag key
	Value string // tag value (when HasValue), state, pattern or type
	// HasValue distinguishes tag:KEY (any value) from tag:KEY:VALUE.
	HasValue bool
	Raw      string
}

func (f Filter) String() string { return f.Raw }

// ParseFilter parses tag:KEY, tag:KEY:VALUE, status:STATE, name:PATTERN or
// type:TYPE. A tag value may itself hold ':' so only the first one after
// the key splits.
func ParseFilter(expr string) (Filter, error) {
	kind, rest, ok := strings.Cut(expr, ":")
	bad := func(why string) (Filter, error) {
		return Filter{}, fmt.Errorf("invalid filter %q: %s; valid forms: %s", expr, why, ValidForms)
	}
	if !ok {
		return bad("missing ':'")
	}
	f := Filter{Kind: kind, Raw: expr}
	switch kind {
	case "tag":
		key, value, hasValue := strings.Cut(rest, ":")
		if key == "" {
			return bad("empty tag key")
		}
		if hasValue && value == "" {
			return bad("empty tag value (use tag:KEY for any value)")
		}
		f.Key, f.Value, f.HasValue = key, value, hasValue
	case "status":
		if rest != StatusDown && !contains(activeStates, rest) && !contains(subStates, rest) {
			return bad(fmt.Sprintf("unknown state %q (one of %s, %s, or down)", rest,
				strings.Join(activeStates, ", "), strings.Join(subStates, ", ")))
		}
		f.Value = rest
	case "name":
		if rest == "" {
			return bad("empty name pattern")
		}
		if _, err := path.Match(rest, ""); err != nil {
			return bad("malformed glob pattern")
		}
		f.Value = rest
	case "type":
		if rest != "server" && rest != "client" && rest != "visitor" {
			return bad(fmt.Sprintf("unknown type %q", rest))
		}
		f.Value = rest
	case "last":
		if rest != LastFailed && rest != LastNotStarted && rest != LastUnfinished {
			return bad(fmt.Sprintf("unknown outcome %q (one of failed, not-started, unfinished)", rest))
		}
		f.Value = rest
	case "config":
		if rest != ConfigChanged && rest != ConfigUnchanged {
			return bad(fmt.Sprintf("unknown config state %q (changed or unchanged)", rest))
		}
		f.Value = rest
	case "tunnel":
		if rest != TunnelDown && !validTunnelState(rest) {
			return bad(fmt.Sprintf("unknown tunnel state %q (one of %s)", rest, tunnelStates()))
		}
		f.Value = rest
	default:
		return bad(fmt.Sprintf("unknown filter type %q", kind))
	}
	return f, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// MatchName reports whether a unit matches a name: pattern. A pattern with
// glob characters is matched against the whole name (with or without
// .service); anything else is a substring, as in MoonFRP's bash version.
func MatchName(pattern, unit string) bool {
	short := ShortName(unit)
	if IsPattern(pattern) {
		m1, _ := path.Match(pattern, short)
		m2, _ := path.Match(pattern, unit)
		return m1 || m2
	}
	return strings.Contains(short, pattern)
}

func (f Filter) matchUnit(u Unit) bool {
	switch f.Kind {
	case "status":
		if f.Value == StatusDown {
			return (u.Active != "active" && u.Active != "reloading") || u.Sub == "auto-restart"
		}
		return u.Active == f.Value || u.Sub == f.Value
	case "name":
		return MatchName(f.Value, u.Name)
	case "type":
		return u.Type() == f.Value
	}
	return false
}

// TunnelDown in a tunnel: filter selects every frp unit whose tunnel is
// not online (down, logging in, login failed, proxy error, not listening).
const TunnelDown = "down"

func validTunnelState(s string) bool {
	for _, st := range frp.States {
		if string(st) == s {
			return true
		}
	}
	return false
}

func tunnelStates() string {
	var names []string
	for _, st := range frp.States {
		names = append(names, string(st))
	}
	return strings.Join(names, ", ") + "; down means any frp tunnel that is not online"
}

func matchTunnel(t TunnelInfo, f Filter) bool {
	if f.Value == TunnelDown {
		return t.State != frp.Online && t.State != frp.NotFRP && t.State != frp.Unchecked
	}
	return string(t.State) == f.Value
}

// Selection is the result of applying filters.
type Selection struct {
	Units []Unit
	// Warnings are non-fatal problems, such as a corrupt index file.
	Warnings []string
	// Aliases are the other names of units that have some (for list).
	Aliases map[string][]string
	// Configs say whether each frp unit's config changed since frp read
	// it (see ConfigState), when a config: filter or list asked.
	Configs map[string]ConfigInfo
	// Empty names the first filter after which nothing was left, if any.
	Empty string
	// Facts, Tags and Tunnels are filled as filters need them, and by
	// Describe, so that nothing is asked twice.
	Facts   map[string]Facts
	Tags    map[string]map[string]string
	Tunnels map[string]TunnelInfo
}

// Options tunes Apply.
type Options struct {
	// StateDir holds the job log that last: filters read (see joblog).
	StateDir string
	// DataDir is MoonFRP's data directory, holding config-index/.
	DataDir string
	// API asks frpc admin APIs for tunnel: filters and Describe.
	API *frp.API
}

// Apply keeps the units that match every filter. status, name and type
// use what discovery already listed; tag filters cost one batched
// `systemctl show` (to map configs to units); tunnel filters also look
// at each running frp unit's tunnel.
func Apply(ctx context.Context, r systemctl.Runner, units []Unit, filters []Filter, opt Options) (Selection, error) {
	sel := Selection{Units: units}
	keep := func(f Filter, match func(Unit) bool) {
		var kept []Unit
		for _, u := range sel.Units {
			if match(u) {
				kept = append(kept, u)
			}
		}
		sel.Units = kept
		if len(kept) == 0 && sel.Empty == "" {
			sel.Empty = f.Raw
		}
	}
	var tagFilters, tunnelFilters, configFilters []Filter
	for _, f := range filters {
		switch f.Kind {
		case "last":
			recs, skipped, err := joblog.Recent(opt.StateDir, 1)
			if err != nil {
				return sel, fmt.Errorf("%w: %s: %w; last: filters select from the previous operation's results", ErrUsage, f.Raw, err)
			}
			if skipped > 0 {
				sel.Warnings = append(sel.Warnings, fmt.Sprintf("%s: %d line(s) of the job log are not a run's record and were passed over", f.Raw, skipped))
			}
			outcome := lastOutcomes(recs[0])
			keep(f, func(u Unit) bool { return outcome[u.Name].matches(f.Value) })
		case "tag":
			tagFilters = append(tagFilters, f)
		case "tunnel":
			tunnelFilters = append(tunnelFilters, f)
		case "config":
			configFilters = append(configFilters, f)
		default:
			keep(f, f.matchUnit)
		}
	}
	if len(tagFilters) > 0 {
		idx, err := LoadIndex(opt.DataDir)
		if err != nil {
			return sel, err
		}
		sel.Warnings = append(sel.Warnings, idx.Warnings...)
		if len(sel.Units) > 0 {
			if err := sel.readFacts(ctx, r); err != nil {
				return sel, err
			}
			sel.Tags = UnitTags(sel.Units, sel.Facts, idx)
		}
		for _, f := range tagFilters {
			keep(f, func(u Unit) bool { return matchTag(sel.Tags[u.Name], f) })
		}
	}
	if len(configFilters) > 0 && len(sel.Units) > 0 {
		if err := sel.readFacts(ctx, r); err != nil {
			return sel, err
		}
		sel.Configs = Configs(sel.Units, sel.Facts, opt.StateDir)
		for _, f := range configFilters {
			keep(f, func(u Unit) bool { return sel.Configs[u.Name].State == f.Value })
		}
	}
	if len(tunnelFilters) > 0 && len(sel.Units) > 0 {
		if err := sel.readFacts(ctx, r); err != nil {
			return sel, err
		}
		sel.Tunnels = Tunnels(ctx, sel.Units, sel.Facts, opt.API)
		for _, f := range tunnelFilters {
			keep(f, func(u Unit) bool { return matchTunnel(sel.Tunnels[u.Name], f) })
		}
	}
	return sel, nil
}

// lastOutcome is a unit's outcome in the previous run.
type lastOutcome struct{ seen, ok, notStarted bool }

func (o lastOutcome) matches(v string) bool {
	failed := o.seen && !o.ok && !o.notStarted
	switch v {
	case LastFailed:
		return failed
	case LastNotStarted:
		return o.notStarted
	}
	return failed || o.notStarted
}

func lastOutcomes(rec joblog.Record) map[string]lastOutcome {
	m := make(map[string]lastOutcome, len(rec.Results))
	for _, e := range rec.Results {
		m[e.Unit] = lastOutcome{seen: true, ok: e.OK, notStarted: e.NotStarted}
	}
	return m
}

func (sel *Selection) readFacts(ctx context.Context, r systemctl.Runner) error {
	if sel.Facts != nil {
		return nil
	}
	facts, err := ReadFacts(ctx, r, sel.Units)
	if err != nil {
		return err
	}
	sel.Facts = facts
	return nil
}

// Describe fills in what a listing shows and the filters did not already
// ask for: facts, tags (when an index exists; without one they are blank)
// and tunnel states.
func Describe(ctx context.Context, r systemctl.Runner, sel *Selection, opt Options) error {
	if len(sel.Units) == 0 {
		return nil
	}
	if err := sel.readFacts(ctx, r); err != nil {
		return err
	}
	if sel.Tags == nil {
		if idx, err := LoadIndex(opt.DataDir); err == nil {
			sel.Tags = UnitTags(sel.Units, sel.Facts, idx)
		}
	}
	if sel.Tunnels == nil {
		sel.Tunnels = Tunnels(ctx, sel.Units, sel.Facts, opt.API)
	}
	if sel.Configs == nil {
		sel.Configs = Configs(sel.Units, sel.Facts, opt.StateDir)
	}
	return nil
}

// ConfigInfo is a unit's config state (see ConfigState) and why.
type ConfigInfo struct {
	State string
	Why   string
}

// Configs says, for each unit, whether its frp config changed since frp
// read it; reloads in place are read from the job log in stateDir.
func Configs(units []Unit, facts map[string]Facts, stateDir string) map[string]ConfigInfo {
	reloaded := joblog.Reloaded(stateDir)
	out := make(map[string]ConfigInfo, len(units))
	for _, u := range units {
		st, why := ConfigState(facts[u.Name], reloaded[u.Name])
		out[u.Name] = ConfigInfo{State: st, Why: why}
	}
	return out
}

func matchTag(tags map[string]string, f Filter) bool {
	v, ok := tags[f.Key]
	if !ok {
		return false
	}
	return !f.HasValue || v == f.Value
}
