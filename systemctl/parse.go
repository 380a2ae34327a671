package systemctl

import (
	"bufio"
	"bytes"
	"strings"
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

// ParseListUnitFiles parses `systemctl list-unit-files --no-legend` and
// returns the unit file names with their enablement state.
func ParseListUnitFiles(out []byte) map[string]string {
	files := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		files[f[0]] = f[1]
	}
	return files
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

// ExecArgv returns the argv of each command in an Exec* property such as
// `{ path=/opt/frp/frpc ; argv[]=/opt/frp/frpc -c /etc/frp/frpc.toml ; ... }`.
func ExecArgv(prop string) [][]string {
	var cmds [][]string
	for _, part := range strings.Split(prop, "}") {
		i := strings.Index(part, "argv[]=")
		if i < 0 {
			continue
		}
		rest := part[i+len("argv[]="):]
		if j := strings.Index(rest, " ; "); j >= 0 {
			rest = rest[:j]
		}
		cmds = append(cmds, strings.Fields(rest))
	}
	return cmds
}
