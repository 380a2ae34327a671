package integrate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Status is what Check found.
type Status struct {
	// Block says whether moonfrp-services.sh ends with the block.
	Block bool
	// Owner maps each of Functions to "moonfrp-bulk", "MoonFRP" or
	// "missing", as bash sees them after loading the modules.
	Owner map[string]string
	// Modules are the files loaded, in order.
	Modules []string
}

// Integrated reports whether every function runs through moonfrp-bulk.
func (s Status) Integrated() bool {
	for _, fn := range Functions {
		if s.Owner[fn] != "moonfrp-bulk" {
			return false
		}
	}
	return true
}

// Shimmed counts the functions that run through moonfrp-bulk.
func (s Status) Shimmed() int {
	n := 0
	for _, fn := range Functions {
		if s.Owner[fn] == "moonfrp-bulk" {
			n++
		}
	}
	return n
}

var sourceRE = regexp.MustCompile(`^\s*(?:source|\.)\s+"?\$(?:\{SCRIPT_DIR\}|SCRIPT_DIR)/([A-Za-z0-9._-]+\.sh)"?\s*$`)

// loadOrder returns the modules that moonfrp.sh sources, in its order.
func loadOrder(dir string) ([]string, error) {
	main, err := readModule(filepath.Join(dir, "moonfrp.sh"))
	if err != nil {
		return nil, err
	}
	var mods []string
	sc := bufio.NewScanner(bytes.NewReader(main))
	sc.Buffer(make([]byte, 0, 64<<10), maxModuleBytes)
	for sc.Scan() {
		if m := sourceRE.FindStringSubmatch(sc.Text()); m != nil {
			mods = append(mods, m[1])
		}
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("%w at %s: moonfrp.sh sources no module through $SCRIPT_DIR", ErrNotMoonFRP, dir)
	}
	return mods, nil
}

// Check loads MoonFRP's modules in a bash the way moonfrp.sh does (strict
// mode, its source lines in its order, nothing run) and asks bash which
// of Functions are the shim's.
func Check(ctx context.Context, dir string) (Status, error) {
	st := Status{Owner: map[string]string{}}
	content, err := readModule(filepath.Join(dir, ServicesFile))
	if err != nil {
		return st, err
	}
	_, _, st.Block, _ = split(content)
	st.Modules, err = loadOrder(dir)
	if err != nil {
		return st, err
	}
	// Nothing is sourced that integrate would refuse (see trusted).
	for _, m := range st.Modules {
		if _, err := readModule(filepath.Join(dir, m)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return st, err
		}
	}
	var script strings.Builder
	script.WriteString("set -euo pipefail\nSCRIPT_DIR=\"$1\"\nshift\n")
	for _, m := range st.Modules {
		fmt.Fprintf(&script, "source \"$SCRIPT_DIR/%s\" >/dev/null\n", m)
	}
	script.WriteString(`for f in "$@"; do
    if ! body=$(declare -f "$f"); then echo "$f missing"
    elif [[ "$body" == *__moonfrp_bulk_* ]]; then echo "$f moonfrp-bulk"
    else echo "$f MoonFRP"; fi
done
`)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{"-c", script.String(), "moonfrp-bulk-check", dir}, Functions...)...)
	cmd.Dir = dir
	// MoonFRP's load guards are exported; inherited, they would make
	// bash skip modules that moonfrp.sh itself would load.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "MOONFRP_") && strings.HasSuffix(k, "_LOADED") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return st, fmt.Errorf("load MoonFRP's modules in bash: %w: %s", err, firstLine(errb.String()))
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if fn, owner, ok := strings.Cut(l, " "); ok {
			st.Owner[fn] = owner
		}
	}
	return st, nil
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return "no error output"
}
