package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/moonfrp/moonfrp-bulk/report"
	"github.com/moonfrp/moonfrp-bulk/safefile"
)

// The binary is also an Ansible binary module. Ansible copies it to each
// host as AnsiballZ_moonfrp_bulk and runs it with one argument, the path
// of a JSON file of the task's arguments; the module prints one JSON
// object. Module mode needs all of: the program's name is moonfrp_bulk
// (as a module in a library directory) or AnsiballZ_moonfrp_bulk; exactly
// one argument; that argument a path that exists. Whatever is wrong with
// that file then (not a regular file, not JSON, too large) is reported as
// a failed result. A command line run as moonfrp-bulk never qualifies,
// whatever its arguments.

// moduleName is the name Ansible knows the module by.
const moduleName = "moonfrp_bulk"

// maxArgsFile bounds the arguments file: a task's arguments are small.
const maxArgsFile = 1 << 20

// ansibleModule reports whether argv is Ansible running the module, and
// returns the arguments file. Past the name and the one argument, the
// argument must exist: then any problem with it is the module's to
// report, as a failed result Ansible can show (not a usage error on
// stderr that it would call a MODULE FAILURE).
func ansibleModule(argv []string) (string, bool) {
	if len(argv) != 2 {
		return "", false
	}
	name := strings.TrimPrefix(filepath.Base(argv[0]), "AnsiballZ_")
	if name != moduleName {
		return "", false
	}
	if _, err := os.Lstat(argv[1]); err != nil {
		return "", false
	}
	return argv[1], true
}

// argsFileOptions read the arguments file whoever owns it: with become,
// Ansible leaves it its login user's while the module runs as root. The
// path is the process's own argument, so no privilege boundary is
// crossed; it is still never followed as a link nor opened if not a
// regular file, and its size is bounded.
var argsFileOptions = safefile.Options{AnyOwner: true}

// moduleEnv are settings the CLI takes from the environment; a module's
// task arguments alone decide, whatever the host's environment says.
var moduleEnv = append([]string{"MOONFRP_LOG_FORMAT"}, flagEnv...)

// moduleParams are the task's arguments; each maps to the CLI flag of the
// same meaning, parsed and checked by the CLI's own parser.
var moduleParams = []string{"operation", "units", "filters", "max_parallel", "settle", "timeout",
	"tunnel_deadline", "user", "max_fail", "canary"}

// moduleResult is what the module prints. units and summary are the
// CLI's JSON events (see docs/json.md), as they are.
type moduleResult struct {
	Changed   bool              `json:"changed"`
	Failed    bool              `json:"failed"`
	Msg       string            `json:"msg"`
	RC        int               `json:"rc"`
	Operation string            `json:"operation,omitempty"`
	CheckMode bool              `json:"check_mode"`
	Summary   json.RawMessage   `json:"summary,omitempty"`
	Plan      json.RawMessage   `json:"plan,omitempty"`
	Units     []json.RawMessage `json:"units"`
	Argv      []string          `json:"argv,omitempty"`
	Warnings  []string          `json:"warnings,omitempty"`
}

// runModule runs the module and prints its one JSON result on stdout.
// The exit code is 0 whenever a result was printed: Ansible reads failure
// from the result, and a non-zero exit with it would only add noise.
func runModule(argsFile string) int {
	res := module(argsFile)
	if res.Units == nil {
		res.Units = []json.RawMessage{}
	}
	out, err := json.Marshal(res)
	if err != nil {
		out = []byte(`{"failed":true,"msg":"moonfrp_bulk: cannot encode the result"}`)
	}
	fmt.Fprintf(os.Stdout, "%s\n", out)
	return 0
}

