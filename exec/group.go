package exec

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
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
// holds every unit's slot until its slowest unit is done. So the first
// calls of a run carry one unit each and measure the pace: a lone call's
// duration divided by the calls in flight with it. At -j 10, instant units
// take about 35 ms of the manager per call here, so a pace near that means
// the manager sets it; units that take 2 s to stop give a pace of 200 ms,
// and then the manager is idle most of the time and a group would only
// wait for its slowest unit. Calls carry one unit while the pace is above
// slowPace (about four times the manager's cost per call, so that a
// loaded machine does not stop grouping instant units), and up to half of
// -j units below it (two calls in flight keep the manager busy while one
// is answered), or all of -j when the units are quick (see quickOwn). A
// group that takes more than twice what a call of alike units takes
// (expected) plus slowMargin holds a slow unit: the run goes back to one
// unit per call for the next -j calls, which measure the pace again, and
// the units' stamps are read again. Grouping waits for
// -j lone calls (nine at most) to have ended: the first to end are the
// fastest, and one quick restart must not start a run of slow units in
// groups. The turn to groups first ends the round of lone calls (see
// midRound). The pace is the upper quartile of the last few lone calls', and
// a lone call's duration their median: units of one kind do not all take
// alike (a service that dies on SIGTERM instead of stopping cleanly
// restarts at once), and a few quick ones among slow ones must not turn
// the run to grouping.
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
// a quartile: a run of quick restarts among 2 s units (the benchmark's
// stand-in once had such, see tests/sandbox) had turned a quartile to
// "quick", and one slow unit is enough to make a call of -j wait. The stamps
// include the manager's delay in noticing that a process ended, which
// reached 80 ms for instant units on a loaded machine, hence the margin
// to 0.5 s units. On 500 instant units at -j 10 that was 7% faster
// and used 35% less CPU than groups of five. Slower units keep half of
// -j: a call waits for its slowest unit, and units that take half a
// second or more seldom take alike, while the second call in flight goes
// on (on 100 units of exactly 0.5 s, calls of 5 and of 10 took the same
// within noise). Not one unit a call, as for 2 s units: on those 100
// units that was 9.9 s against 8.8 s for calls of 5 (xargs -P10 9.7 s),
// since ten subscribed calls cost the manager more. The pace cannot tell
// quick units from 0.5 s ones on a loaded machine (lone calls of both
// took 0.2–0.9 s at -j 10), but systemd's stamps can: tens of
// milliseconds against half a second. The stamps of the lone calls that
// started grouping are read once, in one show, and again after a slow
// group.
const quickOwn = 250 * time.Millisecond

// The first lone calls of a run are where it learns the pace, and at a
// wide -j they were also its slowest part: at -j 50 fifty systemctl
// processes each subscribed to every signal of the run, and 500 instant
// units spent 3.8 s of a 17.5 s run on their first 59 lone calls. So
// until the pace is known at most warmCalls calls are in flight, as at
// -j 10, for at most warmWait: units still unfinished by then are slow
// ones, and then the rest of -j starts at once.
const (
	warmCalls = recentLone + 1
	warmWait  = time.Second
)

// sizer picks the next group's size from how long calls took.
type sizer struct {
	mu       sync.Mutex
	limit    int
	inFlight int          // calls running
	sized    int          // calls sized by next and not begun yet
	lone     []loneSample // the last recentLone lone calls
	cooldown int          // lone calls still to make before grouping again
	lones    int          // lone calls answered since the last group, or the phase's start
	// recent are the units of the last lone calls that succeeded, to read
	// their stamps once grouping starts; probed says they were handed
	// out; own are the units' own times read from them. gen counts the
	// resets after slow groups, so that a read begun before one is
	// dropped.
	recent []probeUnit
	probed bool
	own    []time.Duration
	gen    int
	// capped is when the warm-up's cap on calls in flight first held;
	// ended wakes a next() that waits for a call to end; waiting says
	// one does.
	capped  time.Time
	ended   chan struct{}
	waiting bool
}

// probeUnit is a unit whose lone call ended cleanly, and the monotonic
// instant (µs) its call began.
type probeUnit struct {
	name  string
	since uint64
}

// loneSample is one lone call: how long it took, and that divided by the
// calls in flight with it.
type loneSample struct{ took, pace time.Duration }

func newSizer(limit int) *sizer { return &sizer{limit: limit, ended: make(chan struct{}, 1)} }

