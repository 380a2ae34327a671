package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The booted hosts' root file system: its build inputs, pinned here. The
// cache directory's name carries a hash of them, so a change rebuilds it.
const (
	hostSuite   = "bookworm"
	hostVariant = "minbase"
	hostInclude = "systemd,systemd-sysv,dbus,procps,iproute2,curl,jq,openssl"
)

// hostPrefix names every host's cgroups and work directory, so that
// leftovers of killed runs can be swept.
const hostPrefix = "moonfrp-bulk-host-"

// Host is a minimal Debian booted with systemd-nspawn: a real system
// manager, journald and the system bus, for the production path (root,
// units in /etc/systemd/system). See ../shared/docs/systemd-sandbox.md,
// "A real system manager". It shares the machine's network namespace.
type Host struct {
	Name string
	// Root is the container's root file system as seen from outside (an
	// overlay over the cached one): files written there appear inside.
	// /run and /tmp inside are the container's own tmpfs; reach them
	// through Proc.
	Root string
	// PID1 is the container's init, as the machine sees it.
	PID1 int

	work    string
	cgroups []string
	nspawn  *exec.Cmd
	exited  chan struct{}
	pid1cg  []byte
	once    sync.Once
	stopErr error
}

// Proc returns path inside the running container, through /proc/PID1/root.
func (h *Host) Proc(path string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", h.PID1), path)
}

func hostRootfsDir() string {
	sum := sha256.Sum256([]byte(hostSuite + "|" + hostVariant + "|" + hostInclude))
	return filepath.Join(CacheDir(), "rootfs-"+hostSuite+"-"+hex.EncodeToString(sum[:])[:12])
}

