package exec

import (
	"testing"
	"time"
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

// A group is slow when it takes more than twice what a call of alike
// units takes, plus slowMargin; what a call takes is the median lone
// call, or the median pace times -j after a narrow warm-up.
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := slowGroup(tc.o, tc.took); got != tc.want {
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
