package systemctl

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"

	"golang.org/x/sync/errgroup"
)

// UnitState is one row of list-units or list-unit-files.
type UnitState struct {
	Name   string // full name with suffix, e.g. moonfrp-client-3.service
	Load   string // loaded, not-found, masked, ... or "not-loaded" for a file systemd has not loaded
	Active string // active, inactive, failed, activating, ...
	Sub    string // running, dead, auto-restart, ...
}

// bullets are the status markers that list-units prints in the first column
// without --plain. We ask for --plain, but strip them anyway: the bash
// version turned failed units into a unit called "●" this way.
var bullets = map[string]bool{"●": true, "○": true, "*": true, "×": true, "↻": true}

func fields(line string) []string {
	f := strings.Fields(line)
	for len(f) > 0 && bullets[f[0]] {
		f = f[1:]
	}
	return f
}

// ParseListUnits parses `systemctl list-units --all --plain --no-legend`.
func ParseListUnits(out []byte) []UnitState {
	var units []UnitState
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		units = append(units, UnitState{Name: f[0], Load: f[1], Active: f[2], Sub: f[3]})
	}
	return units
}

// Job is one row of `systemctl list-jobs --no-legend`.
type Job struct {
	ID   string
	Unit string
	Type string
}

// ParseListJobs parses `systemctl list-jobs --no-legend`.
func ParseListJobs(out []byte) []Job {
	var jobs []Job
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		jobs = append(jobs, Job{ID: f[0], Unit: f[1], Type: f[2]})
	}
	return jobs
}

// Properties is one unit's block of `systemctl show` output.
type Properties map[string]string

// ParseShow parses `systemctl show -p ... UNIT...`. Blocks are separated by
// blank lines and come in the order of the units asked for; the caller
// should still key them by their Id property.
func ParseShow(out []byte) []Properties {
	var blocks []Properties
	cur := Properties{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(cur) > 0 {
				blocks = append(blocks, cur)
				cur = Properties{}
			}
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			cur[k] = v
		}
	}
	if len(cur) > 0 {
		blocks = append(blocks, cur)
	}
	return blocks
}

// ExecCommand is one command of an Exec* property and how it last ended.
type ExecCommand struct {
	Path string
	Argv []string
	// Code is how it ended ("exited", "killed", "dumped"; "" when it has
	// not run) and Status its exit status or signal number.
	Code, Status string
}

// ParseExec parses an Exec* property such as
// `{ path=/bin/false ; argv[]=/bin/false ; ... ; code=exited ; status=1 }`:
// every command in it, in order.
func ParseExec(prop string) []ExecCommand {
	var cmds []ExecCommand
	for _, part := range strings.Split(prop, "}") {
		if !strings.Contains(part, "path=") {
			continue
		}
		c := ExecCommand{Path: execField(part, "path"), Code: execField(part, "code")}
		if c.Code == "(null)" {
			c.Code = ""
		}
		c.Status, _, _ = strings.Cut(execField(part, "status"), "/")
		if i := strings.Index(part, "argv[]="); i >= 0 {
			rest := part[i+len("argv[]="):]
			if j := strings.Index(rest, " ; "); j >= 0 {
				rest = rest[:j]
			}
			c.Argv = strings.Fields(rest)
		}
		cmds = append(cmds, c)
	}
	return cmds
}

func execField(part, key string) string {
	for _, kv := range strings.Split(part, " ; ") {
		kv = strings.Trim(kv, "{ ")
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// ExecArgv returns the argv of each command in an Exec* property such as
// `{ path=/opt/frp/frpc ; argv[]=/opt/frp/frpc -c /etc/frp/frpc.toml ; ... }`.
func ExecArgv(prop string) [][]string {
	var argvs [][]string
	for _, c := range ParseExec(prop) {
		argvs = append(argvs, c.Argv)
	}
	return argvs
}

// A show costs a round trip per unit: systemctl asks the manager for one
// unit's properties, waits, parses, asks for the next. One call keeps
// either side idle half the time, so many names are split over a few calls
// side by side. Measured on 500 units (2 cores, sandboxed user manager):
// one call 0.62–0.67 s, two calls 0.34–0.42 s, four 0.33–0.40 s, eight
// 0.43–0.49 s with more CPU. The manager answers on one thread, so beyond
// a few calls nothing is gained.
const (
	showChunk = 100 // fewest names worth a call of their own
	showCalls = 3   // most calls side by side
)

// Show runs `systemctl show -p props -- names...` and returns one property
// block per name, in order. From twice showChunk names on, it splits them
// over up to showCalls calls that run side by side; any call's error is
// the answer.
func Show(ctx context.Context, r Runner, props string, names []string) ([]Properties, error) {
	calls := min(showCalls, len(names)/showChunk)
	if calls <= 1 {
		return showOne(ctx, r, props, names)
	}
	out := make([]Properties, len(names))
	g, gctx := errgroup.WithContext(ctx)
	size := (len(names) + calls - 1) / calls
	for lo := 0; lo < len(names); lo += size {
		hi := min(lo+size, len(names))
		g.Go(func() error {
			blocks, err := showOne(gctx, r, props, names[lo:hi])
			copy(out[lo:hi], blocks)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// showOne runs one `systemctl show`. systemctl prints one block per name
// asked for, in that order, and an alias's block carries its target's Id,
// so blocks are matched by position; only when the count differs
// (systemctl skipped a name) are they matched by Id, and a name without a
// block gets one holding only its Id.
func showOne(ctx context.Context, r Runner, props string, names []string) ([]Properties, error) {
	args := append([]string{"show", "--no-pager", "-p", props, "--"}, names...)
	out, err := r.Run(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("systemctl show: %w", err)
	}
	blocks := ParseShow(out.Stdout)
	if len(blocks) != len(names) {
		byID := map[string]Properties{}
		for _, b := range blocks {
			byID[b["Id"]] = b
		}
		blocks = make([]Properties, len(names))
		for i, n := range names {
			blocks[i] = byID[n]
			if blocks[i] == nil {
				blocks[i] = Properties{"Id": n}
			}
		}
		if len(byID) == 0 && out.ExitCode != 0 {
			return nil, fmt.Errorf("systemctl show: %s", Failure(out))
		}
	}
	return blocks, nil
}
