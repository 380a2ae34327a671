package exec

import (
	"testing"
	"time"
)

// The grouping rule: group where the manager sets the pace, one unit per
// call where the units do, back to one unit per call after a slow group.
func TestSizer(t *testing.T) {
	ms := time.Millisecond
	type call struct {
		d     time.Duration
		k     int
		clean bool
	}
	// wave runs calls as -j does at a run's start: each sized and begun,
	// then all ended.
	wave := func(s *sizer, calls ...call) {
		began := make([]int, len(calls))
		for i := range calls {
			s.next()
			began[i] = s.begin()
		}
		for i, c := range calls {
			s.end(c.d, c.k, began[i], c.clean)
		}
	}
	lone := func(n int, d time.Duration) []call {
		cs := make([]call, n)
		for i := range cs {
			cs[i] = call{d, 1, true}
		}
		return cs
	}
	tests := []struct {
		name  string
		limit int
		waves [][]call
		want  []int // next() answers, in turn
	}{
		{"nothing measured yet: one unit per call", 10, nil, []int{1, 1}},
		{"instant units at -j 10 (350 ms under load): groups of 5", 10,
			[][]call{lone(10, 350*ms)}, []int{5, 5}},
		{"instant units at -j 50 (1.6 s under load): groups of 25", 50,
			[][]call{lone(50, 1600*ms)}, []int{25}},
		{"0.5 s units at -j 10: the manager still sets the pace", 10,
			[][]call{lone(10, 700*ms)}, []int{5}},
		{"2 s units at -j 10: one unit per call", 10,
			[][]call{lone(10, 2100*ms), lone(10, 2100*ms)}, []int{1, 1, 1}},
		{"2 s units at -j 50: the manager is busy again, groups", 50,
			[][]call{lone(50, 2200*ms)}, []int{25}},
		{"a lone call that was cut short teaches nothing", 4,
			[][]call{lone(3, 10*ms), {{10 * ms, 1, false}}}, []int{1}},
		{"one quick restart ending first among 2 s units: no group", 10,
			[][]call{{{450 * ms, 1, true}}}, []int{1}},
		{"a slow group: one unit per call for the next -j calls", 4,
			[][]call{lone(4, 120*ms), {{3 * time.Second, 2, true}}}, []int{1, 1, 1, 1, 2}},
		{"a group as fast as a lone call keeps grouping", 4,
			[][]call{lone(4, 120*ms), {{300 * ms, 2, true}}}, []int{2, 2}},
		{"a few units that restart at once among slow ones: still one unit per call", 10,
			[][]call{lone(10, 2100*ms), {{165 * ms, 1, true}, {450 * ms, 1, true}, {120 * ms, 1, true}, {90 * ms, 1, true}, {2300 * ms, 1, true}}}, []int{1, 1}},
		{"units that turn slow: the cooldown measures them and they stay alone", 10,
			[][]call{lone(10, 350*ms), {{2500 * ms, 5, true}}, lone(10, 2400*ms)}, []int{1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSizer(tc.limit)
			for _, w := range tc.waves {
				wave(s, w...)
			}
			if s.inFlight != 0 {
				t.Fatalf("%d calls still counted in flight", s.inFlight)
			}
			for i, want := range tc.want {
				if got := s.next(); got != want {
					t.Fatalf("answer %d: next() = %d, want %d (lone calls %v)", i, got, want, s.lone)
				}
			}
		})
	}
}
