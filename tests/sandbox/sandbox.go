// Package sandbox runs a real systemd user manager for tests and the demo,
// on machines that were not booted with systemd. See
// ../shared/docs/systemd-sandbox.md for the recipe and the one rule it
// must keep: never start systemd --user as root in the root cgroup.
package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// UserName is the unprivileged system user that owns every sandbox manager.
const UserName = "moonfrp-sbx"

// cgroupRoots are the hierarchies delegated to the manager: the v1 name=
// systemd one and the unified one. The memory, pids and cpu hierarchies are
// never touched.
var cgroupRoots = []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"}

// cgroupPrefix names every sandbox cgroup, so leftovers can be swept.
const cgroupPrefix = "moonfrp-bulk-sbx-"

// Sandbox is one running systemd --user manager.
type Sandbox struct {
	// RuntimeDir is the manager's XDG_RUNTIME_DIR.
	RuntimeDir string
	// UnitDir holds the unit files ($XDG_RUNTIME_DIR/systemd/user).
	UnitDir string
	// LogDir holds the units' MoonFRP-style log files.
	LogDir string
	// StateDir is a directory the units may write to (markers, counters).
	StateDir string
	UID, GID int

	name    string
	cgroups []string
	manager *exec.Cmd
	exited  chan struct{}
	once    sync.Once
}

// stopper is anything the registry tears down: a Sandbox or a Host.
type stopper interface{ Stop() }

// registry lets an interrupt tear down every live sandbox and host; a
// signal is process-wide, so this one piece of state is too.
var registry = struct {
	sync.Mutex
	live map[stopper]bool
	hook sync.Once
}{live: map[stopper]bool{}}

// ErrUnavailable wraps every reason a sandbox cannot start here.
var ErrUnavailable = errors.New("systemd sandbox unavailable")

// Start creates the sandbox user if needed and starts a manager. It fails
// (wrapping ErrUnavailable) when not root or systemd is missing, and fails
// loudly if PID 1's cgroups change.
func Start(ctx context.Context) (*Sandbox, error) {
	return StartAs(ctx, UserName, false)
}

