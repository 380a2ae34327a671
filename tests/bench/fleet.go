package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// fleetHosts and fleetUnits size the fleet row: three hosts of 50 units.
const (
	fleetHosts = 3
	fleetUnits = 50
)

// measureFleet restarts every unit of three sandboxed hosts through
// Ansible (the example playbook, forks 3, one batch) and, in the same
// rounds, with moonfrp-bulk directly: each host alone, and the three at
// once (on one machine the hosts share its CPUs, under Ansible too); and
// Ansible reaching the three hosts with a task that does nothing. What
// Ansible adds is the fleet run minus the three at once; the empty play
// says how much of that is Ansible's own start-up and ssh.
func measureFleet(o options, bin string) ([]string, error) {
	fmt.Fprintf(os.Stderr, "bench: fleet, %d hosts × %d units through Ansible\n", fleetHosts, fleetUnits)
	ctx := context.Background()
	var specs [][]sandbox.Spec
	for i := 0; i < fleetHosts; i++ {
		specs = append(specs, benchUnits(fleetUnits, 500*time.Millisecond, 0))
	}
	f, err := sandbox.StartFleet(ctx, bin, specs)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	defer f.Stop()
	empty := filepath.Join(f.Dir, "empty.yml")
	if err := os.WriteFile(empty, []byte("- hosts: tunnel_hosts\n  gather_facts: false\n  tasks:\n    - ansible.builtin.raw: \"true\"\n"), 0o644); err != nil {
		return nil, err
	}
	all := map[string]any{"moonfrp_filters": []string{}, "moonfrp_serial": "100%", "moonfrp_max_fail_percentage": 100}
	rounds := 3
	if o.quick {
		rounds = 1
	}
	var fleet, slowest, together, bare []time.Duration
	for r := 0; r < rounds; r++ {
		start := time.Now()
		out, code, err := f.Playbook(ctx, all, "examples/ansible/restart-tunnels.yml")
		if err != nil || code != 0 {
			return nil, fmt.Errorf("fleet playbook: exit %d, %v\n%s", code, err, tail([]byte(out)))
		}
		fleet = append(fleet, time.Since(start))

		// The same flags as the playbook's task, so that the work is the
		// same: -j 20 and a failure limit of 10% (with a limit a unit
		// holds its slot until it is proven).
		args := []string{"--user", "restart", "-o", "text", "-j", "20", "--max-fail=10%"}
		cmds := func() ([]*exec.Cmd, error) {
			var cs []*exec.Cmd
			for _, h := range f.Hosts {
				own := filepath.Join(h.SB.BinDir(), "moonfrp-bulk")
				if err := copyFile(bin, own); err != nil {
					return nil, err
				}
				cs = append(cs, h.SB.Command(ctx, own, args...))
			}
			return cs, nil
		}
		cs, err := cmds()
		if err != nil {
			return nil, err
		}
		var worst time.Duration
		for i, cmd := range cs {
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("%s alone: %v\n%s", f.Hosts[i].Name, err, tail(out))
			}
			worst = max(worst, time.Since(start))
		}
		slowest = append(slowest, worst)

		// The three hosts at once without Ansible: they share this
		// machine's CPUs, as they do under Ansible.
		if cs, err = cmds(); err != nil {
			return nil, err
		}
		start = time.Now()
		var wg sync.WaitGroup
		errs := make([]error, len(cs))
		for i, cmd := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := cmd.CombinedOutput(); err != nil {
					errs[i] = fmt.Errorf("%s at once: %v\n%s", f.Hosts[i].Name, err, tail(out))
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		together = append(together, time.Since(start))

		start = time.Now()
		if out, code, err := f.Playbook(ctx, nil, empty); err != nil || code != 0 {
			return nil, fmt.Errorf("empty play: exit %d, %v\n%s", code, err, tail([]byte(out)))
		}
		bare = append(bare, time.Since(start))
	}
	fm, sm, tm, bm := medianOf(fleet), medianOf(slowest), medianOf(together), medianOf(bare)
	note := fmt.Sprintf("Fleet: %d hosts × %d units (0.5 s stop) restarted through Ansible (the example playbook: forks 3, one batch, -j 20, max_fail 10%%), median of %d: %s, %.2f× the slowest host run alone (%s) and %.2f× the three hosts run at once without Ansible (%s; on one machine they share its CPUs). Ansible adds %s; an empty play over the same hosts (Ansible's start-up and ssh) takes %s.",
		fleetHosts, fleetUnits, rounds, fm.Round(10*time.Millisecond), fm.Seconds()/sm.Seconds(), sm.Round(10*time.Millisecond),
		fm.Seconds()/tm.Seconds(), tm.Round(10*time.Millisecond), (fm - tm).Round(10*time.Millisecond), bm.Round(10*time.Millisecond))
	fmt.Println("note:", note)
	return []string{note}, nil
}
