package exec

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// settleBatch is how late a settle check may run so that it can share its
// systemctl call with units whose windows end just after: a unit settles
// for at least the settle time and at most settleBatch more, and a run
// makes about one settle query per settleBatch instead of one per unit.
const settleBatch = 200 * time.Millisecond

// verifier checks units after their operation without holding a pool slot.
// Units arrive as their operations end; each check is one batched
// `systemctl show` for every unit waiting at that moment, so the number of
// systemctl processes grows with the number of batches, not of units.
// Settle windows start per unit when its own operation ends and run
// concurrently with everything else.
type verifier struct {
	ctx    context.Context
	r      systemctl.Runner
	op     string
	settle time.Duration
	verify bool
	finish func(u *unitRun)

	mu      sync.Mutex
	fresh   []*unitRun // to look at now
	arrived []*unitRun // to move into settling
	closed  bool
	wake    chan struct{}
	done    chan struct{}

	settling []*unitRun // owned by loop
}

func newVerifier(ctx context.Context, r systemctl.Runner, op string, settle time.Duration, verify bool, finish func(*unitRun)) *verifier {
	v := &verifier{ctx: ctx, r: r, op: op, settle: settle, verify: verify, finish: finish,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go v.loop()
	return v
}

// add takes a unit whose operation has ended. A started unit needs no
// look now: one query at the end of its settle window tells whether it is
// up and has not restarted since (see checkSettled). Failures to explain,
// stops, and starts without a settle window are looked at at once.
func (v *verifier) add(u *unitRun) {
	v.mu.Lock()
	if u.res.OK && v.verify && v.op != "stop" && v.settle > 0 {
		u.deadline = u.opEnd.Add(v.settle)
		v.arrived = append(v.arrived, u)
	} else {
		v.fresh = append(v.fresh, u)
	}
	v.mu.Unlock()
	v.poke()
}

// close says no more units will come; wait returns once all are finished.
func (v *verifier) close() {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	v.poke()
}

func (v *verifier) wait() { <-v.done }

func (v *verifier) poke() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

func (v *verifier) loop() {
	defer close(v.done)
	for {
		v.mu.Lock()
		fresh, closed := v.fresh, v.closed
		v.settling = append(v.settling, v.arrived...)
		v.fresh, v.arrived = nil, nil
		v.mu.Unlock()

		if len(fresh) > 0 {
			v.checkNow(fresh)
		}
		if next, ok := v.nextDeadline(); ok {
			now := time.Now()
			if !now.Before(next.Add(settleBatch)) || (closed && !now.Before(v.lastDeadline())) {
				v.checkSettled(v.due(now))
			}
		}
		if closed && len(fresh) == 0 && len(v.settling) == 0 {
			v.mu.Lock()
			empty := len(v.fresh) == 0 && len(v.arrived) == 0
			v.mu.Unlock()
			if empty {
				return
			}
		}
		if len(fresh) > 0 {
			// More may have arrived while the last query ran.
			continue
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if next, ok := v.nextDeadline(); ok {
			at := next.Add(settleBatch)
			if closed {
				// No unit can join any more: one query when the last
				// window ends decides them all, and ends the run soonest.
				at = v.lastDeadline()
			}
			timer = time.NewTimer(time.Until(at))
			fire = timer.C
		}
		select {
		case <-v.wake:
		case <-fire:
		case <-v.ctx.Done():
			v.abandon()
			return
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// abandon finishes everything still pending when the run is torn down.
func (v *verifier) abandon() {
	v.mu.Lock()
	pending := append(append(v.fresh, v.arrived...), v.settling...)
	v.fresh, v.arrived, v.settling = nil, nil, nil
	v.mu.Unlock()
	for _, u := range pending {
		if u.res.Reason == "" {
			u.res.OK = false
			u.res.Reason = "not verified: run cancelled"
		}
		v.finish(u)
	}
}

func (v *verifier) due(now time.Time) []*unitRun {
	var due, rest []*unitRun
	for _, u := range v.settling {
		if !u.deadline.After(now) {
			due = append(due, u)
		} else {
			rest = append(rest, u)
		}
	}
	v.settling = rest
	return due
}

func (v *verifier) lastDeadline() time.Time {
	var last time.Time
	for _, u := range v.settling {
		if u.deadline.After(last) {
			last = u.deadline
		}
	}
	return last
}

func (v *verifier) nextDeadline() (time.Time, bool) {
	var next time.Time
	for _, u := range v.settling {
		if next.IsZero() || u.deadline.Before(next) {
			next = u.deadline
		}
	}
	return next, !next.IsZero()
}

// look reads the state of units in one systemctl call, records it in each
// result, lets judge decide the unit, and finishes it. A unit whose state
// cannot be read fails with that reason.
func (v *verifier) look(units []*unitRun, judge func(u *unitRun, p systemctl.Properties)) {
	names := make([]string, len(units))
	for i, u := range units {
		names[i] = u.res.Unit
	}
	props, err := showUnits(v.ctx, v.r, stateProps, names)
	for i, u := range units {
		if err != nil {
			u.res.OK = false
			u.res.Reason = fmt.Sprintf("could not read the unit's state: %v", err)
		} else {
			p := props[i]
			u.res.State = state(p)
			u.res.SDResult = p["Result"]
			u.res.NRestarts = atoi(p["NRestarts"])
			judge(u, p)
		}
		v.finish(u)
	}
}

func (v *verifier) fail(u *unitRun, what string) {
	u.res.OK = false
	u.what = what
}

// checkNow looks at units right after their operation: failures are
// explained, stops must have left the unit down, and without a settle
// window a started unit must be active.
func (v *verifier) checkNow(units []*unitRun) {
	v.look(units, func(u *unitRun, p systemctl.Properties) {
		switch {
		case !u.res.OK:
			// The operation itself failed; the state only explains why.
			u.what = describeFailedOp(u, p)
		case v.verify:
			if what := describe(v.op, p, 0); what != "" {
				v.fail(u, what)
			}
		}
	})
}

// checkSettled decides units whose settle window has passed: active now,
// and not started again since the operation ended. systemd stamps every
// start of the main process and every entry into the active state on the
// monotonic clock, so one look at the end shows any restart in between.
func (v *verifier) checkSettled(units []*unitRun) {
	v.look(units, func(u *unitRun, p systemctl.Properties) {
		restarts := 0
		if started := max(atou(p["ExecMainStartTimestampMonotonic"]), atou(p["ActiveEnterTimestampMonotonic"])); started > u.opEndMono {
			restarts = max(1, u.res.NRestarts)
		}
		if what := describe(v.op, p, restarts); what != "" {
			v.fail(u, what)
		} else if restarts > 0 {
			v.fail(u, fmt.Sprintf("restarted within %s of %s", v.settle, v.op))
		}
	})
}

// describeFailedOp explains a unit whose systemctl call failed. An unknown
// unit is left to systemctl's own words, which name it.
func describeFailedOp(u *unitRun, p systemctl.Properties) string {
	if u.res.TimedOut || u.what != "" {
		return u.what
	}
	if p["LoadState"] == "not-found" {
		return ""
	}
	return resultWords(p)
}

// showUnits runs one `systemctl show` for names and returns one property
// block per name, in order. Blocks are matched by position, since an alias
// reports its target's Id.
func showUnits(ctx context.Context, r systemctl.Runner, props string, names []string) ([]systemctl.Properties, error) {
	args := append([]string{"show", "--no-pager", "-p", props, "--"}, names...)
	out, err := r.Run(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("systemctl show: %w", err)
	}
	blocks := systemctl.ParseShow(out.Stdout)
	if len(blocks) != len(names) {
		// Fall back to matching by Id when systemctl skipped a unit.
		byID := map[string]systemctl.Properties{}
		for _, b := range blocks {
			byID[b["Id"]] = b
		}
		blocks = make([]systemctl.Properties, len(names))
		for i, n := range names {
			blocks[i] = byID[n]
			if blocks[i] == nil {
				blocks[i] = systemctl.Properties{"Id": n}
			}
		}
		if len(byID) == 0 && out.ExitCode != 0 {
			return nil, fmt.Errorf("systemctl show: %s", systemctl.Failure(out))
		}
	}
	return blocks, nil
}
