package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// groupsOf sizes every group k.
func groupsOf(k int) func(context.Context, int) int {
	return func(context.Context, int) int { return k }
}

// At no instant are more than limit items in flight, counting every item
// of a group: a group of k holds k slots.
func TestForEachGroupHoldsTheLimitAtEveryInstant(t *testing.T) {
	for _, c := range []struct{ limit, k int }{{1, 1}, {3, 1}, {10, 1}, {10, 4}, {10, 10}} {
		t.Run(fmt.Sprintf("limit %d groups of %d", c.limit, c.k), func(t *testing.T) {
			var cur, peak atomic.Int32
			n := ForEachGroup(context.Background(), context.Background(), c.limit, 40, groupsOf(c.k), func(lo, hi int) {
				now := cur.Add(int32(hi - lo))
				for {
					p := peak.Load()
					if now <= p || peak.CompareAndSwap(p, now) {
						break
					}
				}
				time.Sleep(time.Millisecond) // hold the slots so others pile up
				cur.Add(-int32(hi - lo))
			})
			if n != 40 {
				t.Errorf("launched %d, want 40", n)
			}
			if p := int(peak.Load()); p > c.limit || p < c.k {
				t.Errorf("peak %d items in flight with limit %d and groups of %d", p, c.limit, c.k)
			}
		})
	}
}

// Slots pass to the next group the moment a call returns: with one slot,
// item i+1 starts only after item i returned, at once, in fake time
// (where a wait of any length would show).
func TestForEachGroupHandsOverSlotsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hold = 100 * time.Millisecond
		var mu sync.Mutex
		var starts, ends []time.Time
		ForEachGroup(context.Background(), context.Background(), 1, 5, groupsOf(1), func(lo, hi int) {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			time.Sleep(hold)
			mu.Lock()
			ends = append(ends, time.Now())
			mu.Unlock()
		})
		if len(starts) != 5 {
			t.Fatalf("%d items ran", len(starts))
		}
		for i := 1; i < 5; i++ {
			if gap := starts[i].Sub(ends[i-1]); gap != 0 {
				t.Errorf("item %d started %s after item %d ended, want at once", i, gap, i-1)
			}
		}
	})
}

// When launch ends, nothing more is launched: only the groups that had
// their slots already ran, and its cause is the caller's to read.
func TestForEachGroupStopsLaunchingWhenLaunchEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		launch, stop := context.WithCancelCause(context.Background())
		n := ForEachGroup(context.Background(), launch, 2, 20, groupsOf(1), func(lo, _ int) {
			if lo == 3 {
				stop(ErrInterrupted)
			}
			time.Sleep(5 * time.Millisecond)
		})
		if n != 4 {
			t.Errorf("launched %d after launching stopped at item 3, want 4 (items 0-3)", n)
		}
		if !errors.Is(context.Cause(launch), ErrInterrupted) {
			t.Errorf("cause %v", context.Cause(launch))
		}
	})
}

// planOf is the plan for names, as discovery would make it without facts.
func planOf(op string, names []string) discover.Plan {
	units := make([]discover.Unit, len(names))
	for i, n := range names {
		units[i] = discover.Unit{Name: n}
	}
	return discover.NewPlan(op, units, nil)
}

// fakeUnit is how the fake manager treats one unit.
type fakeUnit struct {
	opExit   int
	opStderr string
	opDelay  time.Duration
	hang     bool
	onOp     func() // runs during the operation, e.g. to write a log line
	limited  bool   // refused by the start limit until reset-failed
	// state is returned by show; after it, later shows return settled.
	state, settled systemctl.Properties
}

// fakeManager is a scripted systemctl for the pool's unit tests.
type fakeManager struct {
	units map[string]*fakeUnit

	mu         sync.Mutex
	calls      [][]string
	order      []string // units in the order their operations ended
	shows      map[string]int
	running    int // units in flight
	peak       int
	groups     []int                // units per operation call
	groupUnits [][]string           // the units of each call
	stopStamps map[string][2]uint64 // each unit's last stop, as systemd stamps it
	events     []int                // call i+1 started (+) or ended (-), in order
	cancelled  []string
}

// startedAfter returns the sizes of the calls that began after call i
// ended, in the order they began.
func (f *fakeManager) startedAfter(i int) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var sizes []int
	ended := false
	for _, e := range f.events {
		if e == -(i + 1) {
			ended = true
		} else if ended && e > 0 {
			sizes = append(sizes, f.groups[e-1])
		}
	}
	return sizes
}

