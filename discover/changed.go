package discover

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/moonfrp/moonfrp-bulk/frp"
)

// Config states, for config: filters and list.
const (
	ConfigChanged   = "changed"   // the config, or a file it includes, changed since frp read it
	ConfigUnchanged = "unchanged" // it did not
	ConfigUnknown   = "unknown"   // not an frp unit, not running, or its config cannot be read
)

// ConfigState says whether an frp unit's config (or a file it includes)
// changed after frp last read it: after its main process started (frp
// reads its config at start), or, when a later reload in place by
// moonfrp-bulk is recorded (reloaded, from the job log), after that.
func ConfigState(f Facts, reloaded time.Time) (string, string) {
	if f.FRPBinary == "" || f.MainPID <= 0 {
		return ConfigUnknown, "not a running frp unit"
	}
	c, err := frp.Load(f.FRPConfig, f.FRPBinary, f.Owners(), f.WorkDir)
	if err != nil {
		return ConfigUnknown, err.Error()
	}
	return LoadedConfigState(f, c, reloaded)
}

// LoadedConfigState is ConfigState of a config already loaded.
func LoadedConfigState(f Facts, c frp.Config, reloaded time.Time) (string, string) {
	if f.FRPBinary == "" || f.MainPID <= 0 {
		return ConfigUnknown, "not a running frp unit"
	}
	read := f.Started
	if read.IsZero() {
		return ConfigUnknown, "its main process's start time is not known"
	}
	if reloaded.After(read) {
		read = reloaded
	}
	for _, p := range append([]string{c.Path}, c.Includes...) {
		st, err := os.Lstat(p)
		if err != nil {
			return ConfigUnknown, err.Error()
		}
		if at := changedAt(st); at.After(read) {
			return ConfigChanged, fmt.Sprintf("%s changed at %s, after frp read it at %s", p, at.Format(time.RFC3339), read.Format(time.RFC3339))
		}
	}
	return ConfigUnchanged, ""
}

// BinaryReplaced says whether the unit's frp binary (the path its
// ExecStart names, or the file that path leads to) changed after its
// main process started: the running frp is then not the one on disk.
// It is true when that cannot be told.
func BinaryReplaced(f Facts) bool {
	if f.FRPPath == "" || f.Started.IsZero() {
		return true
	}
	for _, stat := range []func(string) (os.FileInfo, error){os.Lstat, os.Stat} {
		st, err := stat(f.FRPPath)
		if err != nil || changedAt(st).After(f.Started) {
			return true
		}
	}
	return false
}

// changedAt is when a file last changed: its inode's change time, which
// every write, rename into place or chmod moves and nothing can set back
// (rsync -a and tar keep an old mtime on a new file, and a config
// deployed that way would pass for unchanged).
func changedAt(st os.FileInfo) time.Time {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		if c := time.Unix(s.Ctim.Unix()); c.After(st.ModTime()) {
			return c
		}
	}
	return st.ModTime()
}
