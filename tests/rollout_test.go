package tests

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// resultsByUnit maps each unit of a -o json run to its result event.
func resultsByUnit(t *testing.T, stdout string) map[string]map[string]any {
	t.Helper()
	m := map[string]map[string]any{}
	for _, ev := range parseEvents(t, stdout) {
		if ev["event"] == "result" {
			m[ev["unit"].(string)] = ev
		}
	}
	return m
}

// unitsWhere lists, sorted and without .service, the units whose result
// satisfies cond.
func unitsWhere(results map[string]map[string]any, cond func(map[string]any) bool) []string {
	var names []string
	for u, ev := range results {
		if cond(ev) {
			names = append(names, strings.TrimSuffix(u, ".service"))
		}
	}
	sort.Strings(names)
	return names
}

func isFailed(ev map[string]any) bool { return ev["ok"] == false && ev["not_started"] == false }
func notStarted(ev map[string]any) bool {
	return ev["not_started"] == true
}

// --max-fail=2 over 50 units whose first five are broken: the run stops
// launching after the second failure, the rest are not started (and
// really untouched), and the next run can pick up exactly those.
func TestMaxFailHaltsAfterTheSecondFailure(t *testing.T) {
	specs := failingFleet(50, map[int]sandbox.Behaviour{1: sandbox.FailPre, 2: sandbox.FailPre, 3: sandbox.FailPre,
		4: sandbox.FailPre, 5: sandbox.FailPre})
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	names := sandbox.Names(specs)
	before := invocationIDs(t, sb, names[5:])

	r := bulk(t, sb, nil, "restart", "-j", "2", "--max-fail=2", "-o", "json")
	wantCode(t, r, 1)
	wantContains(t, "summary", r.stderr, "Bulk restart halted: ", " not started (failure limit of 2 reached) in ")
	results := resultsByUnit(t, r.stdout)
	if len(results) != 50 {
		t.Fatalf("%d results, want one for each of the 50 units", len(results))
	}
	held := unitsWhere(results, notStarted)
	// In flight at the second failure: at most the two slots' worth.
	if len(held) < 44 {
		t.Errorf("%d units not started, want at least 44 (only what was in flight at the second failure may run)", len(held))
	}
	after := invocationIDs(t, sb, names[5:])
	for _, n := range held {
		if id, ok := before[n]; ok && after[n] != id {
			t.Errorf("%s was reported not started but was restarted", n)
		}
		if reason := results[n+".service"]["reason"]; reason != "not started: failure limit of 2 reached" {
			t.Errorf("%s: reason %q", n, reason)
		}
	}
	var sum map[string]any
	for _, ev := range parseEvents(t, r.stdout) {
		if ev["event"] == "summary" {
			sum = ev
		}
	}
	if sum["halted"] != "failure limit of 2 reached" || sum["not_started"] != float64(len(held)) {
		t.Errorf("JSON summary %v, want halted with %d not started", sum, len(held))
	}

	// The job log knows which ones: the dry run of last:not-started
	// plans exactly them.
	dry := bulk(t, sb, nil, "restart", "--dry-run", "-o", "json", "--filter=last:not-started")
	wantCode(t, dry, 0)
	var plan struct {
		Phases [][]string `json:"phases"`
	}
	if err := json.Unmarshal([]byte(dry.stdout), &plan); err != nil {
		t.Fatalf("dry run: %v\n%s", err, dry.stdout)
	}
	var planned []string
	for _, ph := range plan.Phases {
		for _, u := range ph {
			planned = append(planned, strings.TrimSuffix(u, ".service"))
		}
	}
	sort.Strings(planned)
	if strings.Join(planned, " ") != strings.Join(held, " ") {
		t.Errorf("last:not-started plans %v, want the units the halted run did not start: %v", planned, held)
	}
}

// --filter=last:failed acts on exactly the units that failed last time,
// and touches no other.
func TestLastFailedRestartsExactlyTheUnitsThatFailed(t *testing.T) {
	specs := failingFleet(12, map[int]sandbox.Behaviour{3: sandbox.FailPre, 8: sandbox.Crash, 11: sandbox.FailPre})
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	names := sandbox.Names(specs)

	first := bulk(t, sb, nil, "restart", "-o", "json")
	wantCode(t, first, 1)
	failed := unitsWhere(resultsByUnit(t, first.stdout), isFailed)
	if strings.Join(failed, " ") != "moonfrp-client-11 moonfrp-client-3 moonfrp-client-8" {
		t.Fatalf("first run failed %v, want clients 3, 8 and 11", failed)
	}

	before := invocationIDs(t, sb, names)
	again := bulk(t, sb, nil, "restart", "-o", "json", "--filter=last:failed")
	wantCode(t, again, 1)
	acted := unitsWhere(resultsByUnit(t, again.stdout), func(map[string]any) bool { return true })
	if strings.Join(acted, " ") != strings.Join(failed, " ") {
		t.Errorf("last:failed acted on %v, want %v", acted, failed)
	}
	after := invocationIDs(t, sb, names)
	for _, n := range names {
		isFailed := strings.Contains(" "+strings.Join(failed, " ")+" ", " "+n+" ")
		if !isFailed && after[n] != before[n] {
			t.Errorf("%s did not fail last time but was restarted", n)
		}
	}
	// The crash-looping one was restarted again: a new invocation.
	if after["moonfrp-client-8"] == before["moonfrp-client-8"] {
		t.Errorf("moonfrp-client-8 failed last time but was not restarted")
	}
}

