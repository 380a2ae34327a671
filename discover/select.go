package discover

import (
	"context"
	"errors"
	"fmt"

	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// Errors that Select wraps, so that callers can tell the user's mistakes
// from a service manager that cannot be asked.
var (
	ErrUsage   = errors.New("usage")
	ErrManager = errors.New("service manager")
)

// Select turns UNIT arguments and filter expressions into the units to
// act on: every MoonFRP service when there are no arguments; else each
// named unit (kept even when systemd does not list it, so that systemctl
// can say what is wrong with it) and each unit a glob matches; then the
// filters. Discovery (two systemctl calls) runs only when a glob, a
// filter or no argument needs it. Non-fatal findings are in Warnings.
func Select(ctx context.Context, r systemctl.Runner, args, filterExprs []string, opt Options) (Selection, error) {
	filters := make([]Filter, 0, len(filterExprs))
	for _, e := range filterExprs {
		f, err := ParseFilter(e)
		if err != nil {
			return Selection{}, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		filters = append(filters, f)
	}
	names := make([]string, 0, len(args))
	needDiscovery := len(args) == 0 || len(filters) > 0
	for _, arg := range args {
		n, err := Normalize(arg)
		if err != nil {
			return Selection{}, fmt.Errorf("%w: %w", ErrUsage, err)
		}
		needDiscovery = needDiscovery || IsPattern(n)
		names = append(names, n)
	}
	var all []Unit
	if needDiscovery {
		var err error
		if all, err = All(ctx, r); err != nil {
			return Selection{}, fmt.Errorf("%w: %w", ErrManager, err)
		}
	}
	var explicit []string
	for _, n := range names {
		if !IsPattern(n) {
			explicit = append(explicit, n)
		}
	}
	var warnings []string
	if len(explicit) > 0 {
		ids, err := Canonical(ctx, r, explicit)
		if err != nil {
			return Selection{}, fmt.Errorf("%w: %w", ErrManager, err)
		}
		for i, n := range names {
			if id, ok := ids[n]; ok {
				names[i] = id
				warnings = append(warnings, fmt.Sprintf("%s is an alias of %s: acting on %s", ShortName(n), ShortName(id), ShortName(id)))
			}
		}
	}
	units, picked := pick(all, args, names)
	warnings = append(warnings, picked...)
	sel, err := Apply(ctx, r, units, filters, opt)
	sel.Warnings = append(warnings, sel.Warnings...)
	if err != nil {
		if errors.Is(err, ErrUsage) {
			return sel, err
		}
		if errors.Is(err, ErrNoIndex) {
			return sel, fmt.Errorf("%w: tag filter: %w", ErrUsage, err)
		}
		return sel, fmt.Errorf("%w: filter: %w", ErrManager, err)
	}
	if sel.Empty != "" {
		sel.Warnings = append(sel.Warnings, fmt.Sprintf("filter %q matches no service", sel.Empty))
	}
	return sel, nil
}

// pick keeps the units that names (normalised args) select from all, in
// the order named, each once. No names means all.
func pick(all []Unit, args, names []string) ([]Unit, []string) {
	if len(names) == 0 {
		return all, nil
	}
	byName := map[string]Unit{}
	for _, u := range all {
		byName[u.Name] = u
	}
	seen := map[string]bool{}
	var units []Unit
	var warnings []string
	add := func(u Unit) {
		if !seen[u.Name] {
			seen[u.Name] = true
			units = append(units, u)
		}
	}
	for i, n := range names {
		if !IsPattern(n) {
			u, ok := byName[n]
			if !ok {
				u = Unit{Name: n, Load: "unknown", Active: "unknown", Sub: "unknown"}
			}
			add(u)
			continue
		}
		matched := false
		for _, u := range all {
			if MatchName(n, u.Name) {
				add(u)
				matched = true
			}
		}
		if !matched {
			warnings = append(warnings, fmt.Sprintf("%q matches no MoonFRP service", args[i]))
		}
	}
	return units, warnings
}