// StartAs is Start with a manager of its own user, name, created if
// needed. With login set, the user gets a shell and an unlocked account,
// so that sshd lets it in with a key (see SSHD); Start's user has
// neither.
func StartAs(ctx context.Context, name string, login bool) (*Sandbox, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: needs root (to delegate cgroups and switch user)", ErrUnavailable)
	}
	for _, bin := range []string{"/lib/systemd/systemd", "/usr/bin/systemctl"} {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("%w: %s not installed", ErrUnavailable, bin)
		}
	}
	for _, bin := range []string{"unshare", "setpriv", "setsid"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%w: %s not found", ErrUnavailable, bin)
		}
	}
	roots := cgroupRootsHere()
	if len(roots) == 0 {
		return nil, fmt.Errorf("%w: no name=systemd or unified cgroup hierarchy", ErrUnavailable)
	}
	uid, gid, err := ensureUser(name, login)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	SweepStale()
	pid1Before, err := os.ReadFile("/proc/1/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read /proc/1/cgroup: %w", err)
	}

	rt, err := os.MkdirTemp("", "moonfrp-bulk-sbx-")
	if err != nil {
		return nil, fmt.Errorf("runtime dir: %w", err)
	}
	s := &Sandbox{RuntimeDir: rt, UID: uid, GID: gid, name: filepath.Base(rt), exited: make(chan struct{})}
	if err := os.WriteFile(filepath.Join(rt, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		s.cleanupFiles()
		return nil, fmt.Errorf("sandbox dir: %w", err)
	}
	s.UnitDir = filepath.Join(rt, "systemd", "user")
	s.LogDir = filepath.Join(rt, "logs")
	s.StateDir = filepath.Join(rt, "state")
	for _, d := range []string{rt, filepath.Join(rt, "systemd"), s.UnitDir, s.LogDir, s.StateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			s.cleanupFiles()
			return nil, fmt.Errorf("sandbox dir: %w", err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			s.cleanupFiles()
			return nil, fmt.Errorf("sandbox dir: %w", err)
		}
	}
	if err := os.Chmod(rt, 0o700); err != nil {
		s.cleanupFiles()
		return nil, fmt.Errorf("sandbox dir: %w", err)
	}
	for _, root := range roots {
		dir := filepath.Join(root, cgroupPrefix+strings.TrimPrefix(s.name, "moonfrp-bulk-sbx-"))
		if err := os.Mkdir(dir, 0o755); err != nil {
			s.cleanupFiles()
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		s.cgroups = append(s.cgroups, dir)
		if err := chownTree(dir, uid, gid); err != nil {
			s.cleanupFiles()
			return nil, fmt.Errorf("cgroup: %w", err)
		}
	}

	// Inside a private mount namespace: a tmpfs on /run/systemd with an
	// empty system/ (systemd --user refuses to start without it), the shell
	// moves itself into the delegated cgroups, drops to the sandbox user
	// and becomes the manager.
	var script strings.Builder
	script.WriteString("set -e; mount -t tmpfs tmpfs /run/systemd; mkdir /run/systemd/system; ")
	for _, cg := range s.cgroups {
		fmt.Fprintf(&script, "echo $$ > %s/cgroup.procs; ", cg)
	}
	fmt.Fprintf(&script, "exec setpriv --reuid %d --regid %d --init-groups env -i HOME=%s PATH=/usr/sbin:/usr/bin:/sbin:/bin XDG_RUNTIME_DIR=%s /lib/systemd/systemd --user",
		uid, gid, rt, rt)
	logf, err := os.Create(filepath.Join(rt, "manager.log"))
	if err != nil {
		s.cleanupFiles()
		return nil, fmt.Errorf("manager log: %w", err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script.String())
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.cleanupFiles()
		return nil, fmt.Errorf("start manager: %w", err)
	}
	logf.Close()
	s.manager = cmd
	go func() { _ = cmd.Wait(); close(s.exited) }()
	register(s)

	if err := s.waitSocket(ctx, 10*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	pid1After, _ := os.ReadFile("/proc/1/cgroup")
	if !bytes.Equal(pid1Before, pid1After) {
		s.Stop()
		return nil, fmt.Errorf("PID 1 changed cgroups when the sandbox manager started (before %q, after %q): stop and investigate", pid1Before, pid1After)
	}
	return s, nil
}

func (s *Sandbox) waitSocket(ctx context.Context, limit time.Duration) error {
	sock := filepath.Join(s.RuntimeDir, "systemd", "private")
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(sock); err == nil {
			return nil
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(s.RuntimeDir, "manager.log"))
			return fmt.Errorf("%w: manager exited at start (%v): %s", ErrUnavailable, s.manager.ProcessState, strings.TrimSpace(string(log)))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
			// The socket appears without any event we could wait on.
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: manager socket did not appear within %s", ErrUnavailable, limit)
		}
	}
}

// Env is the environment for commands that talk to the sandbox manager.
func (s *Sandbox) Env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"XDG_RUNTIME_DIR=" + s.RuntimeDir,
		"HOME=" + s.RuntimeDir,
		"LANG=C.UTF-8",
	}
}

// Command returns a command that runs as the sandbox user with the
// manager's XDG_RUNTIME_DIR: the manager accepts only its own uid.
func (s *Sandbox) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = s.Env()
	cmd.Dir = s.RuntimeDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(s.UID), Gid: uint32(s.GID)}}
	return cmd
}

