package discover

import (
	"fmt"
	"os"
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
		if st.ModTime().After(read) {
			return ConfigChanged, fmt.Sprintf("%s changed at %s, after frp read it at %s", p, st.ModTime().Format(time.RFC3339), read.Format(time.RFC3339))
		}
	}
	return ConfigUnchanged, ""
}