func (f *fakeManager) Run(ctx context.Context, args ...string) (systemctl.Output, error) {
	f.mu.Lock()
	f.calls = append(f.calls, args)
	f.mu.Unlock()
	switch args[0] {
	case "show":
		return f.show(args), nil
	case "list-jobs":
		// Other units' jobs too, which a timeout must leave alone.
		return systemctl.Output{Stdout: []byte("5 moonfrp-client-1.service restart waiting\n" +
			"7 moonfrp-client-hang.service start running\n9 other.service start waiting\n")}, nil
	case "cancel":
		f.mu.Lock()
		f.cancelled = append(f.cancelled, args[1:]...)
		f.mu.Unlock()
		return systemctl.Output{}, nil
	case "reset-failed":
		f.mu.Lock()
		for _, n := range args[2:] {
			if u := f.units[n]; u != nil {
				u.limited = false
			}
		}
		f.mu.Unlock()
		return systemctl.Output{}, nil
	}
	// One call may carry several units (after "--"): each behaves as its
	// fakeUnit says; the call takes as long as the slowest, prints every
	// unit's error line, and fails if any unit fails.
	var names []string
	for i, a := range args {
		if a == "--" {
			names = args[i+1:]
		}
	}
	f.mu.Lock()
	f.running += len(names)
	f.peak = max(f.peak, f.running)
	call := len(f.groups)
	f.groups = append(f.groups, len(names))
	f.groupUnits = append(f.groupUnits, names)
	f.events = append(f.events, call+1) // started
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running -= len(names)
		f.order = append(f.order, names...)
		f.events = append(f.events, -(call + 1)) // ended
		f.mu.Unlock()
	}()
	var out systemctl.Output
	var stderr strings.Builder
	var delay time.Duration
	hang := false
	for _, unit := range names {
		u := f.units[unit]
		f.mu.Lock()
		limited := u.limited
		f.mu.Unlock()
		switch {
		case limited:
			out.ExitCode = 1
			stderr.WriteString("Job for " + unit + " failed because start of the service was attempted too often.\n")
		case u.hang:
			hang = true
		default:
			delay = max(delay, u.opDelay)
			if u.opExit != 0 {
				out.ExitCode = u.opExit
				stderr.WriteString(u.opStderr)
			}
		}
	}
	if hang {
		<-ctx.Done()
		return systemctl.Output{ExitCode: -1}, ctx.Err()
	}
	began := monotonicMicros()
	time.Sleep(delay)
	f.mu.Lock()
	for _, unit := range names {
		// Each unit takes its own opDelay, as its stamps say.
		f.stopStamps[unit] = [2]uint64{began, began + uint64(f.units[unit].opDelay/time.Microsecond)}
	}
	f.mu.Unlock()
	for _, unit := range names {
		if u := f.units[unit]; u.onOp != nil {
			u.onOp()
		}
	}
	out.Stderr = []byte(stderr.String())
	return out, nil
}

func (f *fakeManager) show(args []string) systemctl.Output {
	time.Sleep(2 * time.Millisecond) // a real systemctl takes a few ms
	var b strings.Builder
	for i, a := range args {
		if a != "--" {
			continue
		}
		for _, unit := range args[i+1:] {
			f.mu.Lock()
			f.shows[unit]++
			n := f.shows[unit]
			stamps, stopped := f.stopStamps[unit]
			f.mu.Unlock()
			u := f.units[unit]
			p := systemctl.Properties{"ActiveState": "active", "SubState": "running", "NRestarts": "0", "InvocationID": "1"}
			if stopped {
				p["ActiveExitTimestampMonotonic"] = fmt.Sprint(stamps[0])
				p["InactiveEnterTimestampMonotonic"] = fmt.Sprint(stamps[1])
			}
			if u.state != nil {
				p = u.state
			}
			if n >= 2 && u.settled != nil {
				p = u.settled
			}
			fmt.Fprintf(&b, "Id=%s\n", unit)
			for k, v := range p {
				fmt.Fprintf(&b, "%s=%s\n", k, v)
			}
			b.WriteString("\n")
		}
	}
	return systemctl.Output{Stdout: []byte(b.String())}
}

// collector is an Observer that keeps results.
type collector struct {
	mu       sync.Mutex
	finished []Result
}

func (c *collector) Launched(string)      {}
func (c *collector) OpEnded(string, bool) {}
func (c *collector) Finished(r Result) {
	c.mu.Lock()
	c.finished = append(c.finished, r)
	c.mu.Unlock()
}

func newFake(units map[string]*fakeUnit) *fakeManager {
	return &fakeManager{units: units, shows: map[string]int{}, stopStamps: map[string][2]uint64{}}
}