// --canary=2: the first two units of the phase go first; one of them is
// broken, so the other eight are never touched.
func TestCanaryHoldsThePhaseBack(t *testing.T) {
	specs := failingFleet(10, map[int]sandbox.Behaviour{1: sandbox.FailPre})
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	names := sandbox.Names(specs)
	before := invocationIDs(t, sb, names[2:])

	r := bulk(t, sb, nil, "restart", "--canary=2")
	wantCode(t, r, 1)
	wantContains(t, "summary", r.stderr, "Bulk restart halted: 1 succeeded, 1 failed, 8 not started (canary moonfrp-client-1 failed) in ")
	after := invocationIDs(t, sb, names[2:])
	for n, id := range before {
		if after[n] != id {
			t.Errorf("%s was restarted although the canary failed", n)
		}
	}
	dry := bulk(t, sb, nil, "restart", "--dry-run", "--canary=2", "--max-fail=10%")
	wantContains(t, "dry run", dry.stdout, "Failure limit: stop launching after 1 failed unit(s) (--max-fail=10%)",
		"Canary: the first 2 unit(s) of each phase go first", "  -- then, if the canary succeeded:")
}

// liveLine matches the live progress line in any of its forms.
var liveLine = regexp.MustCompile(`(?m)^(Progress: )?\d+/50\b.*\d\.\ds$`)

// The live line in a real terminal: never mixed into jq's output, one
// line after a resize, and the failed count kept at 40 columns.
func TestLiveLineInATerminal(t *testing.T) {
	for _, tool := range []string{"tmux", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make deps installs it)", tool)
		}
	}
	specs := failingFleet(50, map[int]sandbox.Behaviour{7: sandbox.Crash, 19: sandbox.FailPre, 33: sandbox.Crash})
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	session := func(t *testing.T, name string, width, height int, argv ...string) *tmux {
		x := &tmux{t: t, sb: sb, sock: filepath.Join(sb.RuntimeDir, name+".sock")}
		x.start(width, height, argv...)
		x.stop()
		return x
	}
	// A settle window long enough to watch the line and resize mid-run.
	run := []string{binary, "--user", "restart", "--settle=4s"}

	t.Run("json through jq", func(t *testing.T) {
		x := session(t, "jq", 160, 80, "bash", "-c", strings.Join(run, " ")+" -o json | jq -c .")
		x.waitExit("the run")
		screen := x.run("capture-pane", "-p", "-J", "-S", "-", "-t", "menu")
		objects := 0
		for _, l := range strings.Split(strings.TrimRight(screen, "\n "), "\n") {
			l = strings.TrimRight(l, " ")
			switch {
			case strings.HasPrefix(l, "{"):
				var v map[string]any
				if err := json.Unmarshal([]byte(l), &v); err != nil {
					t.Errorf("jq printed a garbled line %q: %v", l, err)
				}
				objects++
			case l == "", strings.HasPrefix(l, "Restarting 50 service(s)"), strings.HasPrefix(l, "Pane is dead"):
			default:
				t.Errorf("unexpected line on the terminal: %q", l)
			}
		}
		// The summary is the last JSON event: a text one could land in
		// the middle of one of jq's lines.
		if !strings.Contains(screen, `"event":"summary"`) {
			t.Errorf("no summary event on the terminal:\n%s", screen)
		}
		if objects != 52 {
			t.Errorf("%d JSON objects, want 52 (start, 50 results, summary):\n%s", objects, screen)
		}
	})

	t.Run("resize mid-run", func(t *testing.T) {
		x := session(t, "resize", 160, 40, run...)
		x.waitPane("the live line", func(p string) bool { return strings.Contains(p, "Progress: ") })
		x.run("resize-window", "-t", "menu", "-x", "50", "-y", "40")
		// The next redraw (at most 200 ms later) is in the compact form.
		p := x.waitPane("the line redrawn at 50 columns", func(p string) bool {
			return regexp.MustCompile(`(?m)^\d+/50: .*s$`).MatchString(p)
		})
		if n := len(liveLine.FindAllString(p, -1)); n != 1 {
			t.Errorf("%d progress lines after narrowing the window, want one:\n%s", n, p)
		}
		if strings.Contains(p, "Progress: ") {
			t.Errorf("a piece of the wide line was left behind:\n%s", p)
		}
		if st := x.waitStatus("the run"); st != "1" {
			t.Errorf("exit status %s, want 1 (three units are broken)", st)
		}
	})

	t.Run("40 columns", func(t *testing.T) {
		x := session(t, "narrow", 40, 40, run...)
		p := x.waitPane("a live line with failures", func(p string) bool {
			return regexp.MustCompile(`(?m)^\d+/50:? .*\b[1-9]\d* failed.* \d+\.\ds$`).MatchString(p)
		})
		for _, l := range liveLine.FindAllString(p, -1) {
			if len(l) >= 40 {
				t.Errorf("live line %q is %d long at 40 columns: it wraps", l, len(l))
			}
		}
		if st := x.waitStatus("the run"); st != "1" {
			t.Errorf("exit status %s, want 1 (three units are broken)", st)
		}
	})
}
