package tests

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// The story's acceptance test: 50 restarts in under 10 seconds.
func TestBulkRestart50ServicesUnder10s(t *testing.T) {
	specs := sandbox.SlowStop("moonfrp-client", 50, 500*time.Millisecond)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	names := sandbox.Names(specs)
	before := invocationIDs(t, sb, names)

	r := bulk(t, sb, nil, "restart")
	wantCode(t, r, 0)
	if r.wall >= 10*time.Second {
		t.Errorf("50 restarts took %s, want under 10s", r.wall)
	}
	wantContains(t, "summary", r.stderr, "Bulk restart complete: 50 succeeded, 0 failed")
	// Each unit was restarted (a new invocation) and is up: being up alone
	// would hold for a tool that stopped at the first unit.
	after := invocationIDs(t, sb, names)
	for _, name := range names {
		if after[name] == "" || after[name] == before[name] {
			t.Errorf("%s: InvocationID %q -> %q: not restarted", name, before[name], after[name])
		}
		if got := activeState(sb, name); got != "active/running" {
			t.Errorf("%s is %s after the restart, want active/running", name, got)
		}
	}
}

// preRecords reads the B/E lines that record-pre wrote and returns the
// largest number of ExecStartPre runs that overlapped, and their count.
func preRecords(t *testing.T, path string) (peak, runs int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read records: %v", err)
	}
	defer f.Close()
	type ev struct {
		at    int64
		delta int
	}
	var evs []ev
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kind, at, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil {
			t.Fatalf("bad record %q", sc.Text())
		}
		d := -1
		if kind == "B" {
			d = 1
			runs++
		}
		evs = append(evs, ev{n, d})
	}
	// Ends sort before begins at the same instant: a slot handed over.
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].at != evs[j].at {
			return evs[i].at < evs[j].at
		}
		return evs[i].delta < evs[j].delta
	})
	cur := 0
	for _, e := range evs {
		cur += e.delta
		if cur > peak {
			peak = cur
		}
	}
	return peak, runs
}

func recordedUnits(n int, hold time.Duration) []sandbox.Spec {
	specs := make([]sandbox.Spec, n)
	for i := range specs {
		specs[i] = sandbox.Spec{Name: fmt.Sprintf("moonfrp-client-%d", i+1), Behaviour: sandbox.Up,
			StopDelay: 10 * time.Millisecond, RecordPre: "pre.log", Hold: hold}
	}
	return specs
}

func TestBulkStartParallelExecution(t *testing.T) {
	const n, hold = 20, 500 * time.Millisecond
	specs := recordedUnits(n, hold)
	sb := newSandbox(t, specs...)

	r := bulk(t, sb, nil, "start", "--settle=0")
	wantCode(t, r, 0)
	serial := time.Duration(n) * hold
	if r.wall > serial*2/5 {
		t.Errorf("starting %d units took %s; serial would take at least %s, want under 40%% of it", n, r.wall, serial)
	}
	peak, runs := preRecords(t, filepath.Join(sb.StateDir, "pre.log"))
	if runs != n {
		t.Errorf("%d starts recorded, want %d", runs, n)
	}
	if peak < 2 {
		t.Errorf("peak concurrency %d: starts did not overlap", peak)
	}
}

func TestMaxParallelismRespected(t *testing.T) {
	for _, limit := range []int{1, 3, 10} {
		t.Run(fmt.Sprintf("j%d", limit), func(t *testing.T) {
			// Long enough holds that every slot fills even on a loaded machine.
			specs := recordedUnits(limit+4, 600*time.Millisecond)
			sb := newSandbox(t, specs...)
			r := bulk(t, sb, nil, "start", "-j", strconv.Itoa(limit), "--no-verify")
			wantCode(t, r, 0)
			peak, runs := preRecords(t, filepath.Join(sb.StateDir, "pre.log"))
			if runs != len(specs) {
				t.Errorf("%d starts recorded, want %d", runs, len(specs))
			}
			if peak > limit {
				t.Errorf("peak of %d starts at once with -j %d", peak, limit)
			}
			if peak < limit {
				t.Errorf("peak of %d starts at once with -j %d: the pool does not fill its slots", peak, limit)
			}
		})
	}
}

