package exec

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// call is one systemctl call in a sizer test: how long it took, its units,
// and whether it ran to its end.
type call struct {
	d     time.Duration
	k     int
	clean bool
}

// wave runs calls as -j does at a run's start: each sized and begun, then
// all ended. It returns next()'s answers. (A done context: the warm-up's
// wait for calls to end is TestSizerWarmUp's.)
func wave(s *sizer, calls ...call) []int {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	answers := make([]int, len(calls))
	began := make([]int, len(calls))
	for i := range calls {
		answers[i] = s.next(done, 0)
		began[i] = s.begin()
	}
	for i, c := range calls {
		s.end(c.d, c.k, began[i], c.clean)
	}
	return answers
}

// lone is n lone calls that took d each.
func lone(n int, d time.Duration) []call {
	cs := make([]call, n)
	for i := range cs {
		cs[i] = call{d, 1, true}
	}
	return cs
}

// The grouping rule: group where the manager sets the pace, one unit per
// call where the units do, back to one unit per call after a slow group.
func TestSizer(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name  string
		limit int
		waves [][]call
		own   []time.Duration // the units' own times, from their stamps
		want  []int           // next() answers, in turn
	}{
		{"nothing measured yet: one unit per call", 10, nil, nil, []int{1, 1}},
		{"instant units at -j 10 (350 ms under load): groups of 5", 10,
			[][]call{lone(10, 350*ms)}, nil, []int{5, 5}},
		{"instant units at -j 50 (1.6 s under load): groups of 25", 50,
			[][]call{lone(50, 1600*ms)}, nil, []int{25}},
		{"0.5 s units at -j 10: the manager still sets the pace", 10,
			[][]call{lone(10, 700*ms)}, nil, []int{5}},
		{"2 s units at -j 10: one unit per call", 10,
			[][]call{lone(10, 2100*ms), lone(10, 2100*ms)}, nil, []int{1, 1, 1}},
		{"2 s units at -j 50: the manager is busy again, groups", 50,
			[][]call{lone(50, 2200*ms)}, nil, []int{25}},
		{"a lone call that was cut short teaches nothing", 4,
			[][]call{lone(3, 10*ms), {{10 * ms, 1, false}}}, nil, []int{1}},
		{"one quick restart ending first among 2 s units: no group", 10,
			[][]call{{{450 * ms, 1, true}}}, nil, []int{1}},
		{"a slow group: one unit per call for the next -j calls", 4,
			[][]call{lone(4, 120*ms), {{3 * time.Second, 2, true}}}, nil, []int{1, 1, 1, 1, 2}},
		{"a group as fast as a lone call keeps grouping", 4,
			[][]call{lone(4, 120*ms), {{300 * ms, 2, true}}}, nil, []int{2, 2}},
		{"a few units that restart at once among slow ones: still one unit per call", 10,
			[][]call{lone(10, 2100*ms), {{165 * ms, 1, true}, {450 * ms, 1, true}, {120 * ms, 1, true}, {90 * ms, 1, true}, {2300 * ms, 1, true}}}, nil, []int{1, 1}},
		{"instant units whose stamps say they take a few ms: one call carries all of -j", 10,
			[][]call{lone(10, 350*ms)}, []time.Duration{3 * ms, 8 * ms, 2 * ms, 40 * ms, 5 * ms, 6 * ms, 9 * ms, 4 * ms, 3 * ms}, []int{10, 10}},
		{"instant units at -j 50: one call of 50", 50,
			[][]call{lone(50, 1600*ms)}, []time.Duration{3 * ms, 8 * ms, 2 * ms, 40 * ms, 5 * ms, 6 * ms, 9 * ms, 4 * ms, 3 * ms}, []int{50}},
		{"2 s units after a run of quick restarts: one slow stamp keeps groups at half", 10,
			[][]call{lone(10, 350*ms)}, []time.Duration{3 * ms, 8 * ms, 2 * ms, 4 * ms, 5 * ms, 6 * ms, 9 * ms, 4 * ms, 2010 * ms}, []int{5}},
		{"0.5 s units, as fast by pace: their stamps keep groups at half", 10,
			[][]call{lone(10, 350*ms)}, []time.Duration{520 * ms, 510 * ms, 30 * ms, 505 * ms, 540 * ms, 515 * ms, 20 * ms, 500 * ms, 530 * ms}, []int{5, 5}},
		{"-j 50 after a warm-up of ten calls: a group of 50 at that pace is not slow", 50,
			[][]call{lone(10, 350*ms), {{1800 * ms, 50, true}}}, []time.Duration{3 * ms}, []int{50}},
		{"-j 50 after a warm-up of ten calls: a group far slower than that pace is", 50,
			[][]call{lone(10, 350*ms), {{9 * time.Second, 50, true}}}, nil, []int{1}},
		{"stamps that tell nothing (a reload): half", 10,
			[][]call{lone(10, 350*ms)}, []time.Duration{}, []int{5}},
		{"quick stamps do not overrule a slow pace", 10,
			[][]call{lone(10, 2100*ms)}, []time.Duration{3 * ms}, []int{1}},
		{"the turn to groups after 19 lone calls at -j 10: one more alone, to end the round", 10,
			[][]call{lone(19, 700*ms)}, nil, []int{1, 5, 5}},
		{"the turn after 17 lone calls at -j 10: three more alone", 10,
			[][]call{lone(17, 700*ms)}, nil, []int{1, 1, 1, 5}},
		{"the turn after 15 lone calls at -j 10: a group at once, not five more alone", 10,
			[][]call{lone(15, 700*ms)}, nil, []int{5, 5}},
		{"the turn with quick stamps at -j 10: the round is ended all the same", 10,
			[][]call{lone(18, 350*ms)}, []time.Duration{3 * ms}, []int{1, 1, 10}},
		{"the turn at -j 50 after its warm-up: most slots never had a call, groups at once", 50,
			[][]call{lone(19, 1600*ms)}, []time.Duration{3 * ms}, []int{50}},
		{"units that turn slow: the cooldown measures them and they stay alone", 10,
			[][]call{lone(10, 350*ms), {{2500 * ms, 5, true}}, lone(10, 2400*ms)}, nil, []int{1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSizer(tc.limit)
			for _, w := range tc.waves {
				wave(s, w...)
			}
			if tc.own != nil {
				s.owned(s.gen, tc.own)
			}
			if s.inFlight != 0 {
				t.Fatalf("%d calls still counted in flight", s.inFlight)
			}
			for i, want := range tc.want {
				if got := s.next(context.Background(), 0); got != want {
					t.Fatalf("answer %d: next() = %d, want %d (lone calls %v)", i, got, want, s.obs.lone)
				}
			}
		})
	}
}

