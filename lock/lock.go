// Package lock keeps two moonfrp-bulk runs from acting on the same unit at
// the same time. Each unit has its own lock: one byte of a lock file
// (units.lock) in a directory scoped to the service manager, at an offset
// that the unit's name hashes to, locked with an open file description
// lock (F_OFD_SETLK). Such locks belong to the open file, not to the
// process, and one open file holds any number of them: a run over 1,000
// units holds one descriptor, not 1,000, and fits under a 1,024 limit.
// Runs over disjoint units, or against different users' managers, never
// wait for each other. Beside each held lock, a small file (FileName)
// names the holder's pid, for the message of a run that waits.
//
// The tool runs as root beside less trusted users, so the directory must
// belong to the caller and be writable by nobody else, and its files are
// created 0600 without following links.
package lock

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moonfrp/moonfrp-bulk/safefile"
)

// ErrBusy is returned with NoWait when another run holds a unit.
var ErrBusy = errors.New("another moonfrp-bulk run is acting on the same units")

// ErrUnsafeDir means the lock directory could be tampered with by others.
var ErrUnsafeDir = errors.New("unsafe lock directory")

// LockFile is the name of the file whose bytes are the units' locks.
const LockFile = "units.lock"

// maxNameBytes is the longest unit name used as a pid file name as it
// is; longer ones (systemd allows 255 bytes) get a hashed name.
const maxNameBytes = 200

// Dir returns the lock directory for the system manager, or with user set
// for the calling user's manager (in XDG_RUNTIME_DIR, as systemd does).
func Dir(user bool) string {
	if !user {
		return "/run/moonfrp-bulk"
	}
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		return filepath.Join(rt, "moonfrp-bulk")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("moonfrp-bulk-%d", os.Geteuid()))
}

// Set is a held set of unit locks: one open lock file, and the pid files
// written beside it.
type Set struct {
	f    *os.File
	pids []string
}

// Release removes the pid files that are still this run's and drops every
// lock (closing the lock file drops them all at once). It is safe on a
// nil Set and more than once.
func (s *Set) Release() {
	if s == nil || s.f == nil {
		return
	}
	s.removePids()
	s.f.Close()
	s.f = nil
}

// removePids removes the pid files that still name this process.
func (s *Set) removePids() {
	me := strconv.Itoa(os.Getpid())
	for _, p := range s.pids {
		if data, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(data)) == me {
			os.Remove(p)
		}
	}
	s.pids = nil
}

// Options tunes Acquire.
type Options struct {
	// NoWait makes Acquire fail with ErrBusy instead of waiting.
	NoWait bool
	// OnWait is called once, with the holder's pid (0 if unknown or not a
	// moonfrp-bulk process), before Acquire starts waiting.
	OnWait func(pid int)
}

// FileName is the name of a unit's pid file.
func FileName(unit string) string {
	if len(unit) <= maxNameBytes && !strings.ContainsAny(unit, "/\x00") {
		return unit + ".pid"
	}
	sum := sha256.Sum256([]byte(unit))
	return "h-" + hex.EncodeToString(sum[:16]) + ".pid"
}

// offset is the byte of the lock file that is unit's lock: 62 bits of its
// name's hash, so that two names share a byte only by a chance that does
// not arise in practice (and would make two runs take turns, no worse).
func offset(unit string) int64 {
	sum := sha256.Sum256([]byte(unit))
	return int64(binary.BigEndian.Uint64(sum[:8]) >> 2)
}

