package exec

import (
	"slices"
	"time"
)

// Grouping. Each systemctl call costs the manager a connection, a
// subscription and several questions on its single thread; for units that
// finish in milliseconds that cost is most of the run. So several units of
// a phase share one call (systemctl OP u1 ... uk), each holding one of the
// -j slots until the call returns: -j still bounds the units in flight.
// systemd runs a call's jobs side by side, so a call of k alike units
// takes about as long as a call of one.
//
// The rule, from the measurements in BENCHMARKS.md. Grouping pays when
// the manager is the bottleneck, and costs when the units are: a group
// holds every unit's slot until its slowest unit is done.
//
// What the units took the last time. systemd stamps when each unit began
// and ended its last stop and start, and the run reads those stamps before
// it begins (lastOwn). Units that took at most quickOwn wait for the
// manager, not for themselves, so a call carries as many of them as come
// next, up to -j, from the run's first call (quickAhead): nothing needs
// measuring. A unit may have turned slow since: a group far slower than
// the phase's others of at least its size (see slowGroup) turns the run
// to lone calls and to the pace below, for good.
//
// The pace. Where the stamps say nothing (units never stopped since the
// manager started) or say slow, the first calls of a run carry one unit
// each and measure the pace: a lone call's duration divided by the calls
// in flight with it. At -j 10, instant units take about 35 ms of the
// manager per call here, so a pace near that means the manager sets it;
// units that take 2 s to stop give a pace of 200 ms, and then the manager
// is idle most of the time and a group would only wait for its slowest
// unit. Calls carry one unit while the pace is above slowPace (about four
// times the manager's cost per call, so that a loaded machine does not
// stop grouping instant units), and up to half of -j units below it (two
// calls in flight keep the manager busy while one is answered), or all of
// -j once the stamps of those lone calls, read in one show (readOwn), say
// quick. A group that takes more than twice what a call of alike units
// takes (expected) plus slowMargin holds a slow unit: the run goes back to
// one unit per call for the next -j calls, which measure the pace again,
// and the units' stamps are read again. Grouping waits for -j lone calls (nine at most) to have ended:
// the first to end are the fastest, and one quick restart must not start
// a run of slow units in groups. The turn to groups first ends the round
// of lone calls (see midRound). The pace is the upper quartile of the last
// few lone calls', and a lone call's duration their median: units of one
// kind do not all take alike (a service that dies on SIGTERM instead of
// stopping cleanly restarts at once), and a few quick ones among slow ones
// must not turn the run to grouping.
const (
	slowPace   = 150 * time.Millisecond
	slowMargin = 100 * time.Millisecond
	recentLone = 9 // lone calls the medians are taken over
)

// Where the pace says the manager sets it, a group of half of -j leaves
// room for a second call, and that second call is a second subscriber:
// systemd sends every job and state signal of the run to each systemctl
// waiting on it, and each such systemctl costs 40–50 ms of CPU on a
// 2-core machine. So when the units themselves take little time (their
// own stop and start, from systemd's stamps, see ownTime: the slowest of
// them at most quickOwn), one call carries all -j units. The slowest, not
// a quartile: a few quick restarts among 2 s units turn a quartile to
// "quick", and one slow unit is enough to make a call of -j wait. The
// stamps include the manager's delay in noticing that a process ended,
// which reached 80 ms for instant units on a loaded machine, hence the
// margin to 0.5 s units. On 500 instant units at -j 10 that was 7% faster
// and used 35% less CPU than groups of five. Slower units keep half of
// -j: on 50 and 100 units of 0.5 s at -j 10, calls of one took 4.27 and
// 8.47 s against 3.99 and 7.86 s for calls of five (xargs -P10 4.04 and
// 8.43 s; taking turns in one sandbox), since ten subscribed calls cost
// the manager more. The pace cannot tell quick units from 0.5 s ones on a
// loaded machine (lone calls of both took 0.2–0.9 s at -j 10), but
// systemd's stamps can: tens of milliseconds against half a second.
const quickOwn = 250 * time.Millisecond

