package integrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// WatchUnit is the systemd path unit that the package ships: when MoonFRP
// replaces moonfrp-services.sh (its install.sh copies every module over
// the old one on an upgrade, and the block with it), it starts
// moonfrp-bulk-integrate.service, which runs `moonfrp-bulk integrate
// --watch` and so puts the block back. Apply turns it on, Undo off, so
// that it never undoes an operator's undo.
const WatchUnit = "moonfrp-bulk-integrate.path"

// Watch is where the watch stands on the system manager.
type Watch struct {
	// Installed says that the manager knows the unit (the package is
	// installed); Enabled and Active are its unit file state and its
	// state.
	Installed, Enabled, Active bool
}

// String says it in a few words, for --check.
func (w Watch) String() string {
	switch {
	case !w.Installed:
		return "not installed (the .deb installs " + WatchUnit + ")"
	case w.Enabled && w.Active:
		return "on: " + WatchUnit + " wires moonfrp-bulk in again when a MoonFRP upgrade replaces moonfrp-services.sh"
	}
	return "off: a MoonFRP upgrade will take moonfrp-bulk out; 'moonfrp-bulk integrate' turns the watch on again"
}

// WatchState reads the watch's state. A manager that cannot be asked
// (no systemd here) counts as one without the unit.
func WatchState(ctx context.Context, r systemctl.Runner) Watch {
	props, err := systemctl.Show(ctx, r, "LoadState,UnitFileState,ActiveState", []string{WatchUnit})
	if err != nil || len(props) != 1 || props[0]["LoadState"] != "loaded" {
		return Watch{}
	}
	return Watch{Installed: true, Enabled: props[0]["UnitFileState"] == "enabled", Active: props[0]["ActiveState"] == "active"}
}

// SetWatch turns the watch on (enabled and started) or off (disabled and
// stopped) where it is installed, and returns its new state.
func SetWatch(ctx context.Context, r systemctl.Runner, on bool) (Watch, error) {
	w := WatchState(ctx, r)
	if !w.Installed || (on && w.Enabled && w.Active) || (!on && !w.Enabled && !w.Active) {
		return w, nil
	}
	verb := "disable"
	if on {
		verb = "enable"
	}
	out, err := r.Run(ctx, verb, "--now", WatchUnit)
	if err == nil && out.ExitCode != 0 {
		err = fmt.Errorf("%s", systemctl.Failure(out))
	}
	if err != nil {
		return w, fmt.Errorf("systemctl %s --now %s: %w", verb, WatchUnit, err)
	}
	return WatchState(ctx, r), nil
}

// Fingerprint is a file's sha256, for the journal: which MoonFRP the
// watch saw.
func Fingerprint(path string) string {
	data, err := readModule(path)
	if err != nil {
		return "unreadable"
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:8])
}
