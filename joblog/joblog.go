// Package joblog keeps the record of past runs: each run appends one JSON
// line (see report.JobRecord) to jobs.jsonl in the state directory, so
// that --filter=last:failed can select what failed last time. The log is
// rotated at a bounded size; one older file is kept.
//
// The tool runs as root beside less trusted users: the directory must be
// the caller's and writable by nobody else, and the log is opened without
// following links, only as a regular file of the caller's.
package joblog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/moonfrp/moonfrp-bulk/safefile"
)

// FileName is the job log's name in its directory; the rotated one has
// ".1" appended.
const FileName = "jobs.jsonl"

// MaxBytes is the size past which the log is rotated before the next
// append. A record of a 1,000-unit run takes a few hundred KiB.
const MaxBytes = 4 << 20

// maxRecord bounds the one record that Last reads.
const maxRecord = MaxBytes

// ErrNoRuns means no run has been recorded yet.
var ErrNoRuns = errors.New("no earlier run recorded")

// Dir returns the state directory: /var/lib/moonfrp-bulk for the system
// manager; for the user's manager $XDG_STATE_HOME/moonfrp-bulk, or
// ~/.local/state/moonfrp-bulk (the XDG default).
func Dir(user bool) (string, error) {
	if !user {
		return "/var/lib/moonfrp-bulk", nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "moonfrp-bulk"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("state directory: %w; set XDG_STATE_HOME", err)
	}
	return filepath.Join(home, ".local", "state", "moonfrp-bulk"), nil
}

// Append adds record (one JSON value, without newline) to the log in dir,
// creating dir (0700) and the log (0600) as needed, and rotating the log
// once it has grown past MaxBytes. Concurrent runs take turns on a lock
// of the directory.
func Append(dir string, record []byte) error {
	if dir == "" {
		return errors.New("job log: no state directory (set XDG_STATE_HOME or HOME)")
	}
	if bytes.ContainsAny(record, "\n\r") {
		return errors.New("job log: a record must be one line")
	}
	if err := safefile.OwnDir(dir, 0o700); err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("job log: lock %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	f, err := openOwn(path)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil && st.Size() > MaxBytes {
		f.Close()
		if err := os.Rename(path, path+".1"); err != nil {
			return fmt.Errorf("job log: rotate: %w", err)
		}
		if f, err = openOwn(path); err != nil {
			return err
		}
	}
	defer f.Close()
	if _, err := f.Write(append(record, '\n')); err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	return nil
}

// openOwn opens the log for appending, creating it 0600, never through a
// link and never blocking, and only if it is a regular file of ours.
func openOwn(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		var st unix.Stat_t
		switch {
		case errors.Is(err, unix.ELOOP):
			return nil, fmt.Errorf("job log: %s is a symlink; remove it", path)
		case unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT != unix.S_IFREG:
			// A FIFO or device (opened non-blocking, so refused, not hung).
			return nil, fmt.Errorf("job log: %s is not a regular file; remove it", path)
		}
		return nil, fmt.Errorf("job log: open %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
		unix.Close(fd)
		return nil, fmt.Errorf("job log: %s is not a regular file of yours; remove it", path)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Record is what Last reads of a recorded run.
type Record struct {
	Time      string  `json:"time"`
	Operation string  `json:"operation"`
	Manager   string  `json:"manager"`
	Results   []Entry `json:"results"`
}

// Entry is one unit's outcome in a Record.
type Entry struct {
	Unit       string `json:"unit"`
	OK         bool   `json:"ok"`
	NotStarted bool   `json:"not_started"`
}

// Last returns the most recent record in dir's log, or ErrNoRuns.
func Last(dir string) (Record, error) {
	if dir == "" {
		return Record{}, errors.New("job log: no state directory (set XDG_STATE_HOME or HOME)")
	}
	path := filepath.Join(dir, FileName)
	f, err := safefile.Open(path, safefile.Options{})
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, fmt.Errorf("%w in %s", ErrNoRuns, path)
	}
	if err != nil {
		return Record{}, fmt.Errorf("job log: %w", err)
	}
	defer f.Close()
	if f.UID != os.Geteuid() {
		return Record{}, fmt.Errorf("job log: %s belongs to uid %d, not to you; remove it", path, f.UID)
	}
	data, err := f.ReadFrom(0, maxRecord+1)
	if err != nil {
		return Record{}, fmt.Errorf("job log: %w", err)
	}
	line := lastLine(data)
	if len(line) == 0 {
		return Record{}, fmt.Errorf("%w in %s", ErrNoRuns, path)
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return Record{}, fmt.Errorf("job log: the last record in %s is damaged (%v); remove the file", path, err)
	}
	return r, nil
}

// lastLine returns the last complete, non-empty line of data: a record
// cut short by a crash mid-write (no newline yet) is passed over.
func lastLine(data []byte) []byte {
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		return nil
	}
	data = bytes.TrimRight(data, "\n")
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		return data[i+1:]
	}
	return data
}
