// Package integrate wires the bash shim into an installed MoonFRP, undoes
// it, and checks which of MoonFRP's service functions run through
// moonfrp-bulk.
//
// MoonFRP sources moonfrp-services.sh several times per start (its ui,
// search and optimize modules source it again), and each time every
// service function is redefined. A shim sourced once is therefore lost.
// The integration appends a marked block to the end of
// moonfrp-services.sh that sources the shim, so that every load of that
// file ends with the shim's definitions. The block is idempotent, silent,
// costs one file test and one source per load, and returns 0, so it is
// harmless under `set -euo pipefail`. A MoonFRP upgrade replaces the file
// and with it the block; Check then says so.
package integrate

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Markers delimit the block in moonfrp-services.sh.
const (
	beginMarker = "# >>> moonfrp-bulk >>>"
	endMarker   = "# <<< moonfrp-bulk <<<"
	// nlFlag on the begin line records that the file did not end with a
	// newline and one was added before the block; Undo takes it away
	// again, so the file comes back byte for byte.
	nlFlag = " (newline added)"
)

// ServicesFile is the MoonFRP module the block goes into.
const ServicesFile = "moonfrp-services.sh"

// ShimName is the file name of the installed shim.
const ShimName = "moonfrp-bulk.sh"

// DefaultDir is where MoonFRP's install.sh puts its modules.
const DefaultDir = "/usr/local/bin"

// DefaultShimDir is where Apply installs the shim unless told otherwise.
const DefaultShimDir = "/usr/local/share/moonfrp-bulk"

// maxModuleBytes bounds a read of a MoonFRP module (they are tens of KB).
const maxModuleBytes = 8 << 20

// Functions are the MoonFRP functions that the shim replaces.
var Functions = []string{
	"get_moonfrp_services", "bulk_service_operation", "bulk_start_services", "bulk_stop_services",
	"bulk_restart_services", "bulk_reload_services", "bulk_operation_filtered", "get_services_by_tag",
	"start_all_services", "stop_all_services", "restart_all_services",
}

// others are functions of MoonFRP's moonfrp-services.sh whose names look
// like the ones the shim replaces but that do other work (they write and
// delete unit files): the shim leaves them to MoonFRP.
var others = []string{"setup_all_services", "remove_all_services"}

// ErrIncompatible means moonfrp-services.sh defines service functions
// other than the ones the shim replaces: a MoonFRP that moonfrp-bulk does
// not know.
var ErrIncompatible = errors.New("moonfrp-bulk does not know this MoonFRP's service functions")

var functionRE = regexp.MustCompile(`(?m)^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*\(\)`)

// Compatible checks that svc, a moonfrp-services.sh, defines every one of
// Functions and no other bulk_* or *_all_services function: the shim
// then replaces exactly MoonFRP's service operations. A MoonFRP upgrade
// that renames one, or adds one, gets an error that names them.
func Compatible(svc []byte) error {
	defined := map[string]bool{}
	for _, m := range functionRE.FindAllSubmatch(svc, -1) {
		defined[string(m[1])] = true
	}
	known := map[string]bool{}
	for _, fn := range append(append([]string(nil), Functions...), others...) {
		known[fn] = true
	}
	var unknown, missing []string
	for fn := range defined {
		if (strings.HasPrefix(fn, "bulk_") || strings.HasSuffix(fn, "_all_services")) && !known[fn] {
			unknown = append(unknown, fn+"()")
		}
	}
	for _, fn := range Functions {
		if !defined[fn] {
			missing = append(missing, fn+"()")
		}
	}
	if len(unknown)+len(missing) == 0 {
		return nil
	}
	sort.Strings(unknown)
	var parts []string
	if len(unknown) > 0 {
		parts = append(parts, "defines "+strings.Join(unknown, ", "))
	}
	if len(missing) > 0 {
		parts = append(parts, "no longer defines "+strings.Join(missing, ", "))
	}
	return fmt.Errorf("%w: its %s %s; MoonFRP's own functions stay in charge, unchanged; upgrade moonfrp-bulk for this MoonFRP",
		ErrIncompatible, ServicesFile, strings.Join(parts, " and "))
}