// Order. A group waits for its slowest unit, so a quick unit grouped
// with slow ones holds its slot for nothing. Where systemd's stamps say
// how long each unit took the last time
// (lastOwn), a phase goes longest first (the longest-processing-time
// rule for parallel machines): groups then hold alike units, the lone
// calls that measure the pace are made on the slowest, and the quickest
// fill the end. Units without stamps (never stopped since the manager
// started) go first, as possibly slow; without any stamps the plan's order
// stays. Canaries are the plan's first units, and keep their place. On 50
// units at -j 10 of which half stop at once and the rest take 0.5 s, a
// restart took 2.5 s longest first against 3.1 s in the plan's order
// (three rounds each, taking turns in one sandbox); with one in six quick,
// the same within noise (3.9 s).
func longestFirst(batch []*unitRun) {
	if !slices.ContainsFunc(batch, func(u *unitRun) bool { return u.lastKnown }) {
		return
	}
	slices.SortStableFunc(batch, func(a, b *unitRun) int {
		switch {
		case a.lastKnown != b.lastKnown:
			if !a.lastKnown {
				return -1
			}
			return 1
		case a.last > b.last:
			return -1
		case a.last < b.last:
			return 1
		}
		return 0
	})
}

// Spread. Lone calls of units that take their time, launched together,
// end together: their jobs reach the manager's one thread at once, and
// the last of each wave waits for the others' (at -j 10, calls of 0.5 s
// units took 0.6–0.9 s). Each slot's next call starts when its last one
// ends, so slots that start out of step stay out of step. So the first
// wave's lone calls of units whose stamps say slow are launched a gap
// apart: the unit's last time over -j, which spreads their ends over one
// such time, and at most maxGap, so that slow units (2 s) do not leave
// slots idle for long. On 50 units of 0.5 s at -j 10 that took 3.66 s
// against 3.98 s launched together (xargs -P10 4.04 s); on 100 such units
// 6.67 s against 7.66 s (xargs 7.70 s); with one in six quick, 3.23 s
// against 3.85 s (xargs 3.67 s); gaps of 80 ms were slower than 50 ms
// (3.52 s). Rounds taking turns in one sandbox.
const maxGap = 50 * time.Millisecond

// launchGap is the wait before the lone call of u, in the first wave of
// a phase at -j limit: none for units that took at most quickOwn the last
// time, or whose time is not known.
func launchGap(u *unitRun, limit int) time.Duration {
	if !u.lastKnown || u.last <= quickOwn || limit < 2 {
		return 0
	}
	return min(u.last/time.Duration(limit), maxGap)
}

// The rule is a pure function of what a run has observed (observed):
// groupSize, wantStamps and slowGroup below. The sizer (group.go) keeps
// the observations and the warm-up's gate; exec/policy_test.go holds the
// rule's cases as tables of observations.

// observed is what the grouping rule knows of a run's calls.
type observed struct {
	limit int          // -j
	lone  []loneSample // the last recentLone lone calls that ran to their end
	// own are the units' own times, from the stamps of the lone calls
	// that started grouping; nil until they are read.
	own      []time.Duration
	cooldown int // lone calls still to make after a slow group
	lones    int // lone calls since the last group, or the phase's start
	// quickNext is how many units the next call could carry that took
	// at most quickOwn the last time (see quickAhead).
	quickNext int
	// groups are the phase's last recentLone groups that were not slow.
	groups []groupSample
	// stale says a group was slow: the units' stamps from before the run
	// are no longer trusted (see quickAhead).
	stale bool
}

// groupSample is one group: how long it took, and how many units it
// carried.
type groupSample struct {
	took time.Duration
	k    int
}

// quickAhead counts the units at the head of batch, up to limit, that
// took at most quickOwn the last time they went through this operation
// (lastOwn): a call of such units waits for the manager, not for them.
func quickAhead(batch []*unitRun, limit int) int {
	n := 0
	for _, u := range batch[:min(limit, len(batch))] {
		if !u.lastKnown || u.last > quickOwn {
			break
		}
		n++
	}
	return n
}

// loneSample is one lone call: how long it took, and that divided by the
// calls in flight with it.
type loneSample struct{ took, pace time.Duration }