// next returns the size of the next group. While the pace is not known yet
// it may wait, until a call ends, warmWait has passed since the cap on
// calls in flight first held, or ctx is done (see warmCalls).
func (s *sizer) next(ctx context.Context) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.paced() && s.inFlight+s.sized >= warmCalls {
		if s.capped.IsZero() {
			s.capped = time.Now()
		}
		wait := warmWait - time.Since(s.capped)
		if wait <= 0 || ctx.Err() != nil {
			break
		}
		s.waiting = true
		s.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-s.ended:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		s.mu.Lock()
		s.waiting = false
	}
	// Counted until begin: a call that is sized but never begun (the
	// launching stopped) only ends the run's launching, so no count is
	// left wrong for a later call.
	s.sized++
	if !s.paced() || s.cooldown > 0 {
		if s.cooldown > 0 {
			s.cooldown--
		}
		return s.alone()
	}
	if s.slowUnits() {
		return s.alone()
	}
	k := max(1, s.limit/2)
	if len(s.own) > 0 && slices.Max(s.own) <= quickOwn {
		k = s.limit
	}
	// Asked afresh at each answer until a group goes out, from the count
	// alone: stamps that arrive mid-turn size the group that ends it.
	if k == 1 || s.midRound(k) {
		return s.alone()
	}
	s.lones = 0
	return k
}

// alone answers one unit per call; callers hold s.mu.
func (s *sizer) alone() int {
	s.lones++
	return 1
}

// phase starts a new launching (a phase, or the rest of one after its
// canaries) with every slot free: what was learnt of the units stays,
// the round of lone calls begins anew.
func (s *sizer) phase() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lones = 0
}

// midRound says to make one more lone call before groups of k: the rest
// of the round, so that the lone calls since the last group (lones) come
// to a whole number of rounds of -j, when that takes fewer than k calls. Each lone call's end hands its slot to the next call, so the
// slots go round; stopped mid-round, the slots that have made one call
// fewer free early and wait, idle, for a group's k slots to come free,
// most of a call each, and their units are left for a last wave: at 50
// units of 0.5 s and -j 10, 19 lone calls left the 50th unit alone for
// its last 0.66 s (4.9 s; 4.4 s with 20). Only after -j lone calls:
// before that (the warm-up of a wide -j, see warmCalls) most slots have
// had none and are free, and they take groups at once. And never more
// than a warm-up's worth of lone calls: at -j 50, once lone calls slower
// than warmWait have lifted the warm-up's cap, the rest of a round can
// be forty, the very cost the warm-up avoids. Callers hold s.mu.
func (s *sizer) midRound(k int) bool {
	rest := (s.limit - s.lones%s.limit) % s.limit
	return s.lones >= s.limit && rest > 0 && rest < min(k, warmCalls)
}

// loneUnit takes a lone call that ended cleanly: its unit, when it began
// (since) and whether it succeeded. Once next would group, it returns the
// units of the recent lone calls that succeeded, once (and once more after
// each slow group), with the generation to hand back to owned, for the
// caller to read their stamps.
func (s *sizer) loneUnit(name string, since uint64, ok bool) ([]probeUnit, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.recent = append(s.recent, probeUnit{name, since})
		if len(s.recent) > recentLone {
			s.recent = s.recent[1:]
		}
	}
	if s.probed || s.cooldown > 0 || len(s.recent) == 0 || !s.paced() || s.slowUnits() {
		return nil, s.gen
	}
	s.probed = true
	return slices.Clone(s.recent), s.gen
}

// owned takes the units' own times read from their stamps, unless a slow
// group has reset them since the read was handed out (gen).
func (s *sizer) owned(gen int, own []time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen == s.gen {
		s.own = own
	}
}

// ownProps are systemd's stamps of a unit's last stop and start.
const ownProps = "Id,ActiveExitTimestampMonotonic,InactiveEnterTimestampMonotonic,InactiveExitTimestampMonotonic,ActiveEnterTimestampMonotonic"

// readOwn reads the units' stamps in one show and returns the own times
// that could be told; nothing when the show fails (grouping then stays at
// half of -j).
func readOwn(ctx context.Context, r systemctl.Runner, units []probeUnit) []time.Duration {
	names := make([]string, len(units))
	for i, u := range units {
		names[i] = u.name
	}
	props, err := systemctl.Show(ctx, r, ownProps, names)
	if err != nil {
		return nil
	}
	var own []time.Duration
	for i, p := range props {
		if d, ok := ownTime(p, units[i].since); ok {
			own = append(own, d)
		}
	}
	return own
}

