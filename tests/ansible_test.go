package tests

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// fleetHost is a fleet host with what the test knows of its units.
type fleetHost struct {
	*sandbox.FleetHost
	units  []string
	broken []string // the units that fail on restart
}

// fleet is three hosts with n units each; host i (from 1) has the units
// at the given positions broken.
type fleet struct {
	*sandbox.HostFleet
	hosts []*fleetHost
}

func newFleet(t *testing.T, n int, broken map[int][]int) *fleet {
	t.Helper()
	if _, err := exec.LookPath("/usr/sbin/sshd"); err != nil {
		t.Fatal("sshd is not installed (make deps installs openssh-server)")
	}
	var specs [][]sandbox.Spec
	for i := 1; i <= 3; i++ {
		hs := failingFleet(n, nil)
		for _, b := range broken[i] {
			hs[b-1].Behaviour = sandbox.FailPre
			hs[b-1].Message = "login to the server failed: authorization failed"
		}
		specs = append(specs, hs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sf, err := sandbox.StartFleet(ctx, binary, specs)
	if err != nil {
		t.Fatalf("start the fleet: %v", err)
	}
	t.Cleanup(sf.Stop)
	f := &fleet{HostFleet: sf}
	for i, h := range sf.Hosts {
		fh := &fleetHost{FleetHost: h, units: sandbox.Names(specs[i])}
		for _, b := range broken[i+1] {
			fh.broken = append(fh.broken, specs[i][b-1].Name)
		}
		sort.Strings(fh.broken)
		f.hosts = append(f.hosts, fh)
	}
	return f
}

// playbook runs the example playbook from the repository against the
// fleet, with extra variables, and returns its output and exit code.
func (f *fleet) playbook(t *testing.T, extra map[string]any, args ...string) (string, int) {
	t.Helper()
	start := time.Now()
	out, code, err := f.Playbook(context.Background(), extra, append([]string{"../examples/ansible/restart-tunnels.yml"}, args...)...)
	if err != nil {
		t.Fatalf("ansible-playbook: %v\n%s", err, out)
	}
	t.Logf("ansible-playbook %v: exit %d in %s\n%s", args, code, time.Since(start).Round(time.Millisecond), out)
	return out, code
}

var (
	failedLine = regexp.MustCompile(`"msg": "FAILED (host\d) (moonfrp-[\w-]+)\.service: (.*)"`)
	recapLine  = regexp.MustCompile(`(?m)^(host\d)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)
)

// failures maps host to "unit: reason" lines the playbook printed.
func failures(out string) map[string][]string {
	m := map[string][]string{}
	for _, g := range failedLine.FindAllStringSubmatch(out, -1) {
		m[g[1]] = append(m[g[1]], g[2])
	}
	for _, v := range m {
		sort.Strings(v)
	}
	return m
}

// recap maps host to its failed count in the PLAY RECAP.
func recap(out string) map[string]string {
	m := map[string]string{}
	for _, g := range recapLine.FindAllStringSubmatch(out, -1) {
		m[g[1]] = "failed=" + g[5] + " unreachable=" + g[4]
	}
	return m
}

// ids returns the InvocationIDs of the host's healthy units (the broken
// ones get new ones by themselves as systemd restarts them).
func (h *fleetHost) ids(t *testing.T) map[string]string {
	var healthy []string
	for _, u := range h.units {
		if !strings.Contains(" "+strings.Join(h.broken, " ")+" ", " "+u+" ") {
			healthy = append(healthy, u)
		}
	}
	return invocationIDs(t, h.SB, healthy)
}

// TestAnsibleFleet drives the example playbook with the real engine over
// ssh against three hosts: Ansible copies the binary to each as the
// module, runs it there, and each host's broken units come back by host,
// with their reasons.
func TestAnsibleFleet(t *testing.T) {
	f := newFleet(t, 6, map[int][]int{1: {2}, 2: {3, 5}})
	all := map[string]any{"moonfrp_filters": []string{}, "moonfrp_serial": "100%", "moonfrp_max_fail_percentage": 100}

	t.Run("check mode changes nothing", func(t *testing.T) {
		before := map[string]map[string]string{}
		for _, h := range f.hosts {
			before[h.Name] = h.ids(t)
		}
		out, code := f.playbook(t, all, "--check")
		if code != 0 {
			t.Fatalf("check mode exit %d", code)
		}
		for _, h := range f.hosts {
			if after := h.ids(t); fmt.Sprint(after) != fmt.Sprint(before[h.Name]) {
				t.Errorf("%s: check mode restarted units (InvocationIDs %v, were %v)", h.Name, after, before[h.Name])
			}
		}
		if got := recap(out); got["host1"] != "failed=0 unreachable=0" || got["host3"] != "failed=0 unreachable=0" {
			t.Errorf("recap %v", got)
		}
	})

	t.Run("restart, a host down, per-host failures", func(t *testing.T) {
		before := map[string]map[string]string{}
		for _, h := range f.hosts[:2] {
			before[h.Name] = h.ids(t)
		}
		f.hosts[2].SB.Stop() // host3's manager is down
		out, code := f.playbook(t, all)
		if code == 0 {
			t.Errorf("ansible-playbook exit 0 with failed units and a host down")
		}
		got := failures(out)
		for _, h := range f.hosts[:2] {
			if strings.Join(got[h.Name], " ") != strings.Join(h.broken, " ") {
				t.Errorf("%s: failed units %v, want %v", h.Name, got[h.Name], h.broken)
			}
			after := h.ids(t)
			for u := range after {
				if after[u] == before[h.Name][u] {
					t.Errorf("%s: %s was not restarted", h.Name, u)
				}
			}
		}
		if !strings.Contains(out, "FAILED host1 moonfrp-client-2.service: ExecStartPre /bin/false exited with status 1") {
			t.Errorf("host1's failure without its reason:\n%s", out)
		}
		r := recap(out)
		if r["host1"] != "failed=1 unreachable=0" || r["host2"] != "failed=1 unreachable=0" || r["host3"] != "failed=1 unreachable=0" {
			t.Errorf("recap %v, want every host failed once (host1 and host2 for their units, host3 for its manager)", r)
		}
		if !regexp.MustCompile(`fatal: \[host3\]: FAILED! => .*is the user manager running\?`).MatchString(out) {
			t.Errorf("host3's failure does not say its manager is down:\n%s", out)
		}
	})

	t.Run("max_fail_percentage stops the rollout", func(t *testing.T) {
		before := f.hosts[1].ids(t)
		out, code := f.playbook(t, map[string]any{"moonfrp_filters": []string{}, "moonfrp_serial": 1, "moonfrp_max_fail_percentage": 0})
		if code == 0 {
			t.Errorf("exit 0 although the first batch failed")
		}
		if got := failures(out); len(got["host1"]) != 1 || len(got["host2"]) != 0 {
			t.Errorf("failures %v: want host1's only, the rollout stopped after it", got)
		}
		if after := f.hosts[1].ids(t); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("host2 was restarted after host1's batch failed")
		}
	})
}