func TestRunVerifiesContinuesAndExplains(t *testing.T) {
	crashed := systemctl.Properties{"ActiveState": "activating", "SubState": "auto-restart", "Result": "exit-code",
		"NRestarts": "2", "ExecMainCode": "1", "ExecMainStatus": "1", "InvocationID": "2"}
	units := map[string]*fakeUnit{
		"moonfrp-server.service":   {opDelay: 20 * time.Millisecond},
		"moonfrp-client-1.service": {},
		"moonfrp-client-2.service": {opExit: 1, opStderr: "Job for moonfrp-client-2.service failed because the control process exited with error code.\nSee \"systemctl status moonfrp-client-2.service\" for details.\n",
			state: systemctl.Properties{"ActiveState": "failed", "SubState": "failed", "Result": "exit-code",
				"ExecStartPre": "{ path=/bin/false ; argv[]=/bin/false ; ignore_errors=no ; code=exited ; status=1 }"}},
		"moonfrp-client-3.service": {settled: crashed},
		"moonfrp-client-hang.service": {hang: true,
			state: systemctl.Properties{"ActiveState": "activating", "SubState": "start-pre"}},
	}
	f := newFake(units)
	var names []string
	for n := range units {
		names = append(names, n)
	}
	obs := &collector{}
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 2, Timeout: 200 * time.Millisecond, Verify: true, Settle: 50 * time.Millisecond}, Runner: f}, planOf("restart", names), obs)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Succeeded != 2 || sum.Failed != 3 || sum.NotStarted != 0 || len(obs.finished) != 5 {
		t.Fatalf("summary %+v, %d finished", sum, len(obs.finished))
	}
	if f.order[0] != "moonfrp-server.service" {
		t.Errorf("operations ended in order %v: the server must go first on restart", f.order)
	}
	if f.peak > 2 {
		t.Errorf("%d operations at once with a limit of 2", f.peak)
	}
	reasons := map[string]string{}
	for _, r := range sum.Results {
		reasons[r.Unit] = r.Reason
	}
	want := map[string]string{
		"moonfrp-client-2.service":    "ExecStartPre /bin/false exited with status 1 (systemctl: Job for moonfrp-client-2.service failed because the control process exited with error code.)",
		"moonfrp-client-3.service":    "exited with status 1 right after restart (auto-restart loop, 2 restarts)",
		"moonfrp-client-hang.service": "timed out after 200ms (its systemd job was cancelled); it was left activating (start-pre): see systemctl status moonfrp-client-hang",
	}
	for unit, w := range want {
		if reasons[unit] != w {
			t.Errorf("reason for %s = %q, want %q", unit, reasons[unit], w)
		}
	}
	// The stage says which step decided each verdict, whatever its words.
	wantStage := map[string]Stage{"moonfrp-server.service": StageNone, "moonfrp-client-1.service": StageNone,
		"moonfrp-client-2.service": StageOperation, "moonfrp-client-3.service": StageState, "moonfrp-client-hang.service": StageOperation}
	for _, r := range sum.Results {
		if r.Stage != wantStage[r.Unit] {
			t.Errorf("%s: stage %v, want %v", r.Unit, r.Stage, wantStage[r.Unit])
		}
	}
	if !reflect.DeepEqual(f.cancelled, []string{"7"}) {
		t.Errorf("cancelled jobs %v, want [7]", f.cancelled)
	}
}

// Verification is batched: one show per batch of units, not per unit.
func TestRunBatchesStateQueries(t *testing.T) {
	units, names := alike(200, time.Millisecond)
	f := newFake(units)
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 50, Verify: true, Settle: 20 * time.Millisecond}, Runner: f}, planOf("restart", names), &collector{})
	if err != nil || sum.Succeeded != 200 {
		t.Fatalf("summary %+v, %v", sum, err)
	}
	shows := 0
	for _, c := range f.calls {
		if c[0] == "show" {
			shows++
		}
	}
	// Two checks per unit would be 400 calls unbatched.
	if shows > 60 {
		t.Errorf("%d show calls for 200 units: state queries are not batched", shows)
	}
}

func TestRunWithoutVerificationTrustsExitCodes(t *testing.T) {
	units := map[string]*fakeUnit{"moonfrp-client-1.service": {settled: systemctl.Properties{"ActiveState": "activating", "SubState": "auto-restart"}}}
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "start", MaxParallel: 1}, Runner: newFake(units)},
		planOf("start", []string{"moonfrp-client-1.service"}), &collector{})
	if err != nil || sum.Succeeded != 1 {
		t.Errorf("summary %+v, %v", sum, err)
	}
}

func TestRunStoppedLaunchLeavesUnitsNotStarted(t *testing.T) {
	for _, c := range []struct {
		cause       error
		interrupted bool
		reason      string
	}{
		{ErrInterrupted, true, "not started (interrupted)"},
		{ErrTerminalLost, false, "not started (the terminal was lost)"},
	} {
		units, names := alike(10, 30*time.Millisecond)
		launch, stop := context.WithCancelCause(context.Background())
		stop(c.cause)
		obs := &collector{}
		sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 2}, Runner: newFake(units), Launch: launch}, planOf("restart", names), obs)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Interrupted != c.interrupted || !errors.Is(sum.Stopped, c.cause) || sum.NotStarted != 10 || len(obs.finished) != 10 || sum.Results[0].Reason != c.reason {
			t.Errorf("%v: summary %+v with %d finished, want all 10 not started", c.cause, sum, len(obs.finished))
		}
	}
}

// A unit that is active at the end of its window but started again after
// its operation ended has restarted: systemd's monotonic stamps show it.
func TestRunSeesARestartWithinTheSettleWindow(t *testing.T) {
	later := fmt.Sprint(monotonicMicros() + 60e6) // a start stamped after the operation
	units := map[string]*fakeUnit{
		"moonfrp-client-1.service": {settled: systemctl.Properties{"ActiveState": "active", "SubState": "running",
			"NRestarts": "1", "ExecMainStartTimestampMonotonic": later}},
		"moonfrp-client-2.service": {settled: systemctl.Properties{"ActiveState": "active", "SubState": "running",
			"ExecMainStartTimestampMonotonic": "1", "ActiveEnterTimestampMonotonic": "1"}},
	}
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "start", MaxParallel: 2, Verify: true, Settle: 10 * time.Millisecond}, Runner: newFake(units)}, planOf("start", []string{"moonfrp-client-1.service", "moonfrp-client-2.service"}), &collector{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 1 || sum.Results[0].OK || !sum.Results[1].OK {
		t.Fatalf("summary %+v", sum)
	}
	if got, want := sum.Results[0].Reason, "restarted 1 time right after start"; got != want {
		t.Errorf("reason %q, want %q", got, want)
	}
}