// The units of the lone calls that start grouping are handed out once for
// their stamps to be read, not before grouping would start, and again
// after a slow group sent the run back to lone calls; a read handed out
// before that reset is dropped, and failed lone calls neither join the
// read nor hold it back.
func TestSizerProbesOnce(t *testing.T) {
	ms := time.Millisecond
	s := newSizer(4)
	lone := func(name string, ok bool) ([]probeUnit, int) {
		s.next(context.Background(), 0)
		calls := s.begin()
		s.end(120*ms, 1, calls, true)
		return s.loneUnit(name, 7, ok)
	}
	for i := 0; i < 3; i++ {
		if p, _ := lone(fmt.Sprint("u", i), true); p != nil {
			t.Fatalf("lone call %d handed out %v before grouping would start", i, p)
		}
	}
	p, gen := lone("u3", true)
	if len(p) != 4 || p[0].name != "u0" || p[3].name != "u3" || p[3].since != 7 {
		t.Fatalf("the fourth lone call handed out %v, want u0..u3", p)
	}
	if p, _ := lone("u4", true); p != nil {
		t.Fatalf("handed out again: %v", p)
	}
	s.owned(gen, []time.Duration{2 * ms, 3 * ms, 2 * ms, 4 * ms})
	if k := s.next(context.Background(), 0); k != 4 {
		t.Fatalf("quick units: next() = %d, want 4", k)
	}
	calls := s.begin()
	s.end(3*time.Second, 4, calls, true) // a slow group
	if len(s.obs.own) != 0 {
		t.Fatalf("a slow group kept the old stamps %v", s.obs.own)
	}
	s.owned(gen, []time.Duration{2 * ms}) // a read begun before the reset
	if len(s.obs.own) != 0 {
		t.Fatalf("a read from before the slow group was taken: %v", s.obs.own)
	}
	var again []probeUnit
	for i := 0; i < 4 && again == nil; i++ {
		// The first of them fails: it is not read, and the read still
		// comes once grouping would start.
		again, gen = lone(fmt.Sprint("v", i), i > 0)
	}
	if len(again) != 3 || again[0].name != "v1" || again[2].name != "v3" {
		t.Fatalf("after the cooldown handed out %v, want v1..v3", again)
	}
	s.owned(gen, []time.Duration{2 * ms})
	if k := s.next(context.Background(), 0); k != 4 {
		t.Fatalf("the new read was dropped: next() = %d, want 4", k)
	}
}

