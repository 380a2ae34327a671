// Package lock keeps two moonfrp-bulk runs from acting on the same unit at
// the same time. Each unit has its own advisory lock file (flock) in a
// directory scoped to the service manager, so runs over disjoint units, or
// against different users' managers, never wait for each other.
package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrBusy is returned with NoWait when another run holds a unit.
var ErrBusy = errors.New("another moonfrp-bulk run is acting on the same units")

// Dir returns the lock directory for the system manager, or with user set
// for the calling user's manager (in XDG_RUNTIME_DIR, as systemd does).
func Dir(user bool) string {
	if !user {
		return "/run/moonfrp-bulk"
	}
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		return filepath.Join(rt, "moonfrp-bulk")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("moonfrp-bulk-%d", os.Getuid()))
}

// Set is a held set of unit locks.
type Set struct{ files []*os.File }

// Release drops every lock. Locks also go when the process exits.
func (s *Set) Release() {
	for _, f := range s.files {
		f.Close()
	}
	s.files = nil
}

// Options tunes Acquire.
type Options struct {
	// NoWait makes Acquire fail with ErrBusy instead of waiting.
	NoWait bool
	// OnWait is called once, with the holder's pid (0 if unknown), before
	// Acquire starts waiting for another run.
	OnWait func(pid int)
}

// Acquire locks every unit in dir. Locks are taken in sorted order so that
// two runs waiting for each other cannot deadlock. It returns when all are
// held, when ctx ends, or with NoWait as soon as one is busy.
func Acquire(ctx context.Context, dir string, units []string, opt Options) (*Set, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	names := append([]string(nil), units...)
	sort.Strings(names)
	set := &Set{}
	warned := false
	for _, u := range names {
		f, err := os.OpenFile(filepath.Join(dir, u+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			set.Release()
			return nil, fmt.Errorf("lock %s: %w", u, err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := holder(f)
			if opt.NoWait {
				f.Close()
				set.Release()
				if pid > 0 {
					return nil, fmt.Errorf("%w (pid %d holds %s)", ErrBusy, pid, u)
				}
				return nil, fmt.Errorf("%w (%s is held)", ErrBusy, u)
			}
			if !warned && opt.OnWait != nil {
				opt.OnWait(pid)
				warned = true
			}
			if err = waitLock(ctx, f); err != nil {
				// waitLock's goroutine owns f now and closes it.
				set.Release()
				return nil, fmt.Errorf("lock %s: %w", u, err)
			}
		}
		if err != nil {
			f.Close()
			set.Release()
			return nil, fmt.Errorf("lock %s: %w", u, err)
		}
		// Fixed width, written in place: a reader never sees a half pid.
		if _, err := f.WriteAt([]byte(fmt.Sprintf("%10d\n", os.Getpid())), 0); err != nil {
			f.Close()
			set.Release()
			return nil, fmt.Errorf("lock %s: %w", u, err)
		}
		set.files = append(set.files, f)
	}
	return set, nil
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
		err := syscall.Flock(fd, syscall.LOCK_EX)
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

// holder reads the pid of the run that holds f's lock. That run writes it
// just after its flock succeeds, so a reader can come in between; it looks
// again for up to 50 ms before saying it does not know.
func holder(f *os.File) int {
	buf := make([]byte, 16)
	for try := 0; try < 10; try++ {
		n, _ := f.ReadAt(buf, 0)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n]))); err == nil && pid > 0 {
			return pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}