// Acquire locks every unit in dir. Locks are taken in the order of their
// offsets, so that two runs waiting for each other cannot deadlock. It
// returns when all are held, when ctx ends, or with NoWait as soon as one
// is busy.
func Acquire(ctx context.Context, dir string, units []string, opt Options) (*Set, error) {
	if err := safeDir(dir); err != nil {
		return nil, err
	}
	f, err := openLockFile(filepath.Join(dir, LockFile))
	if err != nil {
		return nil, err
	}
	byOffset := map[int64]string{}
	for _, u := range units {
		byOffset[offset(u)] = u
	}
	offs := make([]int64, 0, len(byOffset))
	for o := range byOffset {
		offs = append(offs, o)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	set := &Set{f: f}
	warned := false
	for _, off := range offs {
		u := byOffset[off]
		if err := lockByte(ctx, set, dir, u, off, opt, &warned); err != nil {
			set.Release()
			return nil, err
		}
		p := filepath.Join(dir, FileName(u))
		if err := writePid(p); err != nil {
			set.Release()
			return nil, fmt.Errorf("lock %s: %w", u, err)
		}
		set.pids = append(set.pids, p)
	}
	return set, nil
}

// openLockFile opens (creating it 0600, never through a link) the lock
// file, which must be a regular file of the caller's.
func openLockFile(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%w: lock %s is a symlink; remove it", ErrUnsafeDir, path)
		}
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: lock %s is not a regular file of yours; remove it", ErrUnsafeDir, path)
	}
	if st.Mode&0o077 != 0 {
		_ = unix.Fchmod(fd, 0o600)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// byteLock is the F_OFD_SETLK(W) argument for one byte at off.
func byteLock(off int64, typ int16) *unix.Flock_t {
	return &unix.Flock_t{Type: typ, Whence: 0, Start: off, Len: 1}
}

// lockByte takes unit's byte, waiting (unless NoWait) while another run
// holds it.
func lockByte(ctx context.Context, set *Set, dir, unit string, off int64, opt Options, warned *bool) error {
	err := unix.FcntlFlock(set.f.Fd(), unix.F_OFD_SETLK, byteLock(off, unix.F_WRLCK))
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
		return fmt.Errorf("lock %s: %w", unit, err)
	}
	pid := holder(filepath.Join(dir, FileName(unit)))
	if opt.NoWait {
		if pid > 0 {
			return fmt.Errorf("%w (pid %d holds %s)", ErrBusy, pid, unit)
		}
		return fmt.Errorf("%w (%s is held)", ErrBusy, unit)
	}
	if !*warned && opt.OnWait != nil {
		opt.OnWait(pid)
		*warned = true
	}
	if err := waitLock(ctx, set, off); err != nil {
		return fmt.Errorf("lock %s: %w", unit, err)
	}
	return nil
}

// waitLock blocks in F_OFD_SETLKW until the byte is free or ctx ends. The
// call cannot be interrupted from Go, so it runs in its own goroutine.
// When ctx ends first, that goroutine takes the lock file over and closes
// it once the call returns, so that a lock obtained too late is dropped
// at once (with every other lock of the set).
func waitLock(ctx context.Context, set *Set, off int64) error {
	f := set.f
	done := make(chan error) // unbuffered: a send happens only if someone waits
	abandoned := make(chan struct{})
	go func() {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLKW, byteLock(off, unix.F_WRLCK))
		select {
		case done <- err:
		case <-abandoned:
			f.Close()
		}
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		close(abandoned)
		set.removePids()
		set.f = nil // the goroutine closes it
		return ctx.Err()
	}
}

// writePid writes this process's pid into the pid file at path (0600,
// never through a link), replacing whatever a run that died left there.
func writePid(path string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return fmt.Errorf("%w: %s is a symlink; remove it", ErrUnsafeDir, path)
		}
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: %s is not a regular file of yours; remove it", ErrUnsafeDir, path)
	}
	_, err = unix.Write(fd, []byte(strconv.Itoa(os.Getpid())+"\n"))
	return err
}

// safeDir creates dir if needed and checks that nobody else may tamper
// with it (see safefile.OwnDir).
func safeDir(dir string) error {
	// The runtime directory is the session's or the system's, never ours
	// to make: a run that outlives it must not bring it back.
	if parent := filepath.Dir(dir); !isDir(parent) {
		return fmt.Errorf("%w: lock directory: %s does not exist (is XDG_RUNTIME_DIR right?)", ErrUnsafeDir, parent)
	}
	if err := safefile.OwnDir(dir, 0o755); err != nil {
		hint := ""
		if strings.HasPrefix(dir, os.TempDir()) {
			hint = " (or set XDG_RUNTIME_DIR)"
		}
		return fmt.Errorf("%w: lock directory: %w%s", ErrUnsafeDir, err, hint)
	}
	return nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// holder reads the pid of the run that holds a unit from its pid file,
// and returns it only if that process is alive and is moonfrp-bulk;
// otherwise 0 (unknown), so that nobody is told to kill an unrelated
// process. The holder writes its pid just after it takes the lock, so a
// reader can come in between; it looks again for up to 50 ms.
func holder(path string) int {
	for try := 0; try < 10; try++ {
		if f, err := safefile.Open(path, safefile.Options{}); err == nil {
			data, _ := f.ReadFrom(0, 32)
			f.Close()
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				if isMoonfrpBulk(pid) {
					return pid
				}
				return 0
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}

func isMoonfrpBulk(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return false
	}
	c := strings.TrimSpace(string(comm))
	// The test binary of this package holds locks too.
	return c == "moonfrp-bulk" || strings.HasSuffix(c, ".test")
}