// HostRootfs returns the cached root file system, building it with
// debootstrap the first time (a few minutes; Debian's mirror is the one
// apt uses here).
func HostRootfs(ctx context.Context) (string, error) {
	dir := hostRootfsDir()
	if _, err := os.Stat(filepath.Join(dir, "lib/systemd/systemd")); err == nil {
		return dir, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("%w: debootstrap not installed (make deps installs it)", ErrUnavailable)
	}
	if err := os.MkdirAll(CacheDir(), 0o755); err != nil {
		return "", fmt.Errorf("host cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(CacheDir(), ".rootfs.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("host cache lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("host cache lock: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "lib/systemd/systemd")); err == nil {
		return dir, nil
	}
	mirror, err := aptMirror()
	if err != nil {
		return "", err
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant="+hostVariant, "--include="+hostInclude, hostSuite, tmp, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("%w: debootstrap: %v: %s", ErrUnavailable, err, tail(out))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "var/cache/apt/archives/*.deb"))
	for _, d := range debs {
		os.Remove(d)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("host cache: %w", err)
	}
	return dir, nil
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = "..." + s[len(s)-600:]
	}
	return s
}

// aptMirror is the Debian mirror apt is configured with here.
func aptMirror() (string, error) {
	data, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources")
	if err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "URIs:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					return f[0], nil
				}
			}
		}
	}
	return "", fmt.Errorf("%w: no Debian mirror in /etc/apt/sources.list.d/debian.sources", ErrUnavailable)
}

// cgroupMount is one mounted cgroup hierarchy and this process's place in it.
type cgroupMount struct {
	mountpoint string
	current    string // this process's cgroup path in the hierarchy
	cpuset     bool
}

// cgroupMounts lists every mounted cgroup hierarchy (v1 controllers,
// name=systemd, and the unified one) with this process's path in each.
func cgroupMounts() ([]cgroupMount, error) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	paths := map[string]string{} // controllers field -> path
	for _, l := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 {
			paths[parts[1]] = parts[2]
		}
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer mi.Close()
	var mounts []cgroupMount
	seen := map[string]bool{}
	sc := bufio.NewScanner(mi)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+3 >= len(f)+1 || len(f) < sep+4 {
			continue
		}
		fstype, super, mp := f[sep+1], f[sep+3], f[4]
		if seen[mp] {
			continue
		}
		var key string
		switch fstype {
		case "cgroup2":
			key = ""
		case "cgroup":
			var ctrl []string
			for _, o := range strings.Split(super, ",") {
				switch {
				case o == "rw", o == "ro", o == "xattr", o == "clone_children", o == "noprefix", o == "cpuset_v2_mode",
					strings.HasPrefix(o, "release_agent="):
				default:
					ctrl = append(ctrl, o)
				}
			}
			key = strings.Join(ctrl, ",")
		default:
			continue
		}
		cur, ok := paths[key]
		if !ok {
			continue
		}
		seen[mp] = true
		mounts = append(mounts, cgroupMount{mountpoint: mp, current: cur, cpuset: strings.Contains(","+key+",", ",cpuset,")})
	}
	return mounts, sc.Err()
}

// BootHost boots a host from the cached root file system. Its cgroups
// are new directories under this process's own cgroup in every mounted
// hierarchy, and the launcher moves itself into them before it execs
// systemd-nspawn --keep-unit: a container started from the root cgroup
// would take it over. The host is stopped by Stop (and by StopAll, on an
// interrupt, and by SweepStaleHosts after a killed run).
func BootHost(ctx context.Context) (*Host, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: booting a host needs root", ErrUnavailable)
	}
	for _, bin := range []string{"systemd-nspawn", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%w: %s not installed (make deps installs systemd-container)", ErrUnavailable, bin)
		}
	}
	rootfs, err := HostRootfs(ctx)
	if err != nil {
		return nil, err
	}
	SweepStaleHosts()
	pid1cg, err := os.ReadFile("/proc/1/cgroup")
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", hostPrefix)
	if err != nil {
		return nil, err
	}
	h := &Host{Name: strings.TrimPrefix(filepath.Base(work), hostPrefix), work: work, exited: make(chan struct{}), pid1cg: pid1cg}
	h.Name = "mfb" + h.Name
	h.Root = filepath.Join(work, "root")
	register(h)
	fail := func(err error) (*Host, error) {
		h.Stop()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(work, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fail(err)
	}
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(work, d), 0o755); err != nil {
			return fail(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", rootfs, filepath.Join(work, "upper"), filepath.Join(work, "work"))
	if err := syscall.Mount("overlay", h.Root, "overlay", 0, opts); err != nil {
		return fail(fmt.Errorf("%w: overlay mount: %v", ErrUnavailable, err))
	}
	if err := os.WriteFile(filepath.Join(h.Root, "etc/hostname"), []byte(h.Name+"\n"), 0o644); err != nil {
		return fail(err)
	}
	mounts, err := cgroupMounts()
	if err != nil || len(mounts) == 0 {
		return fail(fmt.Errorf("%w: no cgroup hierarchies found: %v", ErrUnavailable, err))
	}
	for _, m := range mounts {
		parent := filepath.Join(m.mountpoint, m.current)
		dir := filepath.Join(parent, hostPrefix+h.Name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fail(fmt.Errorf("cgroup %s: %w", dir, err))
		}
		h.cgroups = append(h.cgroups, dir)
		if m.cpuset {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if v, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
					if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
						return fail(fmt.Errorf("cgroup %s: %w", f, err))
					}
				}
			}
		}
	}
	if err := os.WriteFile(filepath.Join(work, "cgroups"), []byte(strings.Join(h.cgroups, "\n")), 0o644); err != nil {
		return fail(err)
	}
	console, err := os.Create(filepath.Join(work, "console.log"))
	if err != nil {
		return fail(err)
	}
	defer console.Close()
	// The launcher moves itself into every new cgroup, refuses to go on
	// if it is still in a root cgroup, and only then becomes nspawn.
	launcher := `for d in "$@"; do [ "$d" = -- ] && break; echo $$ > "$d/cgroup.procs" || exit 97; done
if grep -qE '^[0-9]+:name=systemd:/$|^0::/$' /proc/self/cgroup; then echo "refusing: still in a root cgroup" >&2; exit 98; fi
while [ "$1" != -- ]; do shift; done; shift; exec "$@"`
	args := append([]string{"-c", launcher, "launcher"}, h.cgroups...)
	args = append(args, "--", "systemd-nspawn", "--keep-unit", "--register=no", "-q", "-M", h.Name, "-D", h.Root, "-b", "--console=read-only")
	h.nspawn = exec.Command("sh", args...)
	h.nspawn.Stdout, h.nspawn.Stderr = console, console
	h.nspawn.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	if err := h.nspawn.Start(); err != nil {
		return fail(fmt.Errorf("%w: start nspawn: %v", ErrUnavailable, err))
	}
	go func() {
		_ = h.nspawn.Wait()
		close(h.exited)
	}()
	os.WriteFile(filepath.Join(work, "nspawn.pid"), []byte(strconv.Itoa(h.nspawn.Process.Pid)), 0o644)
	if err := h.findPID1(ctx); err != nil {
		return fail(err)
	}
	if after, _ := os.ReadFile("/proc/1/cgroup"); !bytes.Equal(after, pid1cg) {
		return fail(fmt.Errorf("PID 1 changed cgroups when the host booted (before %q, after %q): stop and investigate", pid1cg, after))
	}
	if err := h.waitRunning(ctx); err != nil {
		return fail(err)
	}
	return h, nil
}

// findPID1 waits for nspawn's child to become systemd.
func (h *Host) findPID1(ctx context.Context) error {
	nsp := h.nspawn.Process.Pid
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, c := range childrenOf(nsp) {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c)); strings.TrimSpace(string(comm)) == "systemd" {
				h.PID1 = c
				return nil
			}
		}
		select {
		case <-h.exited:
			log, _ := os.ReadFile(filepath.Join(h.work, "console.log"))
			return fmt.Errorf("%w: nspawn exited at boot: %s", ErrUnavailable, tail(log))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
			// No event tells when a child process has exec'd.
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: the container's init did not start within 20s", ErrUnavailable)
		}
	}
}

func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces; split after ')'.
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 1 && f[1] == strconv.Itoa(pid) {
				kids = append(kids, n)
			}
		}
	}
	return kids
}

// waitRunning waits until the system manager says running (or degraded).
func (h *Host) waitRunning(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := h.Command(ctx, "systemctl", "is-system-running", "--wait").Output()
		switch st := strings.TrimSpace(string(out)); st {
		case "running", "degraded":
			return nil
		}
		// The first calls fail until PID 1's socket exists.
		select {
		case <-h.exited:
			log, _ := os.ReadFile(filepath.Join(h.work, "console.log"))
			return fmt.Errorf("%w: the host stopped while booting: %s", ErrUnavailable, tail(log))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: the host's manager was not running within 60s", ErrUnavailable)
		}
	}
}

// Command runs name inside the host, as root, in all its namespaces.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(h.PID1), "-a", name}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root"}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs a command inside the host and returns its combined output.
func (h *Host) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in host: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Install copies a file from this machine into the host.
func (h *Host) Install(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return h.WriteFile(dst, data, mode)
}

// WriteFile writes a file into the host's root file system.
func (h *Host) WriteFile(dst string, data []byte, mode os.FileMode) error {
	p := filepath.Join(h.Root, dst)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// Stop powers the host off (nspawn turns SIGTERM into an orderly
// poweroff), kills what is left, removes its cgroups bottom-up, unmounts
// and removes its files, and checks that PID 1's cgroups are unchanged.
// It is safe to call more than once.
func (h *Host) Stop() {
	h.once.Do(func() {
		if h.nspawn != nil && h.nspawn.Process != nil {
			_ = h.nspawn.Process.Signal(syscall.SIGTERM)
			select {
			case <-h.exited:
			case <-time.After(15 * time.Second):
				// Killing the container's init kills its PID namespace.
				if h.PID1 > 0 {
					_ = syscall.Kill(h.PID1, syscall.SIGKILL)
				}
				_ = h.nspawn.Process.Kill()
				<-h.exited
			}
		}
		h.stopErr = cleanupHost(h.work, h.cgroups, h.Name)
		if after, _ := os.ReadFile("/proc/1/cgroup"); h.pid1cg != nil && !bytes.Equal(after, h.pid1cg) {
			h.stopErr = errors.Join(h.stopErr, fmt.Errorf("PID 1's cgroups changed: before %q, after %q", h.pid1cg, after))
		}
		unregister(h)
	})
}

// StopErr is what went wrong while stopping, if anything.
func (h *Host) StopErr() error { return h.stopErr }

func cleanupHost(work string, cgroups []string, name string) error {
	var errs []error
	for i := len(cgroups) - 1; i >= 0; i-- {
		killTree(cgroups[i])
		removeTree(cgroups[i])
		if _, err := os.Stat(cgroups[i]); err == nil {
			errs = append(errs, fmt.Errorf("cgroup %s left behind", cgroups[i]))
		}
	}
	root := filepath.Join(work, "root")
	for try := 0; try < 20; try++ {
		if err := syscall.Unmount(root, 0); err == nil || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.RemoveAll(work); err != nil {
		errs = append(errs, err)
	}
	// nspawn's own bookkeeping on the machine's /run.
	if name != "" {
		os.RemoveAll(filepath.Join("/run/systemd/nspawn/propagate", name))
	}
	return errors.Join(errs...)
}

// SweepStaleHosts stops hosts left by test runs that were killed.
func SweepStaleHosts() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), hostPrefix+"*"))
	for _, work := range dirs {
		if ownerAlive(work) {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(work, "cgroups"))
		var cgs []string
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if l != "" {
				cgs = append(cgs, l)
			}
		}
		if pid, err := strconv.Atoi(readTrim(filepath.Join(work, "nspawn.pid"))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		name := "mfb" + strings.TrimPrefix(filepath.Base(work), hostPrefix)
		_ = cleanupHost(work, cgs, name)
	}
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}