// ownTime is how long the unit itself took in an operation that began at
// since (µs, monotonic): from the start of its stop to its end, plus from
// the start of its start to its becoming active, counting only what began
// after since. Queueing in the manager before either is not counted.
// False when neither happened after since (a reload, or a start of a unit
// already running): nothing is known then.
func ownTime(p systemctl.Properties, since uint64) (time.Duration, bool) {
	stamp := func(k string) uint64 { return atou(p[k]) }
	var own time.Duration
	seen := false
	span := func(from, to string) {
		if a, b := stamp(from), stamp(to); a >= since && b >= a {
			own += time.Duration(b-a) * time.Microsecond
			seen = true
		}
	}
	span("ActiveExitTimestampMonotonic", "InactiveEnterTimestampMonotonic")
	span("InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic")
	return own, seen
}

// begin counts a call in flight and returns how many are.
func (s *sizer) begin() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sized = max(0, s.sized-1)
	s.inFlight++
	return s.inFlight
}

// end takes a call that carried k units, began with calls in flight
// (begin's answer) and took d. clean says it ran to its end: a timeout or
// a kill would skew the medians, so it only ends the count.
func (s *sizer) end(d time.Duration, k, calls int, clean bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The calls it shared the manager with: as many as were in flight at
	// its start or at its end, whichever is more (the first calls of a
	// run start alone but run with all the others).
	calls = max(calls, s.inFlight, 1)
	s.inFlight--
	select {
	case s.ended <- struct{}{}:
	default:
	}
	switch {
	case !clean:
	case k == 1:
		s.lone = append(s.lone, loneSample{d, d / time.Duration(calls)})
		if len(s.lone) > recentLone {
			s.lone = s.lone[1:]
		}
	case len(s.lone) > 0 && d > 2*s.expected()+slowMargin:
		// The units may have changed: measure them afresh.
		s.cooldown = s.limit
		s.recent, s.probed, s.own = nil, false, nil
		s.gen++
	}
}

// paced says enough lone calls have ended to know the pace; callers hold
// s.mu.
func (s *sizer) paced() bool { return len(s.lone) >= min(recentLone, s.limit) }

// slowUnits says the pace is the units' (one unit per call); callers hold
// s.mu.
func (s *sizer) slowUnits() bool {
	return s.quantile(3, 4, func(l loneSample) time.Duration { return l.pace }) > slowPace
}

// expected is how long a call of alike units takes while -j units are in
// flight: the median lone call, or the median pace times -j when the lone
// calls ran with fewer in flight (the warm-up, see warmCalls). At a wide
// -j that is a loose bound (at -j 500 about fifty lone calls' time), which
// is right: a call of 500 units does take the manager that long. Callers
// hold s.mu.
func (s *sizer) expected() time.Duration {
	took := s.quantile(1, 2, func(l loneSample) time.Duration { return l.took })
	pace := s.quantile(1, 2, func(l loneSample) time.Duration { return l.pace })
	return max(took, pace*time.Duration(s.limit))
}

// quantile returns the num/den quantile of one measure over the recent
// lone calls; callers hold s.mu.
func (s *sizer) quantile(num, den int, of func(loneSample) time.Duration) time.Duration {
	v := make([]time.Duration, len(s.lone))
	for i, l := range s.lone {
		v[i] = of(l)
	}
	slices.Sort(v)
	return v[len(v)*num/den]
}