// Reasons come from the unit's log under MOONFRP_LOG_DIR when the unit names
// no file of its own (only lines written since the operation began), and
// from the journal when there is no file at all.
func TestRunReadsLogDirThenJournal(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "moonfrp-client-1.log")
	if err := os.WriteFile(logPath, []byte("old: error from yesterday\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	failed := systemctl.Properties{"ActiveState": "failed", "SubState": "failed", "Result": "exit-code", "ExecMainCode": "1", "ExecMainStatus": "2"}
	units := map[string]*fakeUnit{
		"moonfrp-client-1.service": {opExit: 1, state: failed, onOp: func() {
			f, _ := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString("\x1b[31m[E] [root.go:1] config file not found\x1b[0m\n")
			f.Close()
		}},
		"moonfrp-client-2.service": {opExit: 1, state: failed},
	}
	var asked []string
	journal := func(_ context.Context, unit string, since time.Time) []string {
		asked = append(asked, unit)
		if since.IsZero() {
			t.Error("journal asked without a start time")
		}
		return []string{"bind: address already in use"}
	}
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "start", MaxParallel: 1, Verify: true}, LogDir: dir, Journal: journal, Runner: newFake(units)}, planOf("start", []string{"moonfrp-client-1.service", "moonfrp-client-2.service"}), &collector{})
	if err != nil {
		t.Fatal(err)
	}
	if got := sum.Results[0].LogTail; !reflect.DeepEqual(got, []string{"[E] [root.go:1] config file not found"}) {
		t.Errorf("log tail %q: want only the new line, without colour", got)
	}
	if got, want := sum.Results[0].Reason, "exited with status 2: config file not found"; got != want {
		t.Errorf("reason %q, want %q", got, want)
	}
	if !reflect.DeepEqual(asked, []string{"moonfrp-client-2.service"}) {
		t.Errorf("journal asked for %v, want only the unit without a log file", asked)
	}
	if got, want := sum.Results[1].Reason, "exited with status 2: bind: address already in use"; got != want {
		t.Errorf("reason %q, want %q", got, want)
	}
}

// A unit refused by systemd's start limit is reset and tried once more.
func TestRunResetsAStartLimitedUnitAndRetries(t *testing.T) {
	units := map[string]*fakeUnit{"moonfrp-client-1.service": {limited: true}}
	f := newFake(units)
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 1}, Runner: f},
		planOf("restart", []string{"moonfrp-client-1.service"}), &collector{})
	if err != nil || sum.Succeeded != 1 {
		t.Fatalf("summary %+v, %v", sum, err)
	}
	var verbs []string
	for _, c := range f.calls {
		verbs = append(verbs, c[0])
	}
	if got := strings.Join(verbs, " "); got != "show restart reset-failed restart" {
		t.Errorf("calls %q, want a reset and one retry after the refusal", got)
	}
}

// When the manager stops answering, nothing more is launched, and every
// unit is still accounted for.
func TestRunStopsLaunchingWhenTheManagerIsLost(t *testing.T) {
	units := map[string]*fakeUnit{}
	var names []string
	lostMsg := "Failed to connect to bus: Connection refused"
	for i := 0; i < 10; i++ {
		n := fmt.Sprintf("moonfrp-client-%d.service", i)
		u := &fakeUnit{}
		if i >= 3 {
			u.opExit, u.opStderr = 1, lostMsg+"\n"
		}
		units[n] = u
		names = append(names, n)
	}
	f := newFake(units)
	obs := &collector{}
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 1}, Runner: f}, planOf("restart", names), obs)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Lost != lostMsg {
		t.Errorf("lost %q, want %q", sum.Lost, lostMsg)
	}
	launched := 0
	for _, c := range f.calls {
		if c[0] == "restart" {
			launched++
		}
	}
	if launched != 4 {
		t.Errorf("%d operations launched, want 4 (none after the one that found the manager gone)", launched)
	}
	if sum.Succeeded+sum.Failed+sum.NotStarted != 10 || len(obs.finished) != 10 || sum.NotStarted != 6 {
		t.Errorf("summary %+v with %d finished: every unit must be counted once", sum, len(obs.finished))
	}
}