// failingFleet is n units with broken ones in the middle of the list.
func failingFleet(n int, broken map[int]sandbox.Behaviour) []sandbox.Spec {
	specs := sandbox.SlowStop("moonfrp-client", n, 100*time.Millisecond)
	for i, b := range broken {
		specs[i-1].Behaviour = b
		specs[i-1].Message = "login to the server failed: authorization failed"
	}
	return specs
}

func TestBulkOperationContinueOnError(t *testing.T) {
	specs := failingFleet(10, map[int]sandbox.Behaviour{4: sandbox.FailPre, 6: sandbox.Crash})
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)

	names := append(sandbox.Names(specs[:5]), "moonfrp-client-nosuch")
	names = append(names, sandbox.Names(specs[5:])...)
	r := bulk(t, sb, nil, append([]string{"restart", "-j", "2"}, names...)...)
	wantCode(t, r, 1)
	wantContains(t, "summary", r.stderr, "Bulk restart complete: 8 succeeded, 3 failed")
	for i, sp := range specs {
		got := activeState(sb, sp.Name)
		if i == 3 || i == 5 {
			continue
		}
		if got != "active/running" {
			t.Errorf("%s is %s: a failure elsewhere stopped it from being restarted", sp.Name, got)
		}
	}
}

func TestBulkOperationFailureReporting(t *testing.T) {
	specs := failingFleet(6, map[int]sandbox.Behaviour{2: sandbox.FailPre, 5: sandbox.Crash})
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)

	r := bulk(t, sb, nil, append([]string{"restart", "moonfrp-client-nosuch"}, sandbox.Names(specs)...)...)
	wantCode(t, r, 1)
	wantContains(t, "summary", r.stderr, "Bulk restart complete: 4 succeeded, 3 failed in ")
	lines := failureLines(r.stderr)
	want := []string{"moonfrp-client-2", "moonfrp-client-5", "moonfrp-client-nosuch"}
	if len(lines) != len(want) {
		t.Fatalf("failure lines %q, want one each for %v", lines, want)
	}
	reasons := map[string]*regexp.Regexp{
		"moonfrp-client-2":      regexp.MustCompile(`ExecStartPre /bin/false exited with status 1.*control process exited with error code`),
		"moonfrp-client-5":      regexp.MustCompile(`exited with status 1 right after restart \(auto-restart loop.*\): login to the server failed: authorization failed$`),
		"moonfrp-client-nosuch": regexp.MustCompile(`Unit moonfrp-client-nosuch.service not found`),
	}
	for _, l := range lines {
		name, reason, _ := strings.Cut(strings.TrimPrefix(l, "  - "), ": ")
		re, ok := reasons[name]
		if !ok {
			t.Errorf("unexpected failure line %q", l)
			continue
		}
		if !re.MatchString(reason) {
			t.Errorf("reason for %s = %q, want it to match %s", name, reason, re)
		}
	}
	// The order is the plan's, whatever order the failures happened in.
	for i, name := range []string{"moonfrp-client-nosuch", "moonfrp-client-2", "moonfrp-client-5"} {
		if !strings.HasPrefix(lines[i], "  - "+name+": ") {
			t.Errorf("failure %d is %q, want %s: failures must follow the plan's order", i, lines[i], name)
		}
	}
}

func failureLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "  - ") {
			out = append(out, l)
		}
	}
	return out
}

