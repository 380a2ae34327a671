// Package joblog keeps the record of past runs: each run appends one JSON
// line (a Record) to jobs.jsonl in the state directory, so
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
	"time"

	"golang.org/x/sys/unix"

	"github.com/moonfrp/moonfrp-bulk/safefile"
)

// FileName is the job log's name in its directory; the rotated one has
// ".1" appended.
const FileName = "jobs.jsonl"

// MaxBytes is the size past which the log is rotated before the next
// append. A record of a 1,000-unit run takes a few hundred KiB.
const MaxBytes = 4 << 20

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
	// Runs take turns on a lock file of their own, 0600: no other user
	// can open it, so none can hold the lock and stall a run.
	lock, err := openOwn(filepath.Join(dir, lockName), unix.O_RDWR)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := lockWithin(lock, lockWait); err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := openOwn(path, unix.O_RDWR|unix.O_APPEND)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil && st.Size() > MaxBytes {
		f.Close()
		if err := os.Rename(path, path+".1"); err != nil {
			return fmt.Errorf("job log: rotate: %w", err)
		}
		if f, err = openOwn(path, unix.O_RDWR|unix.O_APPEND); err != nil {
			return err
		}
		st, err = f.Stat()
	}
	defer f.Close()
	line := append(record, '\n')
	if err == nil && st.Size() > 0 {
		// A record cut short (a crash, a full disk) ends without a
		// newline: end it, so this one starts on a line of its own.
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	if _, err := f.Write(line); err != nil {
		return fmt.Errorf("job log: %w", err)
	}
	return nil
}

// lockName is the job log's lock file in the state directory.
const lockName = "jobs.lock"

// lockWait bounds the wait for another run's append: appends take
// milliseconds, so a longer wait means something is wrong, and the run
// goes on without its record rather than hang.
const lockWait = 5 * time.Second

// lockWithin takes an exclusive lock on f, retrying for up to d.
func lockWithin(f *os.File, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			return fmt.Errorf("lock %s: %w (another run holds it)", f.Name(), err)
		}
		// flock offers no wait with a deadline; the holder is another
		// run's append, which ends within milliseconds.
		time.Sleep(20 * time.Millisecond)
	}
}

// openOwn opens a file of the state directory with flags, creating it
// 0600, never through a link and never blocking, and only if it is a
// regular file of ours.
func openOwn(path string, flags int) (*os.File, error) {
	fd, err := unix.Open(path, flags|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
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

// Record is one run in the job log: the summary's counts and each unit's
// outcome, without log tails. report.JobRecord writes it; Last and
// Recent read it.
type Record struct {
	SchemaVersion int      `json:"schema_version"`
	Event         string   `json:"event"` // "job"
	Time          string   `json:"time"`  // when the run ended, RFC 3339 UTC
	Operation     string   `json:"operation"`
	Manager       string   `json:"manager"`
	Filters       []string `json:"filters"`
	Units         int      `json:"units"`
	Succeeded     int      `json:"succeeded"`
	Failed        int      `json:"failed"` // abandoned units included
	NotStarted    int      `json:"not_started"`
	NeedsRestart  int      `json:"needs_restart"`
	Interrupted   bool     `json:"interrupted"`
	Halted        string   `json:"halted"`
	DurationMS    int64    `json:"duration_ms"`
	Results       []Entry  `json:"results"`
}

// Entry is one unit's outcome in a Record.
type Entry struct {
	Unit        string `json:"unit"`
	OK          bool   `json:"ok"`
	NotStarted  bool   `json:"not_started"`
	Abandoned   bool   `json:"abandoned"`
	TimedOut    bool   `json:"timed_out"`
	State       string `json:"state"`
	TunnelState string `json:"tunnel_state"`
	Reason      string `json:"reason"`
}

// whole reports whether r is a run's record: a line that is valid JSON
// but not a record (null, {}, a record without its results) is not.
func (r Record) whole() bool {
	return r.Event == "job" && r.Operation != "" && r.Time != "" && r.Results != nil && len(r.Results) == r.Units
}

// Last returns the most recent record in dir's log, or ErrNoRuns. A log
// just rotated (empty or missing a moment) is read in its older file.
func Last(dir string) (Record, error) {
	recs, _, err := Recent(dir, 1)
	if err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// Recent returns up to n of the newest records in dir's log and its
// rotated file, newest first, and how many lines it passed over because
// they are not records (torn, damaged, or valid JSON of another shape).
// It fails with ErrNoRuns when there is none.
func Recent(dir string, n int) ([]Record, int, error) {
	if dir == "" {
		return nil, 0, errors.New("job log: no state directory (set XDG_STATE_HOME or HOME)")
	}
	path := filepath.Join(dir, FileName)
	var recs []Record
	skipped := 0
	for _, p := range []string{path, path + ".1"} {
		got, skip, err := readRecords(p, n-len(recs))
		skipped += skip
		if err != nil && !errors.Is(err, ErrNoRuns) {
			return nil, skipped, err
		}
		recs = append(recs, got...)
		if len(recs) >= n {
			break
		}
	}
	if len(recs) == 0 {
		return nil, skipped, fmt.Errorf("%w in %s", ErrNoRuns, path)
	}
	return recs, skipped, nil
}

// Reloaded returns, for each unit that a reload in dir's log reloaded in
// place and proved, when that run ended: frp read its config again then.
// A log that cannot be read gives none.
func Reloaded(dir string) map[string]time.Time {
	out := map[string]time.Time{}
	recs, _, err := Recent(dir, 1<<20)
	if err != nil {
		return out
	}
	for _, r := range recs {
		if r.Operation != "reload" {
			continue
		}
		end, err := time.Parse(time.RFC3339Nano, r.Time)
		if err != nil {
			continue
		}
		for _, e := range r.Results {
			if e.OK && end.After(out[e.Unit]) {
				out[e.Unit] = end
			}
		}
	}
	return out
}

// readRecords reads up to n of the newest records of one log file,
// newest first.
func readRecords(path string, n int) ([]Record, int, error) {
	f, err := safefile.Open(path, safefile.Options{})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%w in %s", ErrNoRuns, path)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("job log: %w; remove it (a run recreates it)", err)
	}
	defer f.Close()
	if f.UID != os.Geteuid() {
		return nil, 0, fmt.Errorf("job log: %s belongs to uid %d, not to you; remove it (a run recreates it)", path, f.UID)
	}
	data, err := f.ReadFrom(0, MaxBytes+1)
	if err != nil {
		return nil, 0, fmt.Errorf("job log: %w", err)
	}
	// Newest first; a line that is not a whole record is passed over for
	// the one before it.
	lines := bytes.Split(completeLines(data), []byte("\n"))
	var recs []Record
	skipped := 0
	for i := len(lines) - 1; i >= 0 && len(recs) < n; i-- {
		if len(bytes.TrimSpace(lines[i])) == 0 {
			continue
		}
		var r Record
		if json.Unmarshal(lines[i], &r) != nil || !r.whole() {
			skipped++
			continue
		}
		recs = append(recs, r)
	}
	return recs, skipped, nil
}

// completeLines drops what follows data's last newline: a record still
// being written, or cut short by a crash.
func completeLines(data []byte) []byte {
	i := bytes.LastIndexByte(data, '\n')
	if i < 0 {
		return nil
	}
	return data[:i]
}