// A second interrupt cuts operations and verifications short; each unit
// in flight is still counted once, as abandoned, with the state it was
// left in.
func TestRunAccountsForEveryUnitAtASecondInterrupt(t *testing.T) {
	units, names := alike(20, 40*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	obs := &collector{}
	sum, err := Run(ctx, Config{Settings: Settings{Operation: "restart", MaxParallel: 4, Verify: true, Settle: time.Second}, Runner: newFake(units)}, planOf("restart", names), obs)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range obs.finished {
		seen[r.Unit]++
	}
	for _, n := range names {
		if seen[n] != 1 {
			t.Errorf("%s finished %d times", n, seen[n])
		}
	}
	if sum.Succeeded+sum.Failed+sum.NotStarted != 20 || sum.Abandoned == 0 || sum.NotStarted == 0 {
		t.Errorf("summary %+v: want every unit counted, some abandoned and some not started", sum)
	}
	for _, r := range sum.Results {
		if r.Abandoned && !strings.Contains(r.Reason, "it was then active/running") {
			t.Errorf("%s: reason %q does not say the state it was left in", r.Unit, r.Reason)
		}
		if (r.Abandoned && r.Stage != StageAbandoned) || (r.NotStarted && r.Stage != StageNotStarted) {
			t.Errorf("%s: stage %v for abandoned=%v not_started=%v", r.Unit, r.Stage, r.Abandoned, r.NotStarted)
		}
	}
}

// Fast units share systemctl calls, never more than -j units are in flight,
// and a group with one failing unit fails exactly that unit, with its own
// line as the reason.
func TestRunGroupsFastUnitsAndKeepsPerUnitTruth(t *testing.T) {
	units, names := alike(40, 2*time.Millisecond)
	bad := "moonfrp-client-17.service"
	units[bad] = &fakeUnit{opDelay: 2 * time.Millisecond, opExit: 1,
		opStderr: "Job for " + bad + " failed because the control process exited with error code.\n",
		state: systemctl.Properties{"ActiveState": "failed", "SubState": "failed", "Result": "exit-code",
			"ExecStartPre": "{ path=/bin/false ; argv[]=/bin/false ; ignore_errors=no ; code=exited ; status=1 }"}}
	f := newFake(units)
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 10, Verify: true}, Runner: f},
		planOf("restart", names), &collector{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 1 || sum.Succeeded != 39 {
		t.Fatalf("summary %+v", sum)
	}
	grouped := 0
	for _, g := range f.groups {
		if g > 1 {
			grouped++
		}
	}
	if grouped == 0 || len(f.groups) >= 40 {
		t.Errorf("calls %v: fast units were not grouped", f.groups)
	}
	if f.peak > 10 {
		t.Errorf("%d units in flight with -j 10", f.peak)
	}
	for _, r := range sum.Results {
		switch {
		case r.Unit == bad && (r.OK || !strings.HasPrefix(r.Reason, "ExecStartPre /bin/false exited with status 1")):
			t.Errorf("%s: ok=%v reason %q", r.Unit, r.OK, r.Reason)
		case r.Unit != bad && !r.OK:
			t.Errorf("%s failed beside the failing unit of its group: %q", r.Unit, r.Reason)
		}
	}
}

// A group slowed by one of its units sends the run back to one unit per
// call, so that a slow unit does not keep holding its neighbours' slots.
func TestRunSlowGroupGoesBackToOneUnitPerCall(t *testing.T) {
	// On fake time: under load, real time made the groups around the slow
	// one look slow too.
	synctest.Test(t, func(t *testing.T) {
		units, names := alike(300, 5*time.Millisecond)
		units["moonfrp-client-14.service"].opDelay = 300 * time.Millisecond
		f := newFake(units)
		if _, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 4}, Runner: f}, planOf("restart", names), &collector{}); err != nil {
			t.Fatal(err)
		}
		// Find the call that carried the slow unit; it was a group. The calls
		// that began after it returned carry one unit each, for a while.
		slow := -1
		for i, g := range f.groups {
			if g > 1 && containsUnit(f.groupUnits[i], "moonfrp-client-14.service") {
				slow = i
			}
		}
		if slow < 0 {
			t.Fatalf("calls %v: the slow unit never shared a call", f.groups)
		}
		after := f.startedAfter(slow)
		if len(after) < 5 {
			t.Fatalf("only %d calls began after the slow group returned", len(after))
		}
		// One group may already have been waiting for its slots; then -j (4)
		// lone calls.
		lone := 0
		for _, g := range after[:5] {
			if g == 1 {
				lone++
			}
		}
		if lone < 4 {
			t.Errorf("calls after the slow group: %v, want 4 of the first 5 with one unit", after)
		}
	})
}

// Units that are slow on their own (here 0.7 s each, four in flight: a
// pace of 175 ms per call) are not grouped: a group would hold every
// slot until its slowest unit is done, and saves the manager little.
func TestRunSlowUnitsGoOneByOne(t *testing.T) {
	units, names := alike(12, 700*time.Millisecond)
	f := newFake(units)
	if _, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 4}, Runner: f}, planOf("restart", names), &collector{}); err != nil {
		t.Fatal(err)
	}
	for i, g := range f.groups {
		if g != 1 {
			t.Errorf("call %d carried %d units; calls %v", i, g, f.groups)
		}
	}
}

// How many units a call carries follows what the units' stamps say they
// take: units that stop in milliseconds share calls of all of -j; units
// that take 300 ms, as fast by pace, share calls of half of -j.
func TestRunGroupSizeFollowsTheUnitsOwnTime(t *testing.T) {
	tests := []struct {
		name    string
		delay   time.Duration
		biggest int
	}{
		{"instant units: calls of all of -j", 2 * time.Millisecond, 6},
		{"300 ms units: calls of half of -j", 300 * time.Millisecond, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			units, names := alike(60, tc.delay)
			f := newFake(units)
			if _, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 6}, Runner: f}, planOf("restart", names), &collector{}); err != nil {
				t.Fatal(err)
			}
			if got := slices.Max(f.groups); got != tc.biggest {
				t.Errorf("the biggest call carried %d units, want %d; calls %v", got, tc.biggest, f.groups)
			}
			if f.peak > 6 {
				t.Errorf("%d units in flight at -j 6", f.peak)
			}
		})
	}
}

func containsUnit(list []string, u string) bool {
	for _, x := range list {
		if x == u {
			return true
		}
	}
	return false
}

