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

// The warm-up's gate. The first lone calls of a run are where it learns
// the pace, and at a wide -j they were also its slowest part: at -j 50
// fifty systemctl processes each subscribed to every signal of the run,
// and 500 instant units spent 3.8 s of a 17.5 s run on their first 59
// lone calls. So until the pace is known at most warmCalls calls are in
// flight, as at -j 10, for at most warmWait: units still unfinished by
// then are slow ones, and then the rest of -j starts at once.
const (
	warmCalls = recentLone + 1
	warmWait  = time.Second
)

// sizer keeps what the grouping rule (groupSize, in policy.go) observes
// of a run's calls, hands out the stamp reads it asks for, and holds the
// warm-up's gate.
type sizer struct {
	mu       sync.Mutex
	obs      observed
	inFlight int // calls running
	sized    int // calls sized by next and not begun yet
	// recent are the units of the last lone calls that succeeded, to read
	// their stamps once grouping starts; probed says they were handed
	// out. gen counts the resets after slow groups, so that a read begun
	// before one is dropped.
	recent []probeUnit
	probed bool
	gen    int
	// capped is when the warm-up's cap on calls in flight first held;
	// ended wakes a next() that waits for a call to end.
	capped time.Time
	ended  chan struct{}
}

// probeUnit is a unit whose lone call ended cleanly, and the monotonic
// instant (µs) its call began.
type probeUnit struct {
	name  string
	since uint64
}

func newSizer(limit int) *sizer {
	return &sizer{obs: observed{limit: limit}, ended: make(chan struct{}, 1)}
}

// next returns the size of the next group, whose first quick units are
// known quick from their stamps (see quickAhead). While the pace is not
// known yet it may wait, until a call ends, warmWait has passed since the
// cap on calls in flight first held, or ctx is done (see warmCalls); a
// group of known-quick units needs no pace, and does not wait.
func (s *sizer) next(ctx context.Context, quick int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.obs.quickNext = quick
	for !s.obs.quickGroup() && !s.obs.paced() && s.inFlight+s.sized >= warmCalls {
		if s.capped.IsZero() {
			s.capped = time.Now()
		}
		wait := warmWait - time.Since(s.capped)
		if wait <= 0 || ctx.Err() != nil {
			break
		}
		s.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-s.ended:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		s.mu.Lock()
	}
	// Counted until begin: a call that is sized but never begun (the
	// launching stopped) only ends the run's launching, so no count is
	// left wrong for a later call.
	s.sized++
	k := groupSize(s.obs)
	switch {
	case k > 1:
		s.obs.lones = 0
	default:
		s.obs.lones++
		s.obs.cooldown = max(0, s.obs.cooldown-1)
	}
	return k
}

// phase starts a new launching (a phase, or the rest of one after its
// canaries) with every slot free: what was learnt of the units stays,
// the round of lone calls begins anew.
func (s *sizer) phase() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.obs.lones = 0
	s.obs.groups = nil // another phase's units (servers, clients) take otherwise
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
	if s.probed || len(s.recent) == 0 || !wantStamps(s.obs) {
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
		s.obs.own = own
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
	stop, stopped := stopSpan(p, since)
	start, started := startSpan(p, since)
	return stop + start, stopped || started
}

// stopSpan and startSpan are the unit's last stop (from leaving active to
// becoming inactive) and start (from leaving inactive to becoming active),
// when each began at or after since (µs, monotonic).
func stopSpan(p systemctl.Properties, since uint64) (time.Duration, bool) {
	return stampSpan(p, "ActiveExitTimestampMonotonic", "InactiveEnterTimestampMonotonic", since)
}

func startSpan(p systemctl.Properties, since uint64) (time.Duration, bool) {
	return stampSpan(p, "InactiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic", since)
}

func stampSpan(p systemctl.Properties, from, to string, since uint64) (time.Duration, bool) {
	a, b := atou(p[from]), atou(p[to])
	if a < since || b < a {
		return 0, false
	}
	return time.Duration(b-a) * time.Microsecond, true
}

// lastOwn is how long the unit itself took the last time it was stopped
// (for stop), started (for start) or both (for restart), from systemd's
// stamps before this run. False when systemd has no such stamps: a unit
// never stopped since the manager started, or another operation.
func lastOwn(p systemctl.Properties, op string) (time.Duration, bool) {
	// A stamp of 0 is one that never happened.
	stop, stopped := stopSpan(p, 1)
	start, started := startSpan(p, 1)
	switch op {
	case "stop":
		return stop, stopped
	case "start":
		return start, started
	case "restart":
		return stop + start, stopped && started
	}
	return 0, false
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
		s.obs.lone = append(s.obs.lone, loneSample{d, d / time.Duration(calls)})
		if len(s.obs.lone) > recentLone {
			s.obs.lone = s.obs.lone[1:]
		}
	case slowGroup(s.obs, d, k):
		// The units may have changed: measure them afresh, and judge
		// them by the pace from now on, not by their stamps from before
		// the run.
		s.obs.cooldown = s.obs.limit
		s.obs.own = nil
		s.obs.stale = true
		s.recent, s.probed = nil, false
		s.gen++
	default:
		s.obs.groups = append(s.obs.groups, groupSample{d, k})
		if len(s.obs.groups) > recentLone {
			s.obs.groups = s.obs.groups[1:]
		}
	}
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
			what := fmt.Sprintf("timed out after %s in a call with %d units", cfg.Timeout, len(units))
			switch {
			case cancelErr != nil:
				what += fmt.Sprintf(" (could not cancel its systemd job: %v)", cancelErr)
			case unfinished[u.res.Unit] > 0:
				what += " (its systemd job was cancelled)"
			default:
				what += " (no job of its own was left)"
			}
			u.because(StageOperation, what)
		case err != nil && ctx.Err() != nil:
			u.cancelled = true
		case err != nil:
			u.because(StageOperation, fmt.Sprintf("could not run systemctl: %v", err))
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
