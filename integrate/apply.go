package integrate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
)

// Options say what to integrate, and where.
type Options struct {
	// Dir is MoonFRP's module directory (see Find).
	Dir string
	// ShimDir receives the shim, as ShimName.
	ShimDir string
	// Shim is the shim's content, embedded in the binary.
	Shim []byte
	// Bin is the moonfrp-bulk binary the shim should run.
	Bin string
}

// Change is what Apply or Undo did, for the report.
type Change struct {
	Services string // the changed moonfrp-services.sh
	Backup   string // its copy before the change, if one was made
	Shim     string // the installed shim
	// Done says what happened: "added", "updated", "unchanged" or
	// "removed", "absent".
	Done string
}

func (o Options) shimPath() string { return filepath.Join(o.ShimDir, ShimName) }

// shimRE finds the shim's path in a block.
var shimRE = regexp.MustCompile(`(?m)^\s*source '([^']+)'$`)

// Apply installs the shim and puts the block at the end of
// moonfrp-services.sh, or brings an existing block up to date. It is
// idempotent. Every write is a temporary file renamed into place, with
// the original's mode and owner, and the original is kept as a backup.
func Apply(o Options) (Change, error) {
	if err := safePath("shim directory", o.ShimDir); err != nil {
		return Change{}, err
	}
	if err := safePath("moonfrp-bulk binary", o.Bin); err != nil {
		return Change{}, err
	}
	if err := trustedBinary(o.Bin); err != nil {
		return Change{}, err
	}
	ch := Change{Services: filepath.Join(o.Dir, ServicesFile), Shim: o.shimPath()}
	content, st, err := readModuleStat(ch.Services)
	if err != nil {
		return ch, err
	}
	if err := Compatible(content); err != nil {
		return ch, err
	}
	if err := installShim(o); err != nil {
		return ch, err
	}
	before, old, found, err := split(content)
	if err != nil {
		return ch, fmt.Errorf("%s: %w", ch.Services, err)
	}
	block := Block(ch.Shim, o.Bin)
	var next []byte
	next = append(next, before...)
	if len(before) > 0 && before[len(before)-1] != '\n' {
		next = append(next, '\n')
		block = strings.Replace(block, beginMarker, beginMarker+nlFlag, 1)
	}
	next = append(next, block...)
	switch {
	case found && bytes.Equal(old, []byte(block)):
		ch.Done = "unchanged"
		return ch, nil
	case found:
		ch.Done = "updated"
	default:
		ch.Done = "added"
		ch.Backup = filepath.Join(o.Dir, "."+ServicesFile+".moonfrp-bulk.orig")
		if err := writeAtomic(ch.Backup, content, 0o600, st.Uid, st.Gid); err != nil {
			return ch, fmt.Errorf("backup: %w", err)
		}
	}
	if err := writeAtomic(ch.Services, next, st.Mode&0o7777, st.Uid, st.Gid); err != nil {
		return ch, err
	}
	return ch, nil
}

// Undo removes the block, leaving moonfrp-services.sh byte for byte as it
// was before Apply, and removes the shim that Apply installed (when it is
// still the one this binary carries).
func Undo(o Options) (Change, error) {
	ch := Change{Services: filepath.Join(o.Dir, ServicesFile), Shim: o.shimPath()}
	content, st, err := readModuleStat(ch.Services)
	if err != nil {
		return ch, err
	}
	before, block, found, err := split(content)
	if err != nil {
		return ch, fmt.Errorf("%s: %w", ch.Services, err)
	}
	if m := shimRE.FindSubmatch(block); m != nil {
		// The shim the block names, wherever integrate put it.
		ch.Shim = string(m[1])
		o.ShimDir = filepath.Dir(ch.Shim)
	}
	ch.Done = "absent"
	if found {
		if err := writeAtomic(ch.Services, before, st.Mode&0o7777, st.Uid, st.Gid); err != nil {
			return ch, err
		}
		ch.Done = "removed"
		os.Remove(filepath.Join(o.Dir, "."+ServicesFile+".moonfrp-bulk.orig"))
	}
	if cur, err := readModule(ch.Shim); err == nil && bytes.Equal(cur, o.Shim) && filepath.Base(ch.Shim) == ShimName {
		if err := os.Remove(ch.Shim); err != nil {
			return ch, fmt.Errorf("remove shim: %w", err)
		}
		os.Remove(o.ShimDir) // only when empty
	}
	return ch, nil
}