// operateGroup runs one systemctl call for several units and gives each
// its own outcome: when the call succeeded, every unit did (systemctl may
// still have warned, say of a unit file changed on disk); a unit that
// systemctl names in an error line failed with that line; the others
// succeeded as far as the call can tell (the batched show after it decides
// each). The timeout bounds the call; on expiry only the jobs of units that
// have not finished are cancelled. It reports whether the call ran to its
// end, so that only such calls shape the grouping rule.
func operateGroup(ctx context.Context, cfg Config, units []*unitRun, obs Observer) (clean bool) {
	if len(units) == 1 {
		return operate(ctx, cfg, units[0], obs)
	}
	names := make([]string, len(units))
	for i, u := range units {
		u.markLogs()
		names[i] = u.res.Unit
	}
	start := time.Now()
	for _, u := range units {
		obs.Launched(u.res.Unit)
		u.res.Start = start
	}
	opCtx, cancel := ctx, context.CancelFunc(func() {})
	if cfg.Timeout > 0 {
		opCtx, cancel = context.WithTimeout(ctx, cfg.Timeout)
	}
	out, err := cfg.Runner.Run(opCtx, append([]string{cfg.Operation, "--"}, names...)...)
	cancel()
	end, mono := time.Now(), monotonicMicros()
	lines := unitLines(out.Stderr, names)
	var unfinished map[string]int
	var cancelErr error
	timedOut := err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
	if timedOut {
		unfinished, cancelErr = cancelJobs(ctx, cfg.Runner, names)
	}
	var limited []*unitRun
	for _, u := range units {
		u.opEnd, u.opEndMono = end, mono
		u.res.OpDuration = end.Sub(start)
		u.res.GroupSize = len(units)
		own := lines[u.res.Unit]
		switch {
		case err == nil && out.ExitCode == 0:
			u.res.OK = true
		case len(own) > 0:
			u.res.ExitCode, u.res.Stderr = out.ExitCode, strings.Join(own, "\n")
			if timedOut {
				u.res.ExitCode = -1
			}
			if startLimited(cfg.Operation, systemctl.Output{Stderr: []byte(u.res.Stderr)}) {
				limited = append(limited, u)
			}
		case timedOut:
			// Cut short, it may never have queued this unit's job: the
			// unit counts as timed out, as it would alone.
			u.res.TimedOut, u.res.ExitCode = true, -1
			u.what = fmt.Sprintf("timed out after %s in a call with %d units", cfg.Timeout, len(units))
			switch {
			case cancelErr != nil:
				u.what += fmt.Sprintf(" (could not cancel its systemd job: %v)", cancelErr)
			case unfinished[u.res.Unit] > 0:
				u.what += " (its systemd job was cancelled)"
			default:
				u.what += " (no job of its own was left)"
			}
		case err != nil && ctx.Err() != nil:
			u.cancelled = true
		case err != nil:
			u.what = fmt.Sprintf("could not run systemctl: %v", err)
		case len(lines) == 0:
			// An error that names no unit: the call as a whole failed.
			u.res.ExitCode, u.res.Stderr = out.ExitCode, strings.TrimSpace(string(out.Stderr))
		default:
			u.res.OK = true
		}
	}
	retryLimited(ctx, cfg, limited)
	for _, u := range units {
		obs.OpEnded(u.res.Unit, u.tun != nil && cfg.Verify && u.res.OK)
	}
	return err == nil && !timedOut
}

// retryLimited resets the start limit of units refused for starting too
// often, in one call, and tries them once more in one call.
func retryLimited(ctx context.Context, cfg Config, units []*unitRun) {
	if len(units) == 0 {
		return
	}
	names := make([]string, len(units))
	for i, u := range units {
		names[i] = u.res.Unit
	}
	opCtx, cancel := ctx, context.CancelFunc(func() {})
	if cfg.Timeout > 0 {
		opCtx, cancel = context.WithTimeout(ctx, cfg.Timeout)
	}
	defer cancel()
	if _, err := cfg.Runner.Run(opCtx, append([]string{"reset-failed", "--"}, names...)...); err != nil {
		return
	}
	out, err := cfg.Runner.Run(opCtx, append([]string{cfg.Operation, "--"}, names...)...)
	if err != nil {
		return
	}
	lines := unitLines(out.Stderr, names)
	end, mono := time.Now(), monotonicMicros()
	for _, u := range units {
		u.opEnd, u.opEndMono = end, mono
		u.res.OpDuration = end.Sub(u.res.Start)
		if own := lines[u.res.Unit]; out.ExitCode != 0 && (len(own) > 0 || len(lines) == 0) {
			u.res.ExitCode, u.res.Stderr = out.ExitCode, strings.Join(own, "\n")
			continue
		}
		u.res.OK, u.res.ExitCode, u.res.Stderr = true, 0, ""
	}
}

// unitLines sorts systemctl's error lines by the unit each one names
// ("Job for X.service failed ...", "Failed to reload X.service: Job type
// reload is not applicable for unit X.service."). A name counts only as a
// whole word (trailing '.' and ':' are punctuation), so that
// a-moonfrp-client-1.service is not taken for moonfrp-client-1.service.
// Warnings ("Warning: The unit file ... changed on disk") name no failure.
func unitLines(stderr []byte, names []string) map[string][]string {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := map[string][]string{}
	for _, l := range strings.Split(string(stderr), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "Warning:") {
			continue
		}
		for _, w := range strings.FieldsFunc(l, func(r rune) bool { return !discover.IsUnitNameRune(r) }) {
			if w = strings.TrimRight(w, ".:"); want[w] {
				out[w] = append(out[w], l)
				break
			}
		}
	}
	return out
}
