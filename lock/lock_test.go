package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOverlappingSetsWaitDisjointDoNot(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	held, err := Acquire(ctx, dir, []string{"b.service", "a.service"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// OFD locks belong to open file descriptions, so a second Acquire in
	// this process contends just as another process would.
	other, err := Acquire(ctx, dir, []string{"c.service"}, Options{NoWait: true})
	if err != nil {
		t.Fatalf("disjoint units blocked: %v", err)
	}
	other.Release()

	_, err = Acquire(ctx, dir, []string{"c.service", "b.service"}, Options{NoWait: true})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("overlap with NoWait: %v, want ErrBusy", err)
	}
	if want := fmt.Sprintf("pid %d", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("busy error %q does not name the holder (%s)", err, want)
	}

	waited := make(chan int, 1)
	got := make(chan error, 1)
	go func() {
		s, err := Acquire(ctx, dir, []string{"b.service"}, Options{OnWait: func(pid int) { waited <- pid }})
		if err == nil {
			s.Release()
		}
		got <- err
	}()
	if pid := <-waited; pid != os.Getpid() {
		t.Errorf("OnWait got pid %d, want %d", pid, os.Getpid())
	}
	select {
	case err := <-got:
		t.Fatalf("acquired while held: %v", err)
	default:
	}
	held.Release()
	if err := <-got; err != nil {
		t.Errorf("after release: %v", err)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	dir := t.TempDir()
	held, err := Acquire(context.Background(), dir, []string{"a.service"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Acquire(ctx, dir, []string{"a.service"}, Options{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want the context's error", err)
	}
}

func TestLockFilesArePrivateAndPidFilesRemovedOnRelease(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", 247) + ".service" // 255 bytes, as systemd allows
	s, err := Acquire(context.Background(), dir, []string{"a.service", long}, Options{})
	if err != nil {
		t.Fatalf("lock a 255-byte unit name: %v", err)
	}
	for _, name := range []string{LockFile, FileName("a.service"), FileName(long)} {
		st, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %o, want 0600: anyone who can open it can lock it", name, st.Mode().Perm())
		}
	}
	if len(FileName(long)) > 255 {
		t.Errorf("pid file name of a long unit is %d bytes", len(FileName(long)))
	}
	s.Release()
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != LockFile {
		t.Errorf("files left after release: %v, want only %s", ents, LockFile)
	}
}

// A run over 1,000 units holds one descriptor for all its locks, so that
// it fits under a 1,024 limit with room for systemctl.
func TestThousandLocksHoldOneDescriptor(t *testing.T) {
	count := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	units := make([]string, 1000)
	for i := range units {
		units[i] = fmt.Sprintf("moonfrp-client-%d.service", i)
	}
	before := count()
	s, err := Acquire(context.Background(), t.TempDir(), units, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	if held := count() - before; held > 1 {
		t.Errorf("1,000 locks hold %d descriptors, want 1", held)
	}
}

func TestUnsafeLockDirectoriesAreRefused(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "target")
	os.Mkdir(target, 0o755)
	link := filepath.Join(base, "link")
	os.Symlink(target, link)
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	planted := filepath.Join(base, "planted")
	os.Mkdir(planted, 0o755)
	victim := filepath.Join(base, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	os.Symlink(victim, filepath.Join(planted, LockFile))
	for _, dir := range []string{link, open, planted} {
		_, err := Acquire(context.Background(), dir, []string{"a.service"}, Options{})
		if !errors.Is(err, ErrUnsafeDir) {
			t.Errorf("%s: %v, want ErrUnsafeDir", filepath.Base(dir), err)
		}
	}
	if data, _ := os.ReadFile(victim); string(data) != "precious\n" {
		t.Errorf("a planted link made the lock write through it: %q", data)
	}
	if os.Geteuid() == 0 {
		foreign := filepath.Join(base, "foreign")
		os.Mkdir(foreign, 0o755)
		os.Chown(foreign, 65534, 65534)
		if _, err := Acquire(context.Background(), foreign, []string{"a.service"}, Options{}); !errors.Is(err, ErrUnsafeDir) {
			t.Errorf("a directory of another user: %v, want ErrUnsafeDir", err)
		}
	}
}

// A run that outlives its session's runtime directory does not make it
// again: the lock directory's parent must exist.
func TestAcquireDoesNotRecreateAMissingRuntimeDir(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "runtime-gone")
	_, err := Acquire(context.Background(), filepath.Join(gone, "moonfrp-bulk"), []string{"a.service"}, Options{})
	if !errors.Is(err, ErrUnsafeDir) {
		t.Errorf("Acquire under a missing runtime directory: %v, want ErrUnsafeDir", err)
	}
	if _, err := os.Stat(gone); err == nil {
		t.Error("the missing runtime directory was created")
	}
}
