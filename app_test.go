package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/moonfrp/moonfrp-bulk/joblog"
	"github.com/moonfrp/moonfrp-bulk/lock"
	"github.com/moonfrp/moonfrp-bulk/report"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// scripted is a service manager for operate's unit tests: units that
// restart (a new InvocationID) or fail as told, and every call it was
// asked, so that a test can tell what was done. The integration tests
// in tests/ drive a real systemd.
type scripted struct {
	mu    sync.Mutex
	units map[string]*scriptedUnit
	ops   []string // "restart u1.service", one a unit an operation touched
	down  bool     // answers as a manager that is not running
}

type scriptedUnit struct {
	active string
	inv    int
	fails  bool // its operations fail, as a unit whose ExecStartPre fails
}

func newScripted(failing []string, names ...string) *scripted {
	s := &scripted{units: map[string]*scriptedUnit{}}
	for _, n := range names {
		s.units[n] = &scriptedUnit{active: "active", inv: 1, fails: slices.Contains(failing, n)}
	}
	return s
}

func (s *scripted) Scope() string    { return "user" }
func (s *scripted) HasJournal() bool { return false }
func (s *scripted) Journal(context.Context, ...string) (systemctl.Output, error) {
	return systemctl.Output{}, errors.New("no journal")
}

func (s *scripted) Run(_ context.Context, args ...string) (systemctl.Output, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return systemctl.Output{ExitCode: 1, Stderr: []byte("Failed to connect to bus: No such file or directory\n")}, nil
	}
	var names []string
	if i := slices.Index(args, "--"); i >= 0 {
		names = args[i+1:]
	}
	switch args[0] {
	case "list-units":
		var b strings.Builder
		keys := make([]string, 0, len(s.units))
		for n := range s.units {
			keys = append(keys, n)
		}
		sort.Strings(keys)
		for _, n := range keys {
			fmt.Fprintf(&b, "%s loaded %s %s MoonFRP tunnel\n", n, s.units[n].active, sub(s.units[n].active))
		}
		return systemctl.Output{Stdout: []byte(b.String())}, nil
	case "show":
		var b strings.Builder
		if names == nil {
			return systemctl.Output{Stdout: []byte("UnitPath=/nonexistent\n")}, nil
		}
		for _, n := range names {
			u := s.units[n]
			if u == nil {
				fmt.Fprintf(&b, "Id=%s\nLoadState=not-found\nActiveState=inactive\nSubState=dead\n\n", n)
				continue
			}
			result, status := "success", "0"
			if u.active == "failed" {
				result, status = "exit-code", "1"
			}
			fmt.Fprintf(&b, "Id=%s\nLoadState=loaded\nActiveState=%s\nSubState=%s\nInvocationID=%032x\nNRestarts=0\nResult=%s\nExecMainCode=1\nExecMainStatus=%s\nMainPID=0\n\n",
				n, u.active, sub(u.active), u.inv, result, status)
		}
		return systemctl.Output{Stdout: []byte(b.String())}, nil
	case "start", "stop", "restart", "reload":
		var out systemctl.Output
		for _, n := range names {
			s.ops = append(s.ops, args[0]+" "+n)
			u := s.units[n]
			switch {
			case u.fails:
				u.active = "failed"
				out.ExitCode = 1
				out.Stderr = append(out.Stderr, "Job for "+n+" failed because the control process exited with error code.\n"...)
			case args[0] == "stop":
				u.active = "inactive"
			default:
				u.active = "active"
				u.inv++
			}
		}
		return out, nil
	}
	return systemctl.Output{}, nil
}

func sub(active string) string {
	return map[string]string{"active": "running", "failed": "failed", "inactive": "dead"}[active]
}

func (s *scripted) touched() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ops)
}

// invocation is one run of the binary's code on a scripted manager, in
// directories of the test's own (locks, job log, frp logs).
type invocation struct {
	code        int
	end         ending
	out, errOut string
	status      string // what --status-fd received
}