// groupSize is how many units the next call carries.
func groupSize(o observed) int {
	switch {
	case o.cooldown > 0:
		return 1
	case o.quickGroup():
		return o.quickNext
	case !o.paced() || o.slowUnits():
		return 1
	}
	k := max(1, o.limit/2)
	if len(o.own) > 0 && slices.Max(o.own) <= quickOwn {
		k = o.limit
	}
	// Asked afresh at each call until a group goes out, from the count
	// alone: stamps that arrive mid-turn size the group that ends it.
	if o.midRound(k) {
		return 1
	}
	return k
}

// wantStamps says that grouping would start (or has), so the stamps of
// the recent lone calls' units are worth a show.
func wantStamps(o observed) bool {
	return o.cooldown == 0 && o.paced() && !o.slowUnits()
}

// slowGroup says that a group of k units that took took holds a slow
// unit: more than twice what a call of alike units takes, plus
// slowMargin. Without lone calls (units quick the last time, grouped from
// the first call) a call of alike units is one of the groups of the
// phase, at least as large, that were not slow; three of them at least,
// so that one early group is no measure.
func slowGroup(o observed, took time.Duration, k int) bool {
	if len(o.lone) > 0 {
		return took > 2*o.expected()+slowMargin
	}
	var alike []time.Duration
	for _, g := range o.groups {
		if g.k >= k {
			alike = append(alike, g.took)
		}
	}
	if len(alike) < 3 {
		return false
	}
	slices.Sort(alike)
	return took > 2*alike[len(alike)/2]+slowMargin
}

// quickGroup says the next call carries the units that come next, quick
// the last time (quickAhead), with no pace needed: none after a slow
// group, whose cooldown and the pace decide from then on.
func (o observed) quickGroup() bool {
	return o.quickNext > 1 && o.cooldown == 0 && !o.stale
}

// paced says enough lone calls have ended to know the pace.
func (o observed) paced() bool { return len(o.lone) >= min(recentLone, o.limit) }

// slowUnits says the pace is the units' (one unit per call).
func (o observed) slowUnits() bool {
	return o.quantile(3, 4, func(l loneSample) time.Duration { return l.pace }) > slowPace
}

// midRound says to make one more lone call before groups of k: the rest
// of the round, so that the lone calls since the last group come to a
// whole number of rounds of -j, when that takes fewer than k calls. Each
// lone call's end hands its slot to the next call, so the slots go round;
// stopped mid-round, the slots that have made one call fewer free early
// and wait, idle, for a group's k slots to come free, most of a call
// each, and their units are left for a last wave: at 50 units of 0.5 s
// and -j 10, 19 lone calls left the 50th unit alone for its last 0.66 s.
// Only after -j lone calls: before that (the warm-up of a wide -j, see
// warmCalls) most slots have had none and are free, and they take groups
// at once. And never more than a warm-up's worth of lone calls: at -j 50,
// once lone calls slower than warmWait have lifted the warm-up's cap, the
// rest of a round can be forty, the very cost the warm-up avoids.
func (o observed) midRound(k int) bool {
	if k == 1 {
		return false
	}
	rest := (o.limit - o.lones%o.limit) % o.limit
	return o.lones >= o.limit && rest > 0 && rest < min(k, warmCalls)
}

// expected is how long a call of alike units takes while -j units are in
// flight: the median lone call, or the median pace times -j when the lone
// calls ran with fewer in flight (the warm-up, see warmCalls). At a wide
// -j that is a loose bound (at -j 500 about fifty lone calls' time), which
// is right: a call of 500 units does take the manager that long.
func (o observed) expected() time.Duration {
	took := o.quantile(1, 2, func(l loneSample) time.Duration { return l.took })
	pace := o.quantile(1, 2, func(l loneSample) time.Duration { return l.pace })
	return max(took, pace*time.Duration(o.limit))
}

// quantile returns the num/den quantile of one measure over the recent
// lone calls (0 when there are none).
func (o observed) quantile(num, den int, of func(loneSample) time.Duration) time.Duration {
	if len(o.lone) == 0 {
		return 0
	}
	v := make([]time.Duration, len(o.lone))
	for i, l := range o.lone {
		v[i] = of(l)
	}
	slices.Sort(v)
	return v[len(v)*num/den]
}