// A group that hangs: on timeout only the hung unit's job is cancelled
// (not its neighbours', nor other units'); the neighbours in its call are
// timed out too, since the call may never have queued their jobs, and say
// so; units in other calls are untouched.
func TestRunGroupTimeoutCancelsOnlyTheUnfinished(t *testing.T) {
	units := map[string]*fakeUnit{}
	var names []string
	for i := 0; i < 30; i++ {
		n := fmt.Sprintf("moonfrp-client-%d.service", i)
		if i == 25 { // after the first -j lone calls
			n = "moonfrp-client-hang.service"
			units[n] = &fakeUnit{hang: true}
		} else {
			units[n] = &fakeUnit{opDelay: time.Millisecond}
		}
		names = append(names, n)
	}
	f := newFake(units)
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "start", MaxParallel: 8, Timeout: 300 * time.Millisecond}, Runner: f},
		planOf("start", names), &collector{})
	if err != nil {
		t.Fatal(err)
	}
	var call []string
	for _, g := range f.groupUnits {
		if containsUnit(g, "moonfrp-client-hang.service") {
			call = g
		}
	}
	if len(call) < 2 {
		t.Fatalf("calls %v: the hung unit never shared a call", f.groupUnits)
	}
	for _, r := range sum.Results {
		inCall := containsUnit(call, r.Unit)
		switch {
		case inCall != r.TimedOut:
			t.Errorf("%s: timed out %v, in the hung call %v", r.Unit, r.TimedOut, inCall)
		case inCall && r.Unit != "moonfrp-client-hang.service" && !strings.Contains(r.Reason, "no job of its own was left"):
			t.Errorf("%s: reason %q", r.Unit, r.Reason)
		case r.Unit == "moonfrp-client-hang.service" && !strings.Contains(r.Reason, "its systemd job was cancelled"):
			t.Errorf("%s: reason %q", r.Unit, r.Reason)
		}
	}
	if !reflect.DeepEqual(f.cancelled, []string{"7"}) {
		t.Errorf("cancelled jobs %v, want only the hung unit's (7)", f.cancelled)
	}
}

func TestUnitLinesMatchWholeNames(t *testing.T) {
	stderr := []byte("Job for a-moonfrp-client-1.service failed because the control process exited with error code.\n" +
		"Failed to restart moonfrp-client-1.service: Unit moonfrp-client-1.service not found.\n" +
		"See \"systemctl status moonfrp-client-10.service\" for details.\n" +
		"Warning: The unit file, source configuration file or drop-ins of moonfrp-client-3.service changed on disk. Run 'systemctl daemon-reload' to reload units.\n" +
		"Failed to reload moonfrp-client-4.service: Job type reload is not applicable for unit moonfrp-client-4.service.\n")
	got := unitLines(stderr, []string{"moonfrp-client-1.service", "a-moonfrp-client-1.service", "moonfrp-client-10.service",
		"moonfrp-client-3.service", "moonfrp-client-4.service"})
	if len(got["moonfrp-client-3.service"]) != 0 {
		t.Errorf("a warning counted as a failure: %q", got["moonfrp-client-3.service"])
	}
	if len(got["moonfrp-client-4.service"]) != 1 {
		t.Errorf("a name followed by ':' or '.' was missed: %q", got)
	}
	if len(got["moonfrp-client-1.service"]) != 1 || !strings.HasPrefix(got["moonfrp-client-1.service"][0], "Failed to restart moonfrp-client-1.service") {
		t.Errorf("moonfrp-client-1: %q", got["moonfrp-client-1.service"])
	}
	if len(got["a-moonfrp-client-1.service"]) != 1 || len(got["moonfrp-client-10.service"]) != 1 {
		t.Errorf("lines %q", got)
	}
}

// clients names n clients, the first bad of them broken (their operation
// fails), in plan order.
// alike returns n units moonfrp-client-0 ... whose operations take delay.
func alike(n int, delay time.Duration) (map[string]*fakeUnit, []string) {
	units := map[string]*fakeUnit{}
	var names []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("moonfrp-client-%d.service", i)
		units[name] = &fakeUnit{opDelay: delay}
		names = append(names, name)
	}
	return units, names
}

func clients(n, bad int) (map[string]*fakeUnit, []string) {
	units := map[string]*fakeUnit{}
	var names []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("moonfrp-client-%02d.service", i)
		u := &fakeUnit{opDelay: 5 * time.Millisecond}
		if i < bad {
			u.opExit = 1
			u.opStderr = "Job for " + name + " failed because the control process exited with error code.\n"
			u.state = systemctl.Properties{"ActiveState": "failed", "SubState": "failed", "Result": "exit-code"}
		}
		units[name] = u
		names = append(names, name)
	}
	return units, names
}

func launched(f *fakeManager) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, g := range f.groups {
		n += g
	}
	return n
}

// A unit whose config the preflight refused is never touched: its result
// is frp's words, decided at the preflight, and nothing else is added.
func TestRunLeavesARefusedUnitAsItWas(t *testing.T) {
	units, names := clients(3, 0)
	f := newFake(units)
	refused := names[1]
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 3, Verify: true},
		Runner: f, Refused: map[string]string{refused: "toml: line 2: expected '='"}}, planOf("restart", names), &collector{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range f.groupUnits {
		if slices.Contains(g, refused) {
			t.Errorf("the refused unit was in the call %v", g)
		}
	}
	want := "left running: config invalid: toml: line 2: expected '='"
	for _, r := range sum.Results {
		switch {
		case r.Unit != refused:
			if !r.OK || r.Stage != StageNone {
				t.Errorf("%s: ok %v, stage %v", r.Unit, r.OK, r.Stage)
			}
		case r.OK || r.Stage != StagePreflight || r.Reason != want || r.Detail != want:
			t.Errorf("refused unit: ok %v, stage %v, reason %q, detail %q", r.OK, r.Stage, r.Reason, r.Detail)
		}
	}
}