// mustDefine are the functions whose definitions mark a file as MoonFRP's
// moonfrp-services.sh.
var mustDefine = []string{"start_all_services", "stop_all_services", "restart_all_services", "bulk_service_operation"}

// ErrNotMoonFRP means the directory does not hold MoonFRP's modules.
var ErrNotMoonFRP = errors.New("not a MoonFRP install")

// Find returns MoonFRP's module directory: dir when given, else the
// directory of the `moonfrp` command on PATH with symlinks resolved, else
// DefaultDir. It checks that the files there are MoonFRP's.
func Find(dir string) (string, error) {
	if dir == "" {
		dir = DefaultDir
		if p, err := exec.LookPath("moonfrp"); err == nil {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				dir = filepath.Dir(r)
			}
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("MoonFRP directory %s: %w", dir, err)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	if err := trustedDir(abs); err != nil {
		return "", err
	}
	main, err := readModule(filepath.Join(abs, "moonfrp.sh"))
	if err != nil && errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w at %s: %v; point --moonfrp-dir at the directory that holds moonfrp.sh", ErrNotMoonFRP, abs, err)
	}
	if err != nil {
		return "", err
	}
	if !bytes.Contains(main, []byte(ServicesFile)) {
		return "", fmt.Errorf("%w at %s: moonfrp.sh does not load %s", ErrNotMoonFRP, abs, ServicesFile)
	}
	svc, err := readModule(filepath.Join(abs, ServicesFile))
	if err != nil && errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w at %s: %v", ErrNotMoonFRP, abs, err)
	}
	if err != nil {
		return "", err
	}
	for _, fn := range mustDefine {
		if !defines(svc, fn) {
			return "", fmt.Errorf("%w at %s: %s defines no %s()", ErrNotMoonFRP, abs, ServicesFile, fn)
		}
	}
	return abs, nil
}

func defines(src []byte, fn string) bool {
	return regexp.MustCompile(`(?m)^\s*(function\s+)?` + regexp.QuoteMeta(fn) + `\s*\(\)`).Match(src)
}

// Block returns the lines appended to moonfrp-services.sh.
func Block(shim, bin string) string {
	return beginMarker + " added by 'moonfrp-bulk integrate'; 'moonfrp-bulk integrate --undo' removes it\n" +
		"if [[ -r " + quote(shim) + " ]]; then\n" +
		"    export MOONFRP_BULK_BIN=\"${MOONFRP_BULK_BIN:-" + strings.ReplaceAll(bin, `"`, `\"`) + "}\"\n" +
		"    # shellcheck source=/dev/null\n" +
		"    source " + quote(shim) + "\n" +
		"fi\n" +
		endMarker + "\n"
}

func quote(s string) string { return "'" + s + "'" }

// safePath refuses paths that would need more than single quotes.
func safePath(what, p string) error {
	if !filepath.IsAbs(p) || strings.ContainsAny(p, "'\"\\$`{}\n\r") {
		return fmt.Errorf("%s %q must be an absolute path without quotes, '$', '`', '\\', braces or line breaks", what, p)
	}
	return nil
}

// split finds the block in content: the content before it (without the
// newline the block may have added), the block, and whether there is one.
func split(content []byte) (before []byte, block []byte, found bool, err error) {
	i := bytes.Index(content, []byte(beginMarker))
	if i < 0 {
		return content, nil, false, nil
	}
	if i > 0 && content[i-1] != '\n' {
		return nil, nil, false, errors.New("the moonfrp-bulk block does not start a line; remove it by hand")
	}
	j := bytes.Index(content[i:], []byte(endMarker+"\n"))
	if j < 0 {
		return nil, nil, false, errors.New("the moonfrp-bulk block has no end marker; restore the file from its backup or fix it by hand")
	}
	end := i + j + len(endMarker) + 1
	if end != len(content) {
		return nil, nil, false, errors.New("something follows the moonfrp-bulk block; it must stay the last thing in the file, so move it by hand")
	}
	before = content[:i]
	firstLine := content[i : i+bytes.IndexByte(content[i:], '\n')]
	if bytes.Contains(firstLine, []byte(nlFlag)) && len(before) > 0 {
		before = before[:len(before)-1]
	}
	return before, content[i:end], true, nil
}
