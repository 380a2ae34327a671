package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// fleetHost is one "host" of the Ansible fleet: a sandboxed user manager
// of its own user, reached over ssh.
type fleetHost struct {
	name string
	user string
	sb   *sandbox.Sandbox
	// broken names its units that fail on restart.
	broken []string
	units  []string
}

// fleet is three hosts behind one sshd, and the files ansible-playbook
// needs: an inventory of them and a library holding the module (a copy of
// the binary named moonfrp_bulk).
type fleet struct {
	hosts     []*fleetHost
	sshd      *sandbox.SSHD
	dir       string
	inventory string
	library   string
	config    string
}

// newFleet starts three hosts with n units each; host i (from 1) has the
// units at the given positions broken.
func newFleet(t *testing.T, n int, broken map[int][]int) *fleet {
	t.Helper()
	for _, tool := range []string{"ansible-playbook", "sshd", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err2 := exec.LookPath("/usr/sbin/" + tool); err2 != nil {
				t.Fatalf("%s is not installed (make deps installs ansible-core and openssh-server)", tool)
			}
		}
	}
	// sshd reads authorized_keys as the user logging in: the path to it
	// must be open to everyone (t.TempDir's is root's alone).
	dir, err := os.MkdirTemp("", "moonfrp-bulk-fleet-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fleet{dir: dir}
	var users []string
	for i := 1; i <= 3; i++ {
		user := fmt.Sprintf("moonfrp-sbx-h%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		sb, err := sandbox.StartAs(ctx, user, true)
		cancel()
		if err != nil {
			t.Fatalf("start host %d: %v", i, err)
		}
		t.Cleanup(sb.Stop)
		specs := failingFleet(n, nil)
		for _, b := range broken[i] {
			specs[b-1].Behaviour = sandbox.FailPre
			specs[b-1].Message = "login to the server failed: authorization failed"
		}
		ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
		err = sb.Install(ctx, specs...)
		cancel()
		if err != nil {
			t.Fatalf("host %d: install units: %v", i, err)
		}
		startAll(t, sb, specs)
		h := &fleetHost{name: fmt.Sprintf("host%d", i), user: user, sb: sb, units: sandbox.Names(specs)}
		for _, b := range broken[i] {
			h.broken = append(h.broken, specs[b-1].Name)
		}
		sort.Strings(h.broken)
		f.hosts = append(f.hosts, h)
		users = append(users, user)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sshd, err := sandbox.StartSSHD(ctx, f.dir, users)
	if err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	t.Cleanup(sshd.Stop)
	f.sshd = sshd

	// The module: the binary itself, under the module's name.
	f.library = filepath.Join(f.dir, "library")
	if err := os.MkdirAll(f.library, 0o755); err != nil {
		t.Fatal(err)
	}
	copyInto(t, f.library, binary)
	if err := os.Rename(filepath.Join(f.library, filepath.Base(binary)), filepath.Join(f.library, "moonfrp_bulk")); err != nil {
		t.Fatal(err)
	}

	var inv strings.Builder
	inv.WriteString("[tunnel_hosts]\n")
	for _, h := range f.hosts {
		env, _ := json.Marshal(map[string]string{"XDG_RUNTIME_DIR": h.sb.RuntimeDir, "XDG_STATE_HOME": filepath.Join(h.sb.RuntimeDir, "state")})
		fmt.Fprintf(&inv, "%s ansible_host=127.0.0.1 ansible_port=%d ansible_user=%s ansible_remote_tmp=%s moonfrp_bulk_user=true moonfrp_bulk_env='%s'\n",
			h.name, sshd.Port, h.user, filepath.Join(h.sb.RuntimeDir, "ansible-tmp"), env)
	}
	fmt.Fprintf(&inv, "\n[tunnel_hosts:vars]\nansible_ssh_private_key_file=%s\n"+
		"ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'\n", sshd.Key)
	f.config = filepath.Join(f.dir, "ansible.cfg")
	if err := os.WriteFile(f.config, []byte("[defaults]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.inventory = filepath.Join(f.dir, "inventory.ini")
	if err := os.WriteFile(f.inventory, []byte(inv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// playbook runs the example playbook from the repository against the
// fleet, with extra variables, and returns its output and exit code.
func (f *fleet) playbook(t *testing.T, extra map[string]any, args ...string) (string, int) {
	t.Helper()
	vars, _ := json.Marshal(extra)
	cmd := exec.Command("ansible-playbook", append([]string{"-i", f.inventory, "-e", string(vars), "--forks", "3",
		"../examples/ansible/restart-tunnels.yml"}, args...)...)
	cmd.Env = append(os.Environ(),
		"ANSIBLE_LIBRARY="+f.library,
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(f.dir, "ansible-local"),
		"ANSIBLE_SSH_CONTROL_PATH_DIR="+filepath.Join(f.dir, "cp"),
		"ANSIBLE_HOST_KEY_CHECKING=False",
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_STDOUT_CALLBACK=default",
		"ANSIBLE_RETRY_FILES_ENABLED=False",
		// No ansible.cfg of the machine's or the user's applies.
		"ANSIBLE_CONFIG="+f.config,
	)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("ansible-playbook: %v\n%s", err, out)
	}
	t.Logf("ansible-playbook %v: exit %d in %s\n%s", args, code, time.Since(start).Round(time.Millisecond), out)
	return string(out), code
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
	return invocationIDs(t, h.sb, healthy)
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
			before[h.name] = h.ids(t)
		}
		out, code := f.playbook(t, all, "--check")
		if code != 0 {
			t.Fatalf("check mode exit %d", code)
		}
		for _, h := range f.hosts {
			if after := h.ids(t); fmt.Sprint(after) != fmt.Sprint(before[h.name]) {
				t.Errorf("%s: check mode restarted units (InvocationIDs %v, were %v)", h.name, after, before[h.name])
			}
		}
		if got := recap(out); got["host1"] != "failed=0 unreachable=0" || got["host3"] != "failed=0 unreachable=0" {
			t.Errorf("recap %v", got)
		}
	})

	t.Run("restart, a host down, per-host failures", func(t *testing.T) {
		before := map[string]map[string]string{}
		for _, h := range f.hosts[:2] {
			before[h.name] = h.ids(t)
		}
		f.hosts[2].sb.Stop() // host3's manager is down
		out, code := f.playbook(t, all)
		if code == 0 {
			t.Errorf("ansible-playbook exit 0 with failed units and a host down")
		}
		got := failures(out)
		for _, h := range f.hosts[:2] {
			if strings.Join(got[h.name], " ") != strings.Join(h.broken, " ") {
				t.Errorf("%s: failed units %v, want %v", h.name, got[h.name], h.broken)
			}
			after := h.ids(t)
			for u := range after {
				if after[u] == before[h.name][u] {
					t.Errorf("%s: %s was not restarted", h.name, u)
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