func TestRunHaltsAtTheFailureLimit(t *testing.T) {
	units, names := clients(40, 5)
	f := newFake(units)
	obs := &collector{}
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 2, MaxFail: 2, Verify: true}, Runner: f}, planOf("restart", names), obs)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Halted != "failure limit of 2 reached" || sum.Failed < 2 {
		t.Errorf("halted %q with %d failed, want a halt after at least 2 failures", sum.Halted, sum.Failed)
	}
	// Only what was in flight when the second failure was decided may
	// still have run: nowhere near the 40 units.
	if n := launched(f); n > 10 || sum.NotStarted != 40-n || sum.Interrupted {
		t.Errorf("launched %d, %d not started, interrupted %v: want a halt, not an interruption, with the rest not started", n, sum.NotStarted, sum.Interrupted)
	}
	if len(obs.finished) != 40 {
		t.Errorf("%d units finished, want every unit accounted for", len(obs.finished))
	}
	for _, r := range sum.Results {
		if r.NotStarted && (r.Reason != "not started: "+sum.Halted || r.Stage != StageNotStarted || r.Detail != "") {
			t.Errorf("%s: reason %q, stage %v, detail %q", r.Unit, r.Reason, r.Stage, r.Detail)
		}
	}
}

// Units whose operation succeeds but that crash in the settle window count
// towards the limit before anything else is launched: with a limit, a
// unit holds its slot until it is decided.
func TestRunFailureLimitCountsVerificationFailures(t *testing.T) {
	crashed := systemctl.Properties{"ActiveState": "activating", "SubState": "auto-restart", "Result": "exit-code",
		"NRestarts": "1", "ExecMainCode": "1", "ExecMainStatus": "1", "InvocationID": "2"}
	units, names := clients(30, 0)
	for _, u := range units {
		u.settled = crashed
	}
	f := newFake(units)
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 2, MaxFail: 1, Verify: true, Settle: 30 * time.Millisecond}, Runner: f}, planOf("restart", names), &collector{})
	if err != nil {
		t.Fatal(err)
	}
	if n := launched(f); n > 2 || sum.Halted != "failure limit of 1 reached" || sum.NotStarted != 30-n {
		t.Errorf("launched %d, summary %+v: want a halt once the first unit was seen crashing, with at most the 2 slots' worth launched", n, sum)
	}
}

// A lost manager stops the run on its own: its failures are no brake's,
// and the summary says the manager was lost, not that the run halted.
func TestRunLostManagerIsNotAHalt(t *testing.T) {
	units, names := clients(20, 0)
	for _, n := range names[2:] {
		units[n].opExit = 1
		units[n].opStderr = "Failed to connect to bus: Connection refused\n"
	}
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 1, MaxFail: 1, Verify: true}, Runner: newFake(units)}, planOf("restart", names), &collector{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Lost == "" || sum.Halted != "" || sum.Interrupted {
		t.Errorf("summary %+v: want the manager lost, not a halt or an interruption", sum)
	}
}

// A limit that the last units reach holds nothing back: no halt to report.
func TestRunFailureLimitReachedAtTheEndHaltsNothing(t *testing.T) {
	units, names := clients(3, 3)
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 3, MaxFail: 3, Verify: true}, Runner: newFake(units)}, planOf("restart", names), &collector{})
	if err != nil || sum.Failed != 3 || sum.Halted != "" || sum.NotStarted != 0 {
		t.Errorf("summary %+v, %v: want 3 failed and no halt", sum, err)
	}
}

func TestRunCanaryGoesFirstAndHoldsThePhaseBackWhenItFails(t *testing.T) {
	t.Run("passes", func(t *testing.T) {
		units, names := clients(10, 0)
		f := newFake(units)
		sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 10, Canary: 2, Verify: true, Settle: 20 * time.Millisecond}, Runner: f}, planOf("restart", names), &collector{})
		if err != nil || sum.Succeeded != 10 {
			t.Fatalf("summary %+v, %v", sum, err)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		// Every call with a canary ends before any other call starts.
		canary := map[int]bool{}
		for i, us := range f.groupUnits {
			for _, u := range us {
				if u == names[0] || u == names[1] {
					canary[i+1] = true
				} else if canary[i+1] {
					t.Fatalf("call %d mixes canaries with the rest: %v", i+1, us)
				}
			}
		}
		pending := len(canary)
		for _, e := range f.events {
			switch {
			case e < 0 && canary[-e]:
				pending--
			case e > 0 && !canary[e] && pending > 0:
				t.Fatalf("call %d (%v) started before the canaries ended; events %v", e, f.groupUnits[e-1], f.events)
			}
		}
	})
	t.Run("fails", func(t *testing.T) {
		units, names := clients(10, 1)
		f := newFake(units)
		sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 10, Canary: 2, Verify: true, Settle: 20 * time.Millisecond}, Runner: f}, planOf("restart", names), &collector{})
		if err != nil {
			t.Fatal(err)
		}
		want := "canary moonfrp-client-00 failed"
		if sum.Halted != want || sum.Failed != 1 || sum.Succeeded != 1 || sum.NotStarted != 8 || launched(f) != 2 {
			t.Errorf("summary %+v, %d launched; want halted %q after the 2 canaries", sum, launched(f), want)
		}
	})
}