func invoke(t *testing.T, mgr *scripted, args ...string) invocation {
	t.Helper()
	status, err := os.CreateTemp(t.TempDir(), "status")
	if err != nil {
		t.Fatal(err)
	}
	defer status.Close()
	// The run closes the descriptor it is given, as the shim's is its own:
	// a copy, so that status's own is never closed twice (its number may
	// be another file's by then).
	fd, err := syscall.Dup(int(status.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	end := runOn(&report.Streams{Out: &out, Err: &errOut}, append([]string{"--user", "--status-fd", fmt.Sprint(fd)}, args...), mgr)
	got, _ := os.ReadFile(status.Name())
	return invocation{code: end.code, end: end, out: out.String(), errOut: errOut.String(), status: strings.TrimSpace(string(got))}
}

// env gives a test its own runtime, state, log and data directories.
func env(t *testing.T) (stateDir string) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{"XDG_RUNTIME_DIR": "run", "XDG_STATE_HOME": "state", "MOONFRP_LOG_DIR": "log", "MOONFRP_DATA_DIR": "data"} {
		p := filepath.Join(dir, v)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Setenv(k, p)
	}
	t.Setenv("MOONFRP_LOG_FORMAT", "")
	d, err := joblog.Dir(true)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// results decodes the JSON result lines of a run, by unit.
func results(t *testing.T, out string) map[string]map[string]any {
	t.Helper()
	res := map[string]map[string]any{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if ev["event"] == "result" {
			res[ev["unit"].(string)] = ev
		}
	}
	return res
}

const (
	u1 = "moonfrp-client-1.service"
	u2 = "moonfrp-client-2.service"
	u3 = "moonfrp-client-3.service"
)

// operate's paths, one a case: select, lock, plan, run, status fd, job
// log, exit code.
func TestOperate(t *testing.T) {
	t.Run("a restart of every unit: each restarted once, counted, recorded, exit 0", func(t *testing.T) {
		state := env(t)
		mgr := newScripted(nil, u1, u2, u3)
		r := invoke(t, mgr, "restart", "--settle=0", "-o", "json")
		if r.code != exitOK {
			t.Fatalf("exit %d, want 0\n%s", r.code, r.errOut)
		}
		got := mgr.touched()
		slices.Sort(got)
		if !slices.Equal(got, []string{"restart " + u1, "restart " + u2, "restart " + u3}) {
			t.Errorf("operations %v, want one restart of each unit", got)
		}
		for _, u := range []string{u1, u2, u3} {
			if res := results(t, r.out)[u]; res == nil || res["ok"] != true {
				t.Errorf("result of %s: %v", u, res)
			}
		}
		if r.status != "succeeded=3 failed=0 not_started=0 total=3 abandoned=0" {
			t.Errorf("status fd got %q", r.status)
		}
		if !strings.HasPrefix(r.end.recap, "Bulk restart complete: 3 succeeded, 0 failed in ") || r.end.err != "" {
			t.Errorf("ending %+v: want the recap, no error", r.end)
		}
		rec, err := joblog.Last(state)
		if err != nil || rec.Operation != "restart" || rec.Succeeded != 3 {
			t.Errorf("job log: %+v, %v", rec, err)
		}
	})
	t.Run("a failed unit: systemctl's words, exit 1, and last:failed selects it next time", func(t *testing.T) {
		env(t)
		mgr := newScripted([]string{u2}, u1, u2, u3)
		r := invoke(t, mgr, "restart", "--settle=0", "-o", "json")
		if r.code != exitFailed {
			t.Fatalf("exit %d, want %d\n%s", r.code, exitFailed, r.errOut)
		}
		res := results(t, r.out)[u2]
		if res["ok"] != false || !strings.Contains(fmt.Sprint(res["reason"]), "failed because the control process exited with error code") {
			t.Errorf("result of the failed unit: %v", res)
		}
		if r.status != "succeeded=2 failed=1 not_started=0 total=3 abandoned=0" {
			t.Errorf("status fd got %q", r.status)
		}
		mgr.units[u2].fails = false
		before := len(mgr.touched())
		r = invoke(t, mgr, "restart", "--settle=0", "--filter=last:failed", "-o", "json")
		if r.code != exitOK {
			t.Fatalf("retry: exit %d\n%s", r.code, r.errOut)
		}
		if got := mgr.touched()[before:]; !slices.Equal(got, []string{"restart " + u2}) {
			t.Errorf("the retry did %v, want only the unit that failed", got)
		}
	})
	t.Run("a unit another run holds: --no-wait touches nothing, exit 4", func(t *testing.T) {
		env(t)
		mgr := newScripted(nil, u1, u2)
		held, err := lock.Acquire(context.Background(), lock.Dir(true), []string{u2}, lock.Options{NoWait: true})
		if err != nil {
			t.Fatal(err)
		}
		defer held.Release()
		r := invoke(t, mgr, "restart", "--no-wait", "--settle=0")
		if r.code != exitBusy {
			t.Fatalf("exit %d, want %d\n%s", r.code, exitBusy, r.errOut)
		}
		if got := mgr.touched(); len(got) != 0 {
			t.Errorf("operations %v while a unit was held", got)
		}
		if !strings.Contains(r.errOut, "drop --no-wait") {
			t.Errorf("stderr says no way on:\n%s", r.errOut)
		}
	})
	t.Run("no unit matched: a warning, as printed and as a value", func(t *testing.T) {
		env(t)
		mgr := newScripted(nil, u1)
		r := invoke(t, mgr, "restart", "moonfrp-client-9*")
		if r.code != exitOK || len(r.end.warnings) == 0 {
			t.Fatalf("exit %d, warnings %q\n%s", r.code, r.end.warnings, r.errOut)
		}
		for _, w := range r.end.warnings {
			if !strings.Contains(r.errOut, "moonfrp-bulk: warning: "+w+"\n") {
				t.Errorf("warning %q was not printed:\n%s", w, r.errOut)
			}
		}
	})
	t.Run("a dry run shows the plan and touches nothing", func(t *testing.T) {
		state := env(t)
		mgr := newScripted(nil, u1, u2)
		r := invoke(t, mgr, "restart", "--dry-run")
		if r.code != exitOK || !strings.Contains(r.out, "moonfrp-client-1") || !strings.Contains(r.out, "moonfrp-client-2") {
			t.Fatalf("exit %d, plan:\n%s\n%s", r.code, r.out, r.errOut)
		}
		if got := mgr.touched(); len(got) != 0 {
			t.Errorf("a dry run did %v", got)
		}
		if _, err := joblog.Last(state); err == nil {
			t.Errorf("a dry run was recorded in the job log")
		}
	})
	t.Run("a manager that does not answer: what to check, exit 3", func(t *testing.T) {
		env(t)
		mgr := newScripted(nil, u1)
		mgr.down = true
		r := invoke(t, mgr, "restart")
		if r.code != exitCannotRun || !strings.Contains(r.errOut, "is the user manager running?") {
			t.Fatalf("exit %d, want %d with advice:\n%s", r.code, exitCannotRun, r.errOut)
		}
		if lines := strings.Split(strings.TrimSpace(r.errOut), "\n"); len(lines) != 1 {
			t.Errorf("the error is %d lines, want one:\n%s", len(lines), r.errOut)
		}
		if "moonfrp-bulk: "+r.end.err+"\n" != r.errOut || r.end.recap != "" {
			t.Errorf("ending %+v, printed %q: the error as a value is what was printed", r.end, r.errOut)
		}
	})
}
