// Package lock keeps two moonfrp-bulk runs from acting on the same unit at
// the same time. Each unit has its own advisory lock file (flock) in a
// directory scoped to the service manager, so runs over disjoint units, or
// against different users' managers, never wait for each other.
//
// The tool runs as root beside less trusted users, so the directory must
// belong to the caller and be writable by nobody else, lock files are
// created 0600 without following links, and a lock file is removed by the
// run that held it, while it still holds it.
package lock

import (
	"context"
	"crypto/sha256"
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

// maxNameBytes is the longest unit name used as a lock file name as it
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

// held is one lock: the open file and the path it was opened at.
type held struct {
	f    *os.File
	path string
}

// Set is a held set of unit locks.
type Set struct{ locks []held }

// Release removes each lock file and drops its lock. The file is removed
// while the lock is still held, so a run that was waiting on it notices
// (its file is no longer the one at the path) and opens the new one.
func (s *Set) Release() {
	for _, l := range s.locks {
		// Only our own file: if someone replaced it, it is not ours to
		// remove (it may be another run's live lock).
		var mine, now unix.Stat_t
		if unix.Fstat(int(l.f.Fd()), &mine) == nil && unix.Lstat(l.path, &now) == nil &&
			mine.Ino == now.Ino && mine.Dev == now.Dev {
			unix.Unlink(l.path)
		}
		l.f.Close()
	}
	s.locks = nil
}

// Options tunes Acquire.
type Options struct {
	// NoWait makes Acquire fail with ErrBusy instead of waiting.
	NoWait bool
	// OnWait is called once, with the holder's pid (0 if unknown or not a
	// moonfrp-bulk process), before Acquire starts waiting.
	OnWait func(pid int)
}

// FileName is the lock file name of a unit.
func FileName(unit string) string {
	if len(unit) <= maxNameBytes && !strings.ContainsAny(unit, "/\x00") {
		return unit + ".lock"
	}
	sum := sha256.Sum256([]byte(unit))
	return "h-" + hex.EncodeToString(sum[:16]) + ".lock"
}

// Acquire locks every unit in dir. Locks are taken in sorted order so that
// two runs waiting for each other cannot deadlock. It returns when all are
// held, when ctx ends, or with NoWait as soon as one is busy.
func Acquire(ctx context.Context, dir string, units []string, opt Options) (*Set, error) {
	if err := safeDir(dir); err != nil {
		return nil, err
	}
	names := append([]string(nil), units...)
	sort.Strings(names)
	set := &Set{}
	warned := false
	for _, u := range names {
		l, err := lockOne(ctx, filepath.Join(dir, FileName(u)), u, opt, &warned)
		if err != nil {
			set.Release()
			return nil, err
		}
		set.locks = append(set.locks, l)
	}
	return set, nil
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

// lockOne opens (creating it 0600, never through a link) and locks one
// lock file. If the file was removed or replaced while this run waited,
// it starts over with the file now at the path.
func lockOne(ctx context.Context, path, unit string, opt Options, warned *bool) (held, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600)
		if err != nil {
			if errors.Is(err, unix.ELOOP) {
				return held{}, fmt.Errorf("%w: lock %s is a symlink; remove it", ErrUnsafeDir, path)
			}
			return held{}, fmt.Errorf("lock %s: %w", unit, err)
		}
		f := os.NewFile(uintptr(fd), path)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
			f.Close()
			return held{}, fmt.Errorf("%w: lock %s is not a regular file of yours; remove it", ErrUnsafeDir, path)
		}
		if st.Mode&0o077 != 0 {
			// Made by an older version: nobody else may even open it.
			_ = unix.Fchmod(fd, 0o600)
		}
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := holder(f)
			if opt.NoWait {
				f.Close()
				if pid > 0 {
					return held{}, fmt.Errorf("%w (pid %d holds %s)", ErrBusy, pid, unit)
				}
				return held{}, fmt.Errorf("%w (%s is held)", ErrBusy, unit)
			}
			if !*warned && opt.OnWait != nil {
				opt.OnWait(pid)
				*warned = true
			}
			if err = waitLock(ctx, f); err != nil {
				// waitLock's goroutine owns f now and closes it.
				return held{}, fmt.Errorf("lock %s: %w", unit, err)
			}
		}
		if err != nil {
			f.Close()
			return held{}, fmt.Errorf("lock %s: %w", unit, err)
		}
		var now unix.Stat_t
		if unix.Lstat(path, &now) != nil || now.Ino != st.Ino || now.Dev != st.Dev {
			f.Close() // released and removed meanwhile: lock the new file
			continue
		}
		// Fixed width, written in place: a reader never sees a half pid.
		if _, err := f.WriteAt([]byte(fmt.Sprintf("%10d\n", os.Getpid())), 0); err != nil {
			f.Close()
			return held{}, fmt.Errorf("lock %s: %w", unit, err)
		}
		return held{f: f, path: path}, nil
	}
}

// waitLock blocks in flock until the lock is free or ctx ends. flock
// cannot be interrupted from Go, so it runs in its own goroutine. When ctx
// ends first, that goroutine keeps f and closes it once flock returns, so
// a lock obtained too late is dropped at once.
func waitLock(ctx context.Context, f *os.File) error {
	fd := int(f.Fd())
	done := make(chan error) // unbuffered: a send happens only if someone waits
	abandoned := make(chan struct{})
	go func() {
		err := unix.Flock(fd, unix.LOCK_EX)
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
		return ctx.Err()
	}
}

// holder reads the pid of the run that holds f's lock and returns it only
// if that process is alive and is moonfrp-bulk; otherwise 0 (unknown), so
// that nobody is told to kill an unrelated process. The holder writes its
// pid just after its flock succeeds, so a reader can come in between; it
// looks again for up to 50 ms.
func holder(f *os.File) int {
	buf := make([]byte, 16)
	for try := 0; try < 10; try++ {
		n, _ := f.ReadAt(buf, 0)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n]))); err == nil && pid > 0 {
			if isMoonfrpBulk(pid) {
				return pid
			}
			return 0
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
