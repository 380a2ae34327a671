package exec

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// lones is n lone calls that each took took with calls in flight.
func lones(n int, took time.Duration, calls int) []loneSample {
	l := make([]loneSample, n)
	for i := range l {
		l[i] = loneSample{took, took / time.Duration(calls)}
	}
	return l
}

// The grouping rule as a table of observations: group where the manager
// sets the pace, one unit per call where the units do, all of -j when
// their stamps say they are quick, the round of lone calls ended before
// the turn to groups, one unit per call during a cooldown.
func TestGroupSize(t *testing.T) {
	ms := time.Millisecond
	quick := []time.Duration{3 * ms, 8 * ms, 2 * ms, 40 * ms, 5 * ms, 6 * ms, 9 * ms, 4 * ms, 3 * ms}
	tests := []struct {
		name string
		o    observed
		want int
	}{
		{"nothing measured yet", observed{limit: 10}, 1},
		{"fewer lone calls than the rule needs", observed{limit: 10, lone: lones(8, 350*ms, 10)}, 1},
		{"at -j 4, four lone calls are enough", observed{limit: 4, lone: lones(4, 120*ms, 4), lones: 4}, 2},
		{"instant units at -j 10 (350 ms a call under load): half of -j", observed{limit: 10, lone: lones(9, 350*ms, 10), lones: 10}, 5},
		{"instant units at -j 50: half of -j", observed{limit: 50, lone: lones(9, 1600*ms, 50), lones: 50}, 25},
		{"0.5 s units at -j 10: the manager still sets the pace", observed{limit: 10, lone: lones(9, 700*ms, 10), lones: 10}, 5},
		{"2 s units at -j 10: one unit per call", observed{limit: 10, lone: lones(9, 2100*ms, 10), lones: 20}, 1},
		{"2 s units at -j 50: the manager is busy again", observed{limit: 50, lone: lones(9, 2200*ms, 50), lones: 50}, 25},
		{"a few quick restarts among slow ones: the upper quartile stays slow",
			observed{limit: 10, lone: append(lones(5, 2100*ms, 10), loneSample{165 * ms, 16 * ms}, loneSample{450 * ms, 45 * ms}, loneSample{120 * ms, 12 * ms}, loneSample{90 * ms, 9 * ms}), lones: 10}, 1},
		{"quick stamps: one call carries all of -j", observed{limit: 10, lone: lones(9, 350*ms, 10), own: quick, lones: 10}, 10},
		{"quick stamps at -j 50: a call of 50", observed{limit: 50, lone: lones(9, 1600*ms, 50), own: quick, lones: 50}, 50},
		{"one slow stamp among quick ones: half", observed{limit: 10, lone: lones(9, 350*ms, 10), own: append(quick[:8:8], 2010*ms), lones: 10}, 5},
		{"0.5 s stamps, as fast by pace: half", observed{limit: 10, lone: lones(9, 350*ms, 10), own: []time.Duration{520 * ms, 30 * ms, 505 * ms}, lones: 10}, 5},
		{"units quick the last time: a call of them from the first, with nothing measured", observed{limit: 10, quickNext: 10}, 10},
		{"three quick ones left at the end of slow units: a call of three", observed{limit: 10, lone: lones(9, 2100*ms, 10), own: []time.Duration{2010 * ms}, lones: 30, quickNext: 3}, 3},
		{"one quick unit next: the pace decides, as for any", observed{limit: 10, lone: lones(9, 2100*ms, 10), lones: 30, quickNext: 1}, 1},
		{"quick the last time, but a group was slow since: calls of one", observed{limit: 10, lone: lones(9, 350*ms, 10), cooldown: 4, quickNext: 10}, 1},
		{"after that cooldown the stamps from before the run are stale: the pace decides", observed{limit: 10, lone: lones(9, 2100*ms, 10), lones: 20, quickNext: 10, stale: true}, 1},
		{"stamps that tell nothing (a reload): half", observed{limit: 10, lone: lones(9, 350*ms, 10), own: []time.Duration{}, lones: 10}, 5},
		{"quick stamps do not overrule a slow pace", observed{limit: 10, lone: lones(9, 2100*ms, 10), own: quick, lones: 10}, 1},
		{"a cooldown after a slow group: one unit per call", observed{limit: 10, lone: lones(9, 350*ms, 10), own: quick, cooldown: 3}, 1},
		{"19 lone calls at -j 10: one more alone, to end the round", observed{limit: 10, lone: lones(9, 700*ms, 10), lones: 19}, 1},
		{"20 lone calls at -j 10: the round is whole", observed{limit: 10, lone: lones(9, 700*ms, 10), lones: 20}, 5},
		{"15 lone calls at -j 10: a group at once, not five more alone", observed{limit: 10, lone: lones(9, 700*ms, 10), lones: 15}, 5},
		{"14 lone calls with quick stamps: six more make a round, fewer than a call of 10", observed{limit: 10, lone: lones(9, 350*ms, 10), own: quick, lones: 14}, 1},
		{"9 lone calls at -j 10: the first round is not ended by force", observed{limit: 10, lone: lones(9, 700*ms, 10), lones: 9}, 5},
		{"59 lone calls at -j 50: never forty more alone", observed{limit: 50, lone: lones(9, 1600*ms, 50), own: quick, lones: 59}, 50},
		{"at -j 3 half is one: calls of one", observed{limit: 3, lone: lones(3, 200*ms, 3), lones: 3}, 1},
		{"at -j 3 with quick stamps: the round is whole, calls of 3", observed{limit: 3, lone: lones(3, 200*ms, 3), own: quick, lones: 3}, 3},
		{"at -j 1: one unit per call", observed{limit: 1, lone: lones(1, 10*ms, 1), own: quick, lones: 1}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := groupSize(tc.o); got != tc.want {
				t.Errorf("groupSize = %d, want %d", got, tc.want)
			}
		})
	}
}

