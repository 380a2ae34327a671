// Package safefile reads files that a unit, a config or the environment
// names, on hosts where the tool runs as root and the files' directories
// may belong to less trusted users. Every open refuses symlinks (the last
// path component), never blocks (a FIFO or a device would), accepts only
// regular files, optionally checks the owner, and reads a bounded amount.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrRefused wraps every reason a file was not read although it exists:
// a symlink, not a regular file, or a foreign owner.
var ErrRefused = errors.New("not read")

// Options says whose files are acceptable.
type Options struct {
	// Owners are the uids, besides root, whose files may be read when the
	// process runs as root (a unit's User=). Ignored for other users, who
	// can read only what the kernel lets them anyway.
	Owners []int
	// NotRoot refuses root's own files: for a path that a file of another
	// user names (an frp config's log.to), so that it cannot make root
	// read root's files.
	NotRoot bool
	// AnyOwner accepts a file of any owner: for a path that whoever runs
	// the process chose (its own argument), which crosses no privilege
	// boundary; the other checks still apply.
	AnyOwner bool
}

// File is an open, checked, regular file.
type File struct {
	f    *os.File
	Size int64
	UID  int // the file's owner
}

// Open opens path for reading and checks what it is before any read:
// first as an O_PATH descriptor (which opens no device and cannot block),
// without following a final symlink; then, only for a regular file owned
// by root or one of opt.Owners (when the caller is root), it reopens that
// same inode for reading, non-blocking. A refusal wraps ErrRefused and
// says why in words ("is a FIFO"); a missing file wraps fs.ErrNotExist.
func Open(path string, opt Options) (*File, error) {
	pfd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if err := check(path, st, opt); err != nil {
		return nil, err
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", pfd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st2 unix.Stat_t
	if err := unix.Fstat(fd, &st2); err != nil || st2.Ino != st.Ino || st2.Dev != st.Dev {
		unix.Close(fd)
		return nil, fmt.Errorf("%s changed while it was opened, %w", path, ErrRefused)
	}
	return &File{f: os.NewFile(uintptr(fd), path), Size: st2.Size, UID: int(st2.Uid)}, nil
}

func check(path string, st unix.Stat_t, opt Options) error {
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("%s is a symlink, %w", path, ErrRefused)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s is %s, not a regular file, %w", path, kind(st.Mode), ErrRefused)
	}
	if os.Geteuid() != 0 || opt.AnyOwner {
		return nil
	}
	if opt.NotRoot && st.Uid == 0 {
		return fmt.Errorf("%s is root's, but was named by a file of uid %d, %w", path, opt.Owners, ErrRefused)
	}
	if st.Uid != 0 && !contains(opt.Owners, int(st.Uid)) {
		return fmt.Errorf("%s is owned by uid %d, not root or the unit's user, %w", path, st.Uid, ErrRefused)
	}
	return nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// ReadFrom reads what lies between offset and the end seen at open, at
// most limit bytes, keeping the last limit bytes when there is more. An
// offset beyond the end (the file was truncated or replaced) reads from
// the start. It uses ReadAt, so a file that grows meanwhile cannot make it
// read more than limit.
func (f *File) ReadFrom(offset, limit int64) ([]byte, error) {
	end := f.Size
	if offset < 0 || offset > end {
		offset = 0
	}
	if end-offset > limit {
		offset = end - limit
	}
	buf := make([]byte, end-offset)
	n, err := f.f.ReadAt(buf, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", f.f.Name(), err)
	}
	return buf[:n], nil
}

// ReadFile opens path as Open does and returns its content, or an error
// when it holds more than limit bytes.
func ReadFile(path string, limit int64, opt Options) ([]byte, error) {
	f, err := Open(path, opt)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Size > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes, %w", path, limit, ErrRefused)
	}
	return f.ReadFrom(0, limit)
}

// Size returns the size of the regular file at path, or -1 when it does
// not exist or is refused: the offset from which later reads start.
func Size(path string, opt Options) int64 {
	f, err := Open(path, opt)
	if err != nil {
		return -1
	}
	defer f.Close()
	return f.Size
}

func kind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return "not a regular file"
}

func contains(list []int, n int) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

// ForUser returns the Options for files of a unit that runs as u (its
// User=, a name or a number): root's files and u's are accepted.
func ForUser(u string) Options {
	if u == "" {
		return Options{}
	}
	if n, err := strconv.Atoi(u); err == nil {
		return Options{Owners: []int{n}}
	}
	if pw, err := user.Lookup(u); err == nil {
		if n, err := strconv.Atoi(pw.Uid); err == nil {
			return Options{Owners: []int{n}}
		}
	}
	return Options{}
}

// OwnDir creates dir (and its parents) with perm if needed, then checks,
// without following a link, that it is a directory owned by the caller
// that nobody else may write: a place where the caller's own files
// (locks, the job log) cannot be swapped for links by another user.
func OwnDir(dir string, perm os.FileMode) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return err
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("%s is a symlink; remove it", dir)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("%s is not a directory; remove it", dir)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%s belongs to uid %d, not to you (uid %d); remove it", dir, st.Uid, os.Geteuid())
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%s is writable by others (mode %o); remove it or chmod go-w it", dir, st.Mode&0o777)
	}
	return nil
}
