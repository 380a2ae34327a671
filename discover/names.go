package discover

import (
	"fmt"
	"path"
	"strings"
)

// unitSuffixes are the unit types systemd knows; a name without one of
// them is taken to be a service, as systemctl itself does.
var unitSuffixes = []string{".service", ".socket", ".target", ".timer", ".mount", ".path", ".slice", ".scope", ".swap", ".device", ".automount"}

// ShortName is a unit's name without .service, as MoonFRP's bash prints it
// and as systemctl accepts it: the one place that trims the suffix.
func ShortName(unit string) string { return strings.TrimSuffix(unit, ".service") }

// Normalize validates a unit name given on the command line and adds
// .service when it has no unit suffix. Names are checked against systemd's
// own character set, so that nothing shell-like ever reaches systemctl.
func Normalize(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty unit name")
	}
	if len(name) > 255 {
		return "", fmt.Errorf("unit name %.40q... is longer than systemd allows (255)", name)
	}
	for _, r := range name {
		if !IsUnitNameRune(r) && !IsPattern(string(r)) {
			return "", fmt.Errorf("invalid unit name %q: unit names may hold only letters, digits and \":-_.@\\\"", name)
		}
	}
	if IsPattern(name) {
		if _, err := path.Match(name, ""); err != nil {
			return "", fmt.Errorf("malformed glob %q: check its brackets (for example 'moonfrp-client-[0-9]*')", name)
		}
	}
	if strings.HasPrefix(name, "-") {
		return "", fmt.Errorf("invalid unit name %q: a unit name cannot start with '-'", name)
	}
	full := name + ".service"
	for _, s := range unitSuffixes {
		if strings.HasSuffix(name, s) {
			full = name
		}
	}
	// systemd's limit is on the whole name, suffix included.
	if len(full) > 255 && !IsPattern(full) {
		return "", fmt.Errorf("unit name %.40q... is %d bytes with its suffix, longer than systemd allows (255)", name, len(full))
	}
	return full, nil
}

// IsUnitNameRune reports whether r may appear in a unit name (systemd's
// character set; '\' escapes).
func IsUnitNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		strings.ContainsRune(":-_.@\\", r)
}

// IsPattern reports whether s holds glob characters.
func IsPattern(s string) bool { return strings.ContainsAny(s, "*?[]") }