// tens are groups of ten that took took.
func tens(took ...time.Duration) []groupSample {
	g := make([]groupSample, len(took))
	for i, d := range took {
		g[i] = groupSample{d, 10}
	}
	return g
}

// A group is slow when it takes more than twice what a call of alike
// units takes, plus slowMargin; what a call takes is the median lone
// call, or the median pace times -j after a narrow warm-up, or without
// lone calls the median of at least three groups at least as large.
func TestSlowGroup(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		o    observed
		took time.Duration
		want bool
	}{
		{"nothing measured: no group can be judged", observed{limit: 4}, time.Hour, false},
		{"a group as fast as a lone call", observed{limit: 4, lone: lones(4, 120*ms, 4)}, 300 * ms, false},
		{"just under the bound", observed{limit: 4, lone: lones(4, 120*ms, 4)}, 340 * ms, false},
		{"just over the bound", observed{limit: 4, lone: lones(4, 120*ms, 4)}, 341 * ms, true},
		{"-j 50 after a warm-up of ten: a group of 50 at that pace", observed{limit: 50, lone: lones(9, 350*ms, 10)}, 1800 * ms, false},
		{"-j 50 after a warm-up of ten: far slower than that pace", observed{limit: 50, lone: lones(9, 350*ms, 10)}, 9 * time.Second, true},
		{"groups from the first call: one like the others", observed{limit: 10, groups: tens(300*ms, 280*ms, 350*ms)}, 700 * ms, false},
		{"groups from the first call: one far slower than the others", observed{limit: 10, groups: tens(300*ms, 280*ms, 350*ms)}, 701 * ms, true},
		{"two groups are no measure", observed{limit: 10, groups: tens(300*ms, 280*ms)}, time.Hour, false},
		{"smaller groups are no measure of a larger one", observed{limit: 10, groups: []groupSample{{100 * ms, 2}, {100 * ms, 2}, {100 * ms, 2}, {300 * ms, 10}}}, time.Second, false},
		{"larger groups are a measure of a smaller one", observed{limit: 10, groups: []groupSample{{100 * ms, 10}, {100 * ms, 10}, {100 * ms, 10}}}, time.Second, true},
		{"lone calls, where there are some, judge a group", observed{limit: 4, lone: lones(4, 120*ms, 4), groups: tens(5*time.Second, 5*time.Second, 5*time.Second)}, 341 * ms, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A group of five, judged against the others.
			if got := slowGroup(tc.o, tc.took, 5); got != tc.want {
				t.Errorf("slowGroup(%s) = %v, want %v (expected %s)", tc.took, got, tc.want, tc.o.expected())
			}
		})
	}
}