// installShim writes the shim into ShimDir, which must be a real
// directory that only its owner (root, or the caller) can write.
func installShim(o Options) error {
	if err := os.MkdirAll(o.ShimDir, 0o755); err != nil {
		return fmt.Errorf("shim directory: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(o.ShimDir, &st); err != nil {
		return fmt.Errorf("shim directory: %w", err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("shim directory %s is not a directory (a symlink?); remove it or choose another with --shim-dir", o.ShimDir)
	case int(st.Uid) != os.Geteuid() && st.Uid != 0:
		return fmt.Errorf("shim directory %s belongs to uid %d; choose one that root owns with --shim-dir", o.ShimDir, st.Uid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("shim directory %s is writable by others; fix its mode (chmod go-w) or choose another", o.ShimDir)
	}
	if cur, err := readModule(o.shimPath()); err == nil && bytes.Equal(cur, o.Shim) {
		return nil
	}
	return writeAtomic(o.shimPath(), o.Shim, 0o644, uint32(os.Geteuid()), uint32(os.Getegid()))
}

// readModule reads a module without following a symlink, regular files
// only, bounded.
func readModule(path string) ([]byte, error) {
	b, _, err := readModuleStat(path)
	return b, err
}

func readModuleStat(path string) ([]byte, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, st, fmt.Errorf("%s is a symlink; integrate changes only regular files (point --moonfrp-dir at the real directory)", path)
		}
		return nil, st, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, st, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, st, fmt.Errorf("%s is not a regular file", path)
	}
	if err := trusted(path, st); err != nil {
		return nil, st, err
	}
	if st.Size > maxModuleBytes {
		return nil, st, fmt.Errorf("%s is larger than %d bytes", path, maxModuleBytes)
	}
	buf := make([]byte, st.Size)
	n, err := f.ReadAt(buf, 0)
	if err != nil && n != len(buf) {
		return nil, st, fmt.Errorf("read %s: %w", path, err)
	}
	return buf[:n], st, nil
}

// writeAtomic writes data to a new file beside path and renames it over
// path, so that a reader sees the old or the new file, never half of one.
func writeAtomic(path string, data []byte, mode, uid, gid uint32) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".moonfrp-bulk-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(os.FileMode(mode & 0o777)); err != nil {
		return fail(err)
	}
	if os.Geteuid() == 0 {
		if err := f.Chown(int(uid), int(gid)); err != nil {
			return fail(err)
		}
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// trusted refuses a MoonFRP file or directory that another user could
// have written: root's MoonFRP sources its modules, so one of them owned
// by another user, or writable by its group or by anyone, would run that
// user's code as root. It must belong to root, or, for an integration by
// another user, to that user.
func trusted(path string, st unix.Stat_t) error {
	euid := uint32(os.Geteuid())
	owner := "root"
	if euid != 0 {
		owner = fmt.Sprintf("uid %d (you)", euid)
	}
	if (st.Uid != 0 && st.Uid != euid) || st.Mode&0o022 != 0 {
		return fmt.Errorf("%s belongs to uid %d with mode %04o, and root's MoonFRP would run it: it must be %s's and writable by nobody else (chown %d %s; chmod go-w %s), then run integrate again",
			path, st.Uid, st.Mode&0o7777, owner, euid, path, path)
	}
	return nil
}

// trustedDir is trusted for a directory (see Find).
func trustedDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	return trusted(dir, st)
}

// trustedBinary refuses, when root integrates, a binary that root's
// MoonFRP would run but another user could replace: it and every
// directory above it must be root's and writable by nobody else (a build
// in a user's home, or a `go run` temporary, would not do).
func trustedBinary(bin string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	for p := bin; ; p = filepath.Dir(p) {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return fmt.Errorf("moonfrp-bulk binary %s: %w", bin, err)
		}
		if st.Uid != 0 || st.Mode&0o022 != 0 && !(st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Mode&unix.S_ISVTX != 0 && p != bin) {
			return fmt.Errorf("moonfrp-bulk binary %s: %s is not root's alone, and root's MoonFRP would run it; install the binary where only root can write (install -m 755 moonfrp-bulk /usr/local/bin/) and run integrate from there", bin, p)
		}
		if p == "/" {
			return nil
		}
	}
}