func TestBulkOperationProgressIndicator(t *testing.T) {
	specs := sandbox.SlowStop("moonfrp-client", 8, 100*time.Millisecond)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)

	t.Run("not a terminal", func(t *testing.T) {
		r := bulk(t, sb, nil, "restart", "-j", "3")
		wantCode(t, r, 0)
		if strings.Contains(r.stderr, "\r") {
			t.Errorf("carriage return in non-terminal output:\n%q", r.stderr)
		}
		var seen []int
		for _, l := range strings.Split(r.stderr, "\n") {
			var x, y int
			if _, err := fmt.Sscanf(l, "Progress: %d/%d services...", &x, &y); err == nil {
				if y != 8 {
					t.Errorf("progress total %d, want 8: %q", y, l)
				}
				seen = append(seen, x)
			}
		}
		for i, x := range seen {
			if x != i+1 {
				t.Fatalf("progress counts %v, want 1..8 in order", seen)
			}
		}
		if len(seen) != 8 {
			t.Errorf("progress counts %v, want one line per unit", seen)
		}
	})

	t.Run("terminal", func(t *testing.T) {
		out, code := runInPTY(t, bulkCmd(sb, []string{"NO_COLOR=1"}, "restart", "-j", "3"))
		if code != 0 {
			t.Fatalf("exit %d:\n%q", code, out)
		}
		wantContains(t, "terminal output", out, "\r\x1b[KProgress: ", "/8 services... ", " running, ",
			"Bulk restart complete: 8 succeeded, 0 failed")
		// The live line is cleared before the summary is written.
		i := strings.LastIndex(out, "\r\x1b[K")
		j := strings.Index(out, "Bulk restart complete")
		if i < 0 || j < i {
			t.Errorf("the progress line was not cleared before the summary:\n%q", out)
		}
		if strings.Contains(out, "\x1b[3") {
			t.Errorf("colour despite NO_COLOR:\n%q", out)
		}
		if strings.Count(out, "Progress: ") < 2 {
			t.Errorf("the live line was drawn fewer than twice:\n%q", out)
		}
	})
}

func TestBulkOperationEmptyServiceList(t *testing.T) {
	sb := newSandbox(t, sandbox.Spec{Name: "other-service", Behaviour: sandbox.Up})
	for _, args := range [][]string{{"restart"}, {"stop", "--filter=name:nothing-like-this"}} {
		r := bulk(t, sb, nil, args...)
		wantCode(t, r, 0)
		wantContains(t, "stderr", r.stderr, "No services found for bulk "+args[0])
		if strings.Contains(r.stderr, "Progress:") {
			t.Errorf("progress for an empty list:\n%s", r.stderr)
		}
	}
	if got := activeState(sb, "other-service"); got != "inactive/dead" {
		t.Errorf("a non-MoonFRP unit was touched: %s", got)
	}
}

// Load: 50 units, 10 of them failing, and two bulk runs on the same units
// at once. Both finish, neither crashes, and both summaries add up.
func TestLoadFiftyWithTenFailingTwoRunsAtOnce(t *testing.T) {
	broken := map[int]sandbox.Behaviour{}
	for i := 5; i <= 50; i += 5 {
		broken[i] = sandbox.Crash
		if i%10 == 0 {
			broken[i] = sandbox.FailPre
		}
	}
	specs := failingFleet(50, broken)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)

	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = bulk(t, sb, nil, "restart")
		}()
	}
	wg.Wait()
	for i, r := range results {
		wantCode(t, r, 1)
		if !strings.Contains(r.stderr, "Bulk restart complete: 40 succeeded, 10 failed in ") {
			t.Errorf("run %d summary does not add up:\n%s", i, r.stderr)
		}
		if got := len(failureLines(r.stderr)); got != 10 {
			t.Errorf("run %d lists %d failures, want 10", i, got)
		}
	}
	if !strings.Contains(results[0].stderr+results[1].stderr, "waiting for another moonfrp-bulk run (pid ") {
		t.Errorf("the two runs were not serialised: neither waited for the other")
	}
	ctx := context.Background()
	for i, sp := range specs {
		if broken[i+1] != "" {
			continue
		}
		if got := activeState(sb, sp.Name); got != "active/running" {
			t.Errorf("%s is %s after both runs", sp.Name, got)
		}
	}
	if jobs, _ := sb.Systemctl(ctx, "list-jobs", "--no-legend"); strings.TrimSpace(jobs) != "" {
		t.Errorf("jobs left behind:\n%s", jobs)
	}
}