// Stamps are read only once grouping would start: not before the pace is
// known, not while it says the units are slow, not during a cooldown.
func TestWantStamps(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		o    observed
		want bool
	}{
		{"pace not known", observed{limit: 10, lone: lones(3, 350*ms, 10)}, false},
		{"the manager sets the pace", observed{limit: 10, lone: lones(9, 350*ms, 10)}, true},
		{"the units set it", observed{limit: 10, lone: lones(9, 2100*ms, 10)}, false},
		{"cooldown", observed{limit: 10, lone: lones(9, 350*ms, 10), cooldown: 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := wantStamps(tc.o); got != tc.want {
				t.Errorf("wantStamps = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLastOwn(t *testing.T) {
	// Stamps in µs: stopped 1.0-1.5 s, started 2.0-2.1 s.
	both := systemctl.Properties{"ActiveExitTimestampMonotonic": "1000000", "InactiveEnterTimestampMonotonic": "1500000",
		"InactiveExitTimestampMonotonic": "2000000", "ActiveEnterTimestampMonotonic": "2100000"}
	startOnly := systemctl.Properties{"ActiveExitTimestampMonotonic": "0", "InactiveEnterTimestampMonotonic": "0",
		"InactiveExitTimestampMonotonic": "2000000", "ActiveEnterTimestampMonotonic": "2100000"}
	tests := []struct {
		name  string
		p     systemctl.Properties
		op    string
		want  time.Duration
		known bool
	}{
		{"restart: stop and start", both, "restart", 600 * time.Millisecond, true},
		{"stop: the stop only", both, "stop", 500 * time.Millisecond, true},
		{"start: the start only", both, "start", 100 * time.Millisecond, true},
		{"never stopped: a restart's time is unknown", startOnly, "restart", 0, false},
		{"never stopped: its start is known", startOnly, "start", 100 * time.Millisecond, true},
		{"reload: never known", both, "reload", 0, false},
		{"no stamps", systemctl.Properties{}, "restart", 0, false},
		{"stamps out of order", systemctl.Properties{"ActiveExitTimestampMonotonic": "5", "InactiveEnterTimestampMonotonic": "4"}, "stop", 0, false},
	}
	for _, tt := range tests {
		got, known := lastOwn(tt.p, tt.op)
		if known != tt.known || (known && got != tt.want) {
			t.Errorf("%s: %v %v, want %v %v", tt.name, got, known, tt.want, tt.known)
		}
	}
}

func TestLongestFirst(t *testing.T) {
	const unknown = -1
	tests := []struct {
		name string
		last []time.Duration // unknown: no stamps
		want []int           // the units' plan positions, in launch order
	}{
		{"nothing known: the plan's order", []time.Duration{unknown, unknown, unknown}, []int{0, 1, 2}},
		{"longest first", []time.Duration{0, 500 * time.Millisecond, 10 * time.Millisecond}, []int{1, 2, 0}},
		{"alike keep the plan's order", []time.Duration{5, 5, 5, 5}, []int{0, 1, 2, 3}},
		{"unknown first, as possibly slow", []time.Duration{0, unknown, 500 * time.Millisecond, unknown}, []int{1, 3, 2, 0}},
	}
	for _, tt := range tests {
		var batch []*unitRun
		for i, d := range tt.last {
			batch = append(batch, &unitRun{res: Result{Index: i}, last: d, lastKnown: d != unknown})
		}
		longestFirst(batch)
		var got []int
		for _, u := range batch {
			got = append(got, u.res.Index)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// stamped makes running units whose last stop and start, as systemd
// stamped them, took stop[i] and start[i].
func stamped(stop, start []time.Duration) (map[string]*fakeUnit, []string) {
	units := map[string]*fakeUnit{}
	var names []string
	for i := range stop {
		name := fmt.Sprintf("moonfrp-client-%d.service", i)
		at := uint64(1_000_000 * (i + 1))
		units[name] = &fakeUnit{state: systemctl.Properties{"ActiveState": "active", "SubState": "running",
			"ActiveExitTimestampMonotonic": fmt.Sprint(at), "InactiveEnterTimestampMonotonic": fmt.Sprint(at + uint64(stop[i].Microseconds())),
			"InactiveExitTimestampMonotonic": fmt.Sprint(at + 900_000), "ActiveEnterTimestampMonotonic": fmt.Sprint(at + 900_000 + uint64(start[i].Microseconds()))}}
		names = append(names, name)
	}
	return units, names
}

// A run launches a phase longest first, by the times systemd stamped on
// each unit's last restart, and keeps the plan's order where it has no
// stamps: the quick units end up together at the end, not each holding a
// slot in a group that waits for a slow one.
func TestRunLaunchesTheLongestFirst(t *testing.T) {
	took := []time.Duration{0, 500 * time.Millisecond, 20 * time.Millisecond, 300 * time.Millisecond}
	units, names := stamped(took, make([]time.Duration, len(took)))
	f := newFake(units)
	sum, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 1}, Runner: f}, planOf("restart", names), &collector{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{names[1], names[3], names[2], names[0]}
	if !slices.Equal(f.order, want) {
		t.Errorf("launched %v, want the longest first %v", f.order, want)
	}
	for i, r := range sum.Results {
		if r.Unit != names[i] {
			t.Errorf("result %d is %s: results keep the plan's order", i, r.Unit)
		}
	}
	// With a canary the plan's first units go first, whatever they took.
	f = newFake(units)
	if _, err := Run(context.Background(), Config{Settings: Settings{Operation: "restart", MaxParallel: 1, Canary: 1}, Runner: f}, planOf("restart", names), &collector{}); err != nil {
		t.Fatal(err)
	}
	if f.order[0] != names[0] {
		t.Errorf("launched %v: the canary must be the plan's first unit", f.order)
	}
}

func TestQuickAhead(t *testing.T) {
	quick := &unitRun{last: 20 * time.Millisecond, lastKnown: true}
	edge := &unitRun{last: quickOwn, lastKnown: true}
	slow := &unitRun{last: 500 * time.Millisecond, lastKnown: true}
	unknown := &unitRun{}
	for _, c := range []struct {
		name  string
		batch []*unitRun
		limit int
		want  int
	}{
		{"nothing left", nil, 10, 0},
		{"quick ones up to a slow one", []*unitRun{quick, edge, quick, slow, quick}, 10, 3},
		{"no more than -j", []*unitRun{quick, quick, quick, quick}, 3, 3},
		{"a slow one first", []*unitRun{slow, quick, quick}, 10, 0},
		{"no stamps first: nothing is known", []*unitRun{unknown, quick}, 10, 0},
		{"quick ones up to one without stamps", []*unitRun{quick, quick, unknown}, 10, 2},
	} {
		if got := quickAhead(c.batch, c.limit); got != c.want {
			t.Errorf("%s: quickAhead = %d, want %d", c.name, got, c.want)
		}
	}
}

// Units that were quick the last time share a call from the first,
// without a pace measured: the slow ones (by their stamps) go alone
// first, longest first, and the quick ones end the phase in one call.
func TestRunGroupsUnitsQuickTheLastTime(t *testing.T) {
	ms := time.Millisecond
	stopTook := []time.Duration{20 * ms, 500 * ms, 10 * ms, 600 * ms, 30 * ms, 5 * ms, 700 * ms}
	startTook := []time.Duration{400 * ms, 0, 0, 0, 0, 0, 0} // the first is quick to stop, slow to restart
	units, names := stamped(stopTook, startTook)
	for _, c := range []struct {
		op   string
		took func(i int) time.Duration
	}{
		{"restart", func(i int) time.Duration { return stopTook[i] + startTook[i] }},
		{"stop", func(i int) time.Duration { return stopTook[i] }}, // its own stamps alone
	} {
		quick := 0
		for i := range names {
			if c.took(i) <= quickOwn {
				quick++
			}
		}
		sum, err := Run(context.Background(), Config{Settings: Settings{Operation: c.op, MaxParallel: 4}, Runner: newFake(units)}, planOf(c.op, names), &collector{})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range sum.Results {
			want := 1
			if c.took(i) <= quickOwn {
				want = quick
			}
			if max(r.GroupSize, 1) != want {
				t.Errorf("%s: %s (took %s the last time) went in a call of %d, want %d", c.op, r.Unit, c.took(i), r.GroupSize, want)
			}
		}
	}
}

func TestLaunchGap(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		name  string
		u     unitRun
		limit int
		want  time.Duration
	}{
		{"0.5 s units at -j 10: their time over -j", unitRun{last: 500 * ms, lastKnown: true}, 10, 50 * ms},
		{"0.3 s units at -j 10", unitRun{last: 300 * ms, lastKnown: true}, 10, 30 * ms},
		{"2 s units at -j 10: at most maxGap", unitRun{last: 2 * time.Second, lastKnown: true}, 10, maxGap},
		{"0.5 s units at -j 50", unitRun{last: 500 * ms, lastKnown: true}, 50, 10 * ms},
		{"quick units: none", unitRun{last: quickOwn, lastKnown: true}, 10, 0},
		{"no stamps: none", unitRun{}, 10, 0},
		{"at -j 1 nothing is launched together", unitRun{last: 500 * ms, lastKnown: true}, 1, 0},
	} {
		if got := launchGap(&c.u, c.limit); got != c.want {
			t.Errorf("%s: launchGap = %s, want %s", c.name, got, c.want)
		}
	}
}