// A unit's own time counts only its stop and start that began after the
// call, not the manager's queueing before them.
func TestOwnTime(t *testing.T) {
	const since = 1_000_000
	tests := []struct {
		name   string
		stamps [4]uint64 // ActiveExit, InactiveEnter, InactiveExit, ActiveEnter
		want   time.Duration
		ok     bool
	}{
		{"restart: stop and start", [4]uint64{1_200_000, 1_205_000, 1_205_100, 1_206_100}, 6 * time.Millisecond, true},
		{"slow stop", [4]uint64{1_200_000, 1_700_000, 1_700_100, 1_701_000}, 500*time.Millisecond + 900*time.Microsecond, true},
		{"start only: the stop was before the call", [4]uint64{10, 20, 1_000_500, 1_002_500}, 2 * time.Millisecond, true},
		{"stop only", [4]uint64{1_000_000, 1_030_000, 5, 6}, 30 * time.Millisecond, true},
		{"nothing since the call (a reload)", [4]uint64{10, 20, 30, 40}, 0, false},
		{"still stopping: no end yet", [4]uint64{1_200_000, 0, 30, 40}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := systemctl.Properties{
				"ActiveExitTimestampMonotonic":    fmt.Sprint(tc.stamps[0]),
				"InactiveEnterTimestampMonotonic": fmt.Sprint(tc.stamps[1]),
				"InactiveExitTimestampMonotonic":  fmt.Sprint(tc.stamps[2]),
				"ActiveEnterTimestampMonotonic":   fmt.Sprint(tc.stamps[3]),
			}
			got, ok := ownTime(p, since)
			if got != tc.want || ok != tc.ok {
				t.Errorf("ownTime = %s, %v; want %s, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// Until the pace is known, a wide -j launches at most warmCalls lone
// calls; the next waits for one to end, for warmWait, or for the end of
// launching. On fake time: the rule is about time, and load must not
// fail it.
func TestSizerWarmUp(t *testing.T) {
	inFlight := func(n int) *sizer {
		s := newSizer(50)
		for i := 0; i < n; i++ {
			s.begin()
		}
		return s
	}
	// waits starts s.next and reports when it returns, and how long it
	// took; every goroutine of the bubble is then blocked.
	waits := func(ctx context.Context, s *sizer) (<-chan int, func() time.Duration) {
		got := make(chan int, 1)
		start := time.Now()
		var took time.Duration
		go func() {
			k := s.next(ctx, 0)
			took = time.Since(start)
			got <- k
		}()
		synctest.Wait()
		return got, func() time.Duration { return took }
	}
	t.Run("it waits out warmWait from when the cap first held", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := inFlight(warmCalls)
			s.capped = time.Now().Add(-warmWait + 150*time.Millisecond)
			got, took := waits(context.Background(), s)
			if k := <-got; k != 1 {
				t.Fatalf("next() = %d, want a lone call", k)
			}
			if took() != 150*time.Millisecond {
				t.Fatalf("next() returned after %s with %d calls in flight, want 150ms", took(), warmCalls)
			}
		})
	})
	t.Run("a call's end lets it go", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := inFlight(warmCalls)
			got, took := waits(context.Background(), s)
			select {
			case k := <-got:
				t.Fatalf("next() = %d at once, with the cap held", k)
			default:
			}
			time.Sleep(100 * time.Millisecond)
			s.end(100*time.Millisecond, 1, warmCalls, true)
			if k := <-got; k != 1 || took() != 100*time.Millisecond {
				t.Fatalf("next() = %d after %s, want a lone call when the call ended (100ms)", k, took())
			}
		})
	})
	t.Run("the end of launching lets it go", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := inFlight(warmCalls)
			ctx, cancel := context.WithCancel(context.Background())
			got, took := waits(ctx, s)
			time.Sleep(10 * time.Millisecond)
			cancel()
			<-got
			if took() != 10*time.Millisecond {
				t.Fatalf("next() returned after %s, want when launching ended (10ms)", took())
			}
		})
	})
	t.Run("a call sized but not begun yet counts", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := inFlight(warmCalls - 1)
			got, took := waits(context.Background(), s) // the last call the cap allows
			<-got
			if took() != 0 {
				t.Fatalf("call %d waited %s", warmCalls, took())
			}
			got, took = waits(context.Background(), s) // one more, before that one has begun
			<-got
			if took() != warmWait {
				t.Fatalf("call %d waited %s, want warmWait (%s)", warmCalls+1, took(), warmWait)
			}
		})
	})
}

