// Package discover finds MoonFRP service units and narrows them with filters.
package discover

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// Prefix starts the name of every MoonFRP service.
const Prefix = "moonfrp-"

// NotLoaded is the Load value of a unit file that systemd has not loaded.
const NotLoaded = "not-loaded"

// Unit is one service as discovery sees it.
type Unit struct {
	Name   string `json:"unit"` // full name, with .service
	Load   string `json:"load"`
	Active string `json:"active"`
	Sub    string `json:"sub"`
}

// Short is the name without the .service suffix, as MoonFRP's bash prints it.
func (u Unit) Short() string { return strings.TrimSuffix(u.Name, ".service") }

// Type is server, client, visitor or other, from MoonFRP's naming.
func (u Unit) Type() string { return TypeOf(u.Name) }

// TypeOf classifies a unit name by MoonFRP's naming convention.
func TypeOf(name string) string {
	switch {
	case strings.HasPrefix(name, Prefix+"server"):
		return "server"
	case strings.HasPrefix(name, Prefix+"client"):
		return "client"
	case strings.HasPrefix(name, Prefix+"visitor"):
		return "visitor"
	}
	return "other"
}

// All lists every MoonFRP service unit in any state, with exactly two
// systemctl calls whatever the number of units: the loaded units, and the
// installed unit files that systemd has not loaded. Templates themselves
// are left out; their loaded instances are kept.
func All(ctx context.Context, r systemctl.Runner) ([]Unit, error) {
	pattern := Prefix + "*"
	// The two listings are independent; list-unit-files reads every unit
	// directory and is the slower one, so run them side by side.
	type listing struct {
		out systemctl.Output
		err error
	}
	filesDone := make(chan listing, 1)
	go func() {
		out, err := r.Run(ctx, "list-unit-files", "--no-legend", "--no-pager", "--type=service", pattern)
		filesDone <- listing{out, err}
	}()
	lu, err := r.Run(ctx, "list-units", "--all", "--plain", "--no-legend", "--no-pager", "--type=service", pattern)
	files := <-filesDone
	if err != nil {
		return nil, fmt.Errorf("list units: %w", err)
	}
	if lu.ExitCode != 0 {
		return nil, fmt.Errorf("list units: systemctl: %s", systemctl.Failure(lu))
	}
	lf := files.out
	if files.err != nil {
		return nil, fmt.Errorf("list unit files: %w", files.err)
	}
	// list-unit-files exits 1 when nothing matches; that is not an error.
	if lf.ExitCode != 0 && len(lf.Stderr) > 0 {
		return nil, fmt.Errorf("list unit files: systemctl: %s", systemctl.Failure(lf))
	}
	seen := map[string]bool{}
	var units []Unit
	for _, s := range systemctl.ParseListUnits(lu.Stdout) {
		if !isMoonFRPService(s.Name) || seen[s.Name] {
			continue
		}
		seen[s.Name] = true
		units = append(units, Unit{Name: s.Name, Load: s.Load, Active: s.Active, Sub: s.Sub})
	}
	for name := range systemctl.ParseListUnitFiles(lf.Stdout) {
		if !isMoonFRPService(name) || seen[name] {
			continue
		}
		seen[name] = true
		units = append(units, Unit{Name: name, Load: NotLoaded, Active: "inactive", Sub: "dead"})
	}
	Sort(units)
	return units, nil
}

func isMoonFRPService(name string) bool {
	return strings.HasPrefix(name, Prefix) && strings.HasSuffix(name, ".service") &&
		!strings.HasSuffix(name, "@.service")
}

// Sort orders units by name, comparing runs of digits as numbers so that
// moonfrp-client-2 comes before moonfrp-client-10.
func Sort(units []Unit) {
	sort.SliceStable(units, func(i, j int) bool { return NaturalLess(units[i].Name, units[j].Name) })
}

// NaturalLess compares a and b with digit runs compared numerically.
func NaturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitRun(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