// Discovery: loaded units in any state under their real names, installed
// files that systemd has not loaded, template instances but not templates.
func TestDiscoveryListsEveryMoonFRPUnit(t *testing.T) {
	specs := []sandbox.Spec{
		{Name: "moonfrp-client-1", Behaviour: sandbox.Up},
		{Name: "moonfrp-client-2", Behaviour: sandbox.Crash, RestartDelay: 50 * time.Millisecond},
		{Name: "moonfrp-server", Behaviour: sandbox.Up, StopDelay: 10 * time.Millisecond},
	}
	sb := newSandbox(t, specs...)
	ctx := context.Background()
	tmpl := "[Service]\nExecStart=/bin/sleep 3600\n"
	if err := os.WriteFile(filepath.Join(sb.UnitDir, "moonfrp-visitor@.service"), []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Systemctl(ctx, "daemon-reload"); err != nil {
		t.Fatal(err)
	}
	_, _ = sb.Systemctl(ctx, "start", "moonfrp-server", "moonfrp-client-2", "moonfrp-visitor@eu")
	// systemd offers no event for "gave up restarting"; poll with a bound.
	deadline := time.Now().Add(20 * time.Second)
	for sb.Show(ctx, "moonfrp-client-2", "ActiveState") != "failed" {
		if time.Now().After(deadline) {
			t.Fatalf("moonfrp-client-2 never failed: %s", activeState(sb, "moonfrp-client-2"))
		}
		time.Sleep(50 * time.Millisecond)
	}

	r := bulk(t, sb, nil, "list")
	wantCode(t, r, 0)
	rows := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n")[1:] {
		f := strings.Fields(l)
		rows[f[0]] = strings.Join(f[1:4], " ")
	}
	want := map[string]string{
		"moonfrp-client-1":   "not-loaded inactive dead",
		"moonfrp-client-2":   "loaded failed failed",
		"moonfrp-server":     "loaded active running",
		"moonfrp-visitor@eu": "loaded active running",
	}
	if len(rows) != len(want) {
		t.Errorf("listed %v, want %v", rows, want)
	}
	for name, w := range want {
		if rows[name] != w {
			t.Errorf("%s: %q, want %q", name, rows[name], w)
		}
	}
	// The failed unit is restarted under its own name, not as "●".
	r = bulk(t, sb, nil, "stop", "--filter=status:failed")
	wantCode(t, r, 0)
	wantContains(t, "stderr", r.stderr, "Progress: 1/1 services... moonfrp-client-2 ok")
}

// Nothing to do, on a terminal, in JSON: the live line never started, and
// ending it must not crash (it did: "close of nil channel").
func TestNothingToDoOnATerminalInJSON(t *testing.T) {
	sb := newSandbox(t, sandbox.SlowStop("moonfrp-client", 1, 50*time.Millisecond)...)
	out, code := runInPTY(t, bulkCmd(sb, nil, "restart", "-o", "json", "--filter=name:nothing"))
	if code != 0 || strings.Contains(out, "panic") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	wantContains(t, "terminal", out, `"event":"summary"`, `filter "name:nothing" matches no service`)
	if strings.Contains(out, "Bulk restart complete") {
		t.Errorf("a summary line for a run in which nothing ran:\n%s", out)
	}
}

// Fast units share systemctl calls, and still never more than -j units
// are in flight: each unit records when its start begins and ends, on
// the manager's side. A group with one failing unit fails exactly that
// unit, with its own reason.
func TestGroupedCallsKeepTheCapAndPerUnitTruth(t *testing.T) {
	const limit = 4
	specs := recordedUnits(40, 20*time.Millisecond)
	specs = append(specs, sandbox.Spec{Name: "moonfrp-client-pre", Behaviour: sandbox.FailPre})
	sb := newSandbox(t, specs...)
	r := bulk(t, sb, nil, "start", "-j", strconv.Itoa(limit), "-o", "json", "--settle=0")
	wantCode(t, r, 1)
	peak, runs := preRecords(t, filepath.Join(sb.StateDir, "pre.log"))
	if runs != 40 {
		t.Errorf("%d starts recorded, want 40", runs)
	}
	if peak > limit {
		t.Errorf("peak of %d starts at once with -j %d", peak, limit)
	}
	res := results(t, r.stdout)
	grouped := 0
	for u, ev := range res {
		if ev["group_size"].(float64) > 1 {
			grouped++
		}
		if (ev["ok"] == true) == (u == "moonfrp-client-pre") {
			t.Errorf("%s: ok=%v reason %q", u, ev["ok"], ev["reason"])
		}
	}
	if grouped == 0 {
		t.Error("no unit shared a systemctl call")
	}
	if reason := res["moonfrp-client-pre"]["reason"].(string); !strings.HasPrefix(reason, "ExecStartPre /bin/false exited with status 1") {
		t.Errorf("failing unit's reason %q", reason)
	}
	wantContains(t, "summary", r.stderr, "Bulk start complete: 40 succeeded, 1 failed")
}