func module(argsFile string) moduleResult {
	fail := func(format string, a ...any) moduleResult {
		return moduleResult{Failed: true, RC: exitUsage, Msg: fmt.Sprintf(format, a...)}
	}
	data, err := safefile.ReadFile(argsFile, maxArgsFile, argsFileOptions)
	if err != nil {
		return fail("moonfrp_bulk: cannot read the arguments file: %v", err)
	}
	var params map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&params); err != nil {
		return fail("moonfrp_bulk: the arguments file is not a JSON object: %v", err)
	}
	for _, name := range moduleEnv {
		os.Unsetenv(name)
	}
	argv, check, err := moduleArgv(params)
	if err != nil {
		return fail("%v", err)
	}
	var out, errb bytes.Buffer
	end := runOn(&report.Streams{Out: &out, Err: &errb, Quiet: true}, argv, nil)
	res := moduleResult{RC: end.code, Failed: end.code != exitOK, CheckMode: check, Argv: argv, Warnings: end.warnings, Msg: end.err}
	res.Operation, _ = params["operation"].(string)
	if res.Msg == "" {
		res.Msg = end.recap
	}
	collectEvents(&res, &out)
	if res.Msg == "" {
		res.Msg = fallbackMsg(res, end.code)
	}
	return res
}

// collectEvents sorts the CLI's JSON lines into the result: per-unit
// results (or list entries), the summary, the plan of a dry run.
func collectEvents(res *moduleResult, out io.Reader) {
	dec := json.NewDecoder(out)
	for {
		var raw json.RawMessage
		if dec.Decode(&raw) != nil {
			return
		}
		// Only the fields every event shares: not_started, for one, is
		// a flag in a result and a count in the summary.
		var ev struct {
			Event string `json:"event"`
			Unit  string `json:"unit"`
		}
		if json.Unmarshal(raw, &ev) != nil {
			continue
		}
		switch ev.Event {
		case "result":
			var r struct {
				NotStarted bool `json:"not_started"`
			}
			_ = json.Unmarshal(raw, &r)
			res.Units = append(res.Units, raw)
			res.Changed = res.Changed || !r.NotStarted
		case "summary":
			res.Summary = raw
		case "plan":
			var p struct {
				Units int `json:"units"`
			}
			_ = json.Unmarshal(raw, &p)
			res.Plan = raw
			// Check mode says whether the run would change anything.
			res.Changed = p.Units > 0 && res.Operation != "list"
		case "":
			if ev.Unit != "" { // a list entry
				res.Units = append(res.Units, raw)
			}
		}
	}
}

func fallbackMsg(res moduleResult, rc int) string {
	switch {
	case res.Plan != nil:
		var p struct {
			Operation string `json:"operation"`
			Units     int    `json:"units"`
		}
		_ = json.Unmarshal(res.Plan, &p)
		return fmt.Sprintf("check mode: would %s %d unit(s); nothing was changed", p.Operation, p.Units)
	case res.Operation == "list":
		return fmt.Sprintf("%d unit(s)", len(res.Units))
	case rc == exitOK:
		return "nothing to do: no unit matched"
	}
	return fmt.Sprintf("moonfrp-bulk exited with code %d", rc)
}