// Systemctl runs systemctl --user args as the sandbox user and returns its
// combined output.
func (s *Sandbox) Systemctl(ctx context.Context, args ...string) (string, error) {
	out, err := s.Command(ctx, "systemctl", append([]string{"--user"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("systemctl --user %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Show returns one property of a unit.
func (s *Sandbox) Show(ctx context.Context, unit, prop string) string {
	out, _ := s.Systemctl(ctx, "show", "-p", prop, "--value", unit)
	return strings.TrimSpace(out)
}

// Stop shuts the manager down, sweeps its cgroups and removes its files.
// It is safe to call more than once and from a signal handler's goroutine.
func (s *Sandbox) Stop() {
	s.once.Do(func() {
		if s.manager != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = s.Systemctl(ctx, "exit")
			cancel()
			select {
			case <-s.exited:
			case <-time.After(5 * time.Second):
			}
		}
		for _, cg := range s.cgroups {
			killTree(cg)
		}
		if s.manager != nil {
			select {
			case <-s.exited:
			case <-time.After(5 * time.Second):
			}
		}
		for i := len(s.cgroups) - 1; i >= 0; i-- {
			removeTree(s.cgroups[i])
		}
		s.cleanupFiles()
		unregister(s)
	})
}

func (s *Sandbox) cleanupFiles() {
	if s.RuntimeDir != "" {
		os.RemoveAll(s.RuntimeDir)
	}
	for i := len(s.cgroups) - 1; i >= 0; i-- {
		removeTree(s.cgroups[i])
	}
}

func register(s stopper) {
	registry.Lock()
	registry.live[s] = true
	registry.Unlock()
	registry.hook.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		go func() {
			sig := <-ch
			StopAll()
			fmt.Fprintf(os.Stderr, "sandbox: torn down on %v\n", sig)
			os.Exit(130)
		}()
	})
}

func unregister(s stopper) {
	registry.Lock()
	delete(registry.live, s)
	registry.Unlock()
}

// StopAll stops every sandbox and host this process started.
func StopAll() {
	registry.Lock()
	var all []stopper
	for s := range registry.live {
		all = append(all, s)
	}
	registry.Unlock()
	for _, s := range all {
		s.Stop()
	}
}

func cgroupRootsHere() []string {
	var roots []string
	for _, r := range cgroupRoots {
		if _, err := os.Stat(filepath.Join(r, "cgroup.procs")); err == nil {
			roots = append(roots, r)
		}
	}
	if len(roots) == 0 {
		// A pure cgroup v2 host: the unified hierarchy is the root.
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
			roots = append(roots, "/sys/fs/cgroup")
		}
	}
	return roots
}

func ensureUser(name string, login bool) (int, int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		shell := "/usr/sbin/nologin"
		if login {
			shell = "/bin/bash"
		}
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
			"--shell", shell, name).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "already exists") {
			return 0, 0, fmt.Errorf("useradd %s: %v: %s", name, err, out)
		}
		if u, err = user.Lookup(name); err != nil {
			return 0, 0, fmt.Errorf("look up %s: %w", name, err)
		}
	}
	if login {
		// A locked account ("!" in shadow) is refused even a key by sshd
		// without PAM; "*" is no password, not locked.
		if out, err := exec.Command("usermod", "--shell", "/bin/bash", "--password", "*", name).CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("usermod %s: %v: %s", name, err, out)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid, nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// killTree SIGKILLs every process in a cgroup directory and below.
func killTree(dir string) {
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || !info.IsDir() {
			return nil
		}
		data, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	})
}

// removeTree removes a cgroup directory bottom-up, retrying briefly while
// killed processes are still being reaped.
func removeTree(dir string) {
	for attempt := 0; attempt < 50; attempt++ {
		var dirs []string
		_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err == nil && info.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		if len(dirs) == 0 {
			return
		}
		failed := false
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				failed = true
			}
		}
		if !failed {
			return
		}
		killTree(dir)
		time.Sleep(20 * time.Millisecond)
	}
}

// SweepStale removes sandboxes left by runs that died without tearing down:
// cgroups whose manager is gone, or whose runtime directory was removed.
func SweepStale() {
	for _, root := range cgroupRootsHere() {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if !e.IsDir() || !strings.HasPrefix(e.Name(), cgroupPrefix) {
				continue
			}
			rt := filepath.Join(os.TempDir(), "moonfrp-bulk-sbx-"+strings.TrimPrefix(e.Name(), cgroupPrefix))
			if _, err := os.Stat(filepath.Join(rt, "systemd", "private")); err == nil && ownerAlive(rt) {
				continue // a live sandbox of another process
			}
			dir := filepath.Join(root, e.Name())
			killTree(dir)
			removeTree(dir)
			os.RemoveAll(rt)
		}
	}
}

// ownerAlive reports whether the process that made a sandbox still runs.
func ownerAlive(rt string) bool {
	data, err := os.ReadFile(filepath.Join(rt, "owner.pid"))
	if err != nil {
		return true // cannot tell; leave it alone
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return true
	}
	return syscall.Kill(pid, 0) == nil
}

// KillManager kills the manager abruptly, as a crash would, for tests of
// a manager lost mid-run. Stop still cleans up after it.
func (s *Sandbox) KillManager() error {
	if s.manager == nil || s.manager.Process == nil {
		return errors.New("no manager")
	}
	return s.manager.Process.Kill()
}
