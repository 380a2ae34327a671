package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// FleetHost is one "host" of an Ansible fleet: a sandboxed user manager
// of its own user, reached over ssh.
type FleetHost struct {
	Name string // the inventory name: host1, host2, ...
	User string
	SB   *Sandbox
}

// HostFleet is hosts behind one sshd, and what ansible-playbook needs to
// reach them: an inventory, a library holding the module (the binary
// under the name moonfrp_bulk), and an ansible.cfg of its own.
type HostFleet struct {
	Hosts     []*FleetHost
	SSHD      *SSHD
	Dir       string
	Inventory string
	Library   string
	Config    string
}

// StartFleet starts one manager per entry of specs (host i gets the units
// specs[i], started), under users moonfrp-sbx-h1, -h2, ..., an sshd that
// lets those users in with a fresh key, and writes the inventory. binary
// becomes the module.
func StartFleet(ctx context.Context, binary string, specs [][]Spec) (*HostFleet, error) {
	for _, tool := range []string{"ansible-playbook", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: %s not installed (ansible-core, openssh-client)", ErrUnavailable, tool)
		}
	}
	// sshd reads authorized_keys as the user logging in: the path to it
	// must be open to everyone.
	dir, err := os.MkdirTemp("", "moonfrp-bulk-fleet-")
	if err != nil {
		return nil, err
	}
	f := &HostFleet{Dir: dir}
	if err := os.Chmod(dir, 0o755); err != nil {
		f.Stop()
		return nil, err
	}
	var users []string
	for i, hs := range specs {
		user := fmt.Sprintf("moonfrp-sbx-h%d", i+1)
		sb, err := StartAs(ctx, user, true)
		if err != nil {
			f.Stop()
			return nil, fmt.Errorf("host %d: %w", i+1, err)
		}
		f.Hosts = append(f.Hosts, &FleetHost{Name: fmt.Sprintf("host%d", i+1), User: user, SB: sb})
		users = append(users, user)
		if err := sb.Install(ctx, hs...); err != nil {
			f.Stop()
			return nil, fmt.Errorf("host %d: install units: %w", i+1, err)
		}
		// Broken units fail to start; that is what they are for.
		_, _ = sb.Systemctl(ctx, append([]string{"start"}, Names(hs)...)...)
	}
	if f.SSHD, err = StartSSHD(ctx, dir, users); err != nil {
		f.Stop()
		return nil, err
	}
	f.Library = filepath.Join(dir, "library")
	if err := os.MkdirAll(f.Library, 0o755); err != nil {
		f.Stop()
		return nil, err
	}
	data, err := os.ReadFile(binary)
	if err == nil {
		err = os.WriteFile(filepath.Join(f.Library, "moonfrp_bulk"), data, 0o755)
	}
	if err != nil {
		f.Stop()
		return nil, fmt.Errorf("module: %w", err)
	}
	f.Config = filepath.Join(dir, "ansible.cfg")
	if err := os.WriteFile(f.Config, []byte("[defaults]\n"), 0o644); err != nil {
		f.Stop()
		return nil, err
	}
	var inv strings.Builder
	inv.WriteString("[tunnel_hosts]\n")
	for _, h := range f.Hosts {
		// The module talks to the host user's own manager.
		env, _ := json.Marshal(map[string]string{"XDG_RUNTIME_DIR": h.SB.RuntimeDir, "XDG_STATE_HOME": filepath.Join(h.SB.RuntimeDir, "state")})
		fmt.Fprintf(&inv, "%s ansible_host=127.0.0.1 ansible_port=%d ansible_user=%s ansible_remote_tmp=%s moonfrp_bulk_user=true moonfrp_bulk_env='%s'\n",
			h.Name, f.SSHD.Port, h.User, filepath.Join(h.SB.RuntimeDir, "ansible-tmp"), env)
	}
	fmt.Fprintf(&inv, "\n[tunnel_hosts:vars]\nansible_ssh_private_key_file=%s\n"+
		"ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'\n", f.SSHD.Key)
	f.Inventory = filepath.Join(dir, "inventory.ini")
	if err := os.WriteFile(f.Inventory, []byte(inv.String()), 0o644); err != nil {
		f.Stop()
		return nil, err
	}
	return f, nil
}

// Playbook runs ansible-playbook with the fleet's inventory and module,
// extra variables and args (the playbook's path among them), and returns
// its combined output and exit code.
func (f *HostFleet) Playbook(ctx context.Context, extra map[string]any, args ...string) (string, int, error) {
	vars, err := json.Marshal(extra)
	if err != nil {
		return "", 0, err
	}
	cmd := exec.CommandContext(ctx, "ansible-playbook", append([]string{"-i", f.Inventory, "-e", string(vars), "--forks", "3"}, args...)...)
	cmd.Env = append(os.Environ(),
		"ANSIBLE_LIBRARY="+f.Library,
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(f.Dir, "ansible-local"),
		"ANSIBLE_SSH_CONTROL_PATH_DIR="+filepath.Join(f.Dir, "cp"),
		"ANSIBLE_HOST_KEY_CHECKING=False",
		// No ssh master connection that outlives the run (and the test).
		"ANSIBLE_SSH_ARGS=-o ControlMaster=no",
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_STDOUT_CALLBACK=default",
		"ANSIBLE_RETRY_FILES_ENABLED=False",
		// No ansible.cfg of the machine's or the user's applies.
		"ANSIBLE_CONFIG="+f.Config,
	)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode(), nil
	}
	return string(out), 0, err
}

// Stop stops the sshd and every host's manager, and removes the files.
func (f *HostFleet) Stop() {
	if f.SSHD != nil {
		f.SSHD.Stop()
	}
	for _, h := range f.Hosts {
		h.SB.Stop()
		// Ansible makes its remote_tmp (inside the runtime directory)
		// again on a host whose manager a test stopped early.
		os.RemoveAll(h.SB.RuntimeDir)
	}
	os.RemoveAll(f.Dir)
}