// The turn to groups ends the round of lone calls afresh at each answer,
// by the group size of the moment, and anew in each phase.
func TestSizerTurn(t *testing.T) {
	ms := time.Millisecond
	quick := []time.Duration{3 * ms}
	// lones ends n lone calls of d on a fresh sizer.
	lones := func(limit, n int, d time.Duration) *sizer {
		s := newSizer(limit)
		for i, k := range wave(s, lone(n, d)...) {
			if k != 1 {
				t.Fatalf("warm-up answer %d: next() = %d, want 1", i, k)
			}
		}
		return s
	}
	// answers checks the next answers; step runs between two of them.
	answers := func(t *testing.T, s *sizer, want []int, step map[int]func()) {
		t.Helper()
		for i, w := range want {
			if f := step[i]; f != nil {
				f()
			}
			if got := s.next(context.Background(), 0); got != w {
				t.Fatalf("answer %d: next() = %d, want %d", i, got, w)
			}
		}
	}
	t.Run("quick stamps arriving mid-turn: the same round, groups of all of -j", func(t *testing.T) {
		s := lones(10, 17, 700*ms)
		answers(t, s, []int{1, 1, 1, 10}, map[int]func(){1: func() { s.owned(s.gen, quick) }})
	})
	t.Run("quick stamps widen a turn that groups of half would not have made", func(t *testing.T) {
		// 14 lone calls: six more make a round, too many for a call of 5
		// but not for one of 10.
		s := lones(10, 14, 350*ms)
		s.owned(s.gen, quick)
		answers(t, s, []int{1, 1, 1, 1, 1, 1, 10}, nil)
	})
	t.Run("a new phase starts with every slot free: groups at once", func(t *testing.T) {
		s := lones(10, 19, 700*ms)
		s.phase()
		answers(t, s, []int{5, 5}, nil)
	})
	t.Run("-j 50 whose warm-up cap lifted: no forty lone calls to end the round", func(t *testing.T) {
		// Lone calls slower than warmWait let all fifty slots take one:
		// 59 of them, and the rest of the round is 41, more than a
		// warm-up's worth.
		s := lones(50, 59, 1600*ms)
		s.owned(s.gen, quick)
		answers(t, s, []int{50}, nil)
	})
	t.Run("after a cooldown of -j lone calls, the round is whole: groups at once", func(t *testing.T) {
		s := lones(10, 20, 350*ms)
		answers(t, s, []int{5}, nil)
		s.begin()
		s.end(3*time.Second, 5, 1, true) // a slow group: a cooldown of 10
		want := []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 5}
		answers(t, s, want, nil)
	})
	t.Run("at -j 3 calls of one count towards the round", func(t *testing.T) {
		// Half of -j is one unit: those calls are lone calls too, and
		// when stamps make calls of 3, the round is ended first.
		s := lones(3, 3, 200*ms)
		answers(t, s, []int{1, 1, 1, 3}, map[int]func(){1: func() { s.owned(s.gen, quick) }})
	})
}

// Units quick the last time are grouped from the first call, and a group
// far slower than the others (a unit that turned slow since its stamps)
// turns the run back to lone calls, which the warm-up's gate holds as
// any: at -j 50, ten in flight at most until the pace is known.
func TestSizerGroupsFromStamps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := time.Millisecond
		ctx := context.Background()
		s := newSizer(50)
		for i := 0; i < 3; i++ {
			k := s.next(ctx, 50)
			if k != 50 {
				t.Fatalf("call %d: next() = %d, want 50 from the stamps, with nothing measured", i, k)
			}
			s.end(300*ms, k, s.begin(), true)
		}
		if k := s.next(ctx, 7); k != 7 {
			t.Fatalf("next() = %d, want the 7 quick units that come next", k)
		}
		s.end(90*time.Second, 7, s.begin(), true)
		for i := 0; i < warmCalls; i++ {
			if k := s.next(ctx, 50); k != 1 {
				t.Fatalf("after a group far slower than the others: next() = %d, want 1 (a cooldown)", k)
			}
			s.begin()
		}
		got := make(chan int, 1)
		go func() { got <- s.next(ctx, 50) }()
		synctest.Wait()
		select {
		case k := <-got:
			t.Fatalf("next() = %d with %d lone calls in flight and no pace: the warm-up's gate must hold it", k, warmCalls)
		default:
		}
		s.end(600*ms, 1, warmCalls, true)
		synctest.Wait()
		if k := <-got; k != 1 {
			t.Errorf("next() = %d after a lone call ended, want 1", k)
		}
	})
}