// moduleArgv turns the task's arguments into the command line that means
// the same, for the CLI's own parser to check. Values may come typed (a
// YAML task) or as strings (ad-hoc -a 'k=v'): lists as JSON arrays or
// comma-separated, booleans as Ansible writes them.
func moduleArgv(params map[string]any) ([]string, bool, error) {
	known := map[string]bool{}
	for _, p := range moduleParams {
		known[p] = true
	}
	var unknown []string
	for k := range params {
		if !known[k] && !strings.HasPrefix(k, "_ansible_") {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, false, fmt.Errorf("unsupported parameters for (%s) module: %s. Supported parameters include: %s",
			moduleName, strings.Join(unknown, ", "), strings.Join(moduleParams, ", "))
	}
	check, err := ansibleBool(params, "_ansible_check_mode")
	if err != nil {
		return nil, false, err
	}
	op, _ := params["operation"].(string)
	switch op {
	case "start", "stop", "restart", "reload", "list":
	case "":
		return nil, false, fmt.Errorf("missing required arguments: operation (one of start, stop, restart, reload, list)")
	default:
		return nil, false, fmt.Errorf("value of operation must be one of: start, stop, restart, reload, list, got: %s", op)
	}
	argv := []string{"--output=json"}
	user, err := ansibleBool(params, "user")
	if err != nil {
		return nil, false, err
	}
	if user {
		argv = append(argv, "--user")
	}
	argv = append(argv, op)
	filters, err := ansibleList(params, "filters")
	if err != nil {
		return nil, false, err
	}
	for _, f := range filters {
		argv = append(argv, "--filter="+f)
	}
	units, err := ansibleList(params, "units")
	if err != nil {
		return nil, false, err
	}
	if v, ok := params["units"]; ok && len(units) == 0 {
		// An empty list computed in a playbook must not turn into every
		// service on the host.
		return nil, false, fmt.Errorf("argument 'units' is empty (%v); leave it out to act on every MoonFRP service", v)
	}
	if op == "list" {
		for _, p := range []string{"units", "max_parallel", "settle", "timeout", "tunnel_deadline", "max_fail", "canary"} {
			if _, ok := params[p]; ok {
				return nil, false, fmt.Errorf("operation=list takes only filters and user, not %s", p)
			}
		}
		return argv, check, nil
	}
	flags := map[string]string{"max_parallel": "--max-parallel", "settle": "--settle", "timeout": "--timeout",
		"tunnel_deadline": "--tunnel-deadline", "max_fail": "--max-fail", "canary": "--canary"}
	for _, p := range moduleParams {
		flag, ok := flags[p]
		if !ok {
			continue
		}
		v, present := params[p]
		if !present || v == nil {
			continue
		}
		s, err := scalar(p, v)
		if err != nil {
			return nil, false, err
		}
		argv = append(argv, flag+"="+s)
	}
	if check {
		argv = append(argv, "--dry-run")
	}
	if len(units) > 0 {
		argv = append(append(argv, "--"), units...)
	}
	return argv, check, nil
}

// scalar writes a typed or string value as the CLI would read it.
func scalar(name string, v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	}
	return "", fmt.Errorf("argument '%s' must be a single value, got %T", name, v)
}

// ansibleBool reads a boolean as Ansible accepts it: true or false, or
// the strings yes/no, on/off, true/false, 1/0. Absent is false.
func ansibleBool(params map[string]any, name string) (bool, error) {
	v, ok := params[name]
	if !ok || v == nil {
		return false, nil
	}
	switch x := v.(type) {
	case bool:
		return x, nil
	case string, json.Number:
		s, _ := scalar(name, x)
		switch strings.ToLower(s) {
		case "yes", "on", "true", "1", "y", "t":
			return true, nil
		case "no", "off", "false", "0", "n", "f", "":
			return false, nil
		}
	}
	return false, fmt.Errorf("argument '%s' is of type %T and we were unable to convert to bool: %v", name, v, v)
}

// ansibleList reads a list: a JSON array (typed, or as a string), or a
// comma-separated string.
func ansibleList(params map[string]any, name string) ([]string, error) {
	v, ok := params[name]
	if !ok || v == nil {
		return nil, nil
	}
	var items []any
	switch x := v.(type) {
	case []any:
		items = x
	case string:
		t := strings.TrimSpace(x)
		if strings.HasPrefix(t, "[") {
			dec := json.NewDecoder(strings.NewReader(t))
			dec.UseNumber()
			if err := dec.Decode(&items); err != nil {
				return nil, fmt.Errorf("argument '%s' is not a valid list: %v", name, err)
			}
			break
		}
		for _, part := range strings.Split(t, ",") {
			if part = strings.TrimSpace(part); part != "" {
				items = append(items, part)
			}
		}
	default:
		items = []any{x}
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, err := scalar(name, it)
		if err != nil {
			return nil, fmt.Errorf("argument '%s' must be a list of strings: %v", name, err)
		}
		out = append(out, s)
	}
	return out, nil
}