// heldPlan is a restart of a server, two clients of it (held) and one
// other unit.
func heldPlan() (discover.Plan, map[string]*fakeUnit) {
	units := map[string]*fakeUnit{}
	for _, n := range []string{"moonfrp-server.service", "moonfrp-client-1.service", "moonfrp-client-2.service", "other.service"} {
		units[n] = &fakeUnit{}
	}
	return discover.Plan{Operation: "restart", Phases: []discover.Phase{
		{Number: 1, Name: "server", Units: []string{"moonfrp-server.service"}},
		{Number: 2, Name: "held", Units: []string{"moonfrp-client-1.service", "moonfrp-client-2.service"}, Held: true},
		{Number: 3, Name: "rest", Units: []string{"other.service"}},
	}}, units
}

// opCalls returns the unit operations a fake manager saw, in order, one
// "verb unit" a unit; units of one call are sorted.
func opCalls(f *fakeManager) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		switch c[0] {
		case "stop", "start", "restart":
			names := append([]string(nil), c[2:]...)
			sort.Strings(names)
			for _, n := range names {
				out = append(out, c[0]+" "+n)
			}
		}
	}
	return out
}

// sortedRuns sorts each run of consecutive calls with the same verb: the
// order of units within a phase is the pool's business.
func sortedRuns(calls []string) []string {
	out := append([]string(nil), calls...)
	for lo := 0; lo < len(out); {
		hi := lo
		verb := strings.Fields(out[lo])[0]
		for hi < len(out) && strings.Fields(out[hi])[0] == verb {
			hi++
		}
		sort.Strings(out[lo:hi])
		lo = hi
	}
	return out
}

// The clients of a restarted server are stopped before it and started
// after it; the other units are restarted as usual.
func TestRunHeldClientsAreStoppedBeforeTheServer(t *testing.T) {
	plan, units := heldPlan()
	f := newFake(units)
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 10}, Runner: f}, plan, &collector{})
	if err != nil || sum.Succeeded != 4 {
		t.Fatalf("summary %+v, %v", sum, err)
	}
	want := []string{"stop moonfrp-client-1.service", "stop moonfrp-client-2.service", "restart moonfrp-server.service",
		"start moonfrp-client-1.service", "start moonfrp-client-2.service", "restart other.service"}
	if got := sortedRuns(opCalls(f)); strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("calls %q, want %q", got, want)
	}
	for _, r := range sum.Results {
		if r.Operation != "restart" {
			t.Errorf("%s: operation %q, want restart", r.Unit, r.Operation)
		}
	}
}

// Once stopped, held clients are started even when the run stops
// launching (the first Ctrl-C) during the server's restart; at a second
// interrupt they are not, and their results say that they were left
// stopped.
func TestRunHeldClientsOutliveADrainButNotACancel(t *testing.T) {
	t.Run("drain", func(t *testing.T) {
		plan, units := heldPlan()
		launch, stop := context.WithCancelCause(context.Background())
		units["moonfrp-server.service"].onOp = func() { stop(ErrInterrupted) }
		f := newFake(units)
		sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 10}, Runner: f, Launch: launch}, plan, &collector{})
		if err != nil {
			t.Fatal(err)
		}
		if !sum.Interrupted || sum.Succeeded != 3 || sum.NotStarted != 1 {
			t.Errorf("summary %+v; want the server and both held clients done, other.service not started", sum)
		}
		if got := sortedRuns(opCalls(f)); len(got) != 5 || got[3] != "start moonfrp-client-1.service" || got[4] != "start moonfrp-client-2.service" {
			t.Errorf("calls %q", got)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		plan, units := heldPlan()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		units["moonfrp-server.service"].onOp = cancel
		sum, err := Run(ctx, Config{Settings: Settings{Operation: "restart", MaxParallel: 10}, Runner: newFake(units)}, plan, &collector{})
		if err != nil {
			t.Fatal(err)
		}
		held := 0
		for _, r := range sum.Results {
			if strings.Contains(r.Reason, "stopped before its server's restart") {
				held++
			}
		}
		if held != 2 {
			t.Errorf("%d results say they were left stopped, want 2: %+v", held, sum.Results)
		}
	})
}

// Journal reads for failed units' reasons run a few at a time, and a
// read that waits its turn past its context's end gives up: the wait
// counts against reasonTimeout, as the read does.
func TestFewAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		running, peak := 0, 0
		release := make(chan struct{})
		read := fewAtOnce(func(context.Context, string, time.Time) []string {
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			<-release
			mu.Lock()
			running--
			mu.Unlock()
			return []string{"a line"}
		}, 2)
		got := make(chan []string, 6)
		for i := 0; i < 5; i++ {
			go func() { got <- read(context.Background(), "u", time.Time{}) }()
		}
		synctest.Wait() // two read, three wait: the late one queues behind them
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		go func() { got <- read(ctx, "late", time.Time{}) }()
		synctest.Wait()
		if peak != 2 {
			t.Fatalf("%d reads at once, want 2", peak)
		}
		time.Sleep(time.Second) // the late read's context ends while it waits
		synctest.Wait()
		if lines := <-got; lines != nil {
			t.Fatalf("a read whose context ended in the queue gave %v, want nothing", lines)
		}
		close(release)
		for i := 0; i < 5; i++ {
			if lines := <-got; len(lines) != 1 {
				t.Errorf("read %d gave %v", i, lines)
			}
		}
		if fewAtOnce(nil, 2) != nil {
			t.Error("no journal must stay no journal")
		}
	})
}
