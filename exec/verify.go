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
const settleBatch = 100 * time.Millisecond

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

	mu     sync.Mutex
	fresh  []*unitRun
	closed bool
	wake   chan struct{}
	done   chan struct{}

	settling []*unitRun // owned by loop
}

func newVerifier(ctx context.Context, r systemctl.Runner, op string, settle time.Duration, verify bool, finish func(*unitRun)) *verifier {
	v := &verifier{ctx: ctx, r: r, op: op, settle: settle, verify: verify, finish: finish,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go v.loop()
	return v
}

func (v *verifier) add(u *unitRun) {
	v.mu.Lock()
	v.fresh = append(v.fresh, u)
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
		v.fresh = nil
		v.mu.Unlock()

		if len(fresh) > 0 {
			v.checkNow(fresh)
		}
		if next, ok := v.nextDeadline(); ok && !time.Now().Before(next.Add(settleBatch)) {
			v.checkSettled(v.due(time.Now()))
		} else if closed && len(fresh) == 0 && ok && v.ctx.Err() == nil {
			// Nothing else can join the batch: the run is over.
			if due := v.due(time.Now()); len(due) > 0 {
				v.checkSettled(due)
			}
		}
		if closed && len(fresh) == 0 && len(v.settling) == 0 {
			v.mu.Lock()
			empty := len(v.fresh) == 0
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
			timer = time.NewTimer(time.Until(next.Add(settleBatch)))
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
	pending := append(v.fresh, v.settling...)
	v.fresh, v.settling = nil, nil
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

func (v *verifier) nextDeadline() (time.Time, bool) {
	var next time.Time
	for _, u := range v.settling {
		if next.IsZero() || u.deadline.Before(next) {
			next = u.deadline
		}
	}
	return next, !next.IsZero()
}

// query reads the state of units in one systemctl call.
func (v *verifier) query(units []*unitRun) ([]systemctl.Properties, error) {
	names := make([]string, len(units))
	for i, u := range units {
		names[i] = u.res.Unit
	}
	return showUnits(v.ctx, v.r, stateProps, names)
}

// checkNow looks at units right after their operation: failures are
// explained, stops are checked, and started units enter their settle window.
func (v *verifier) checkNow(units []*unitRun) {
	props, err := v.query(units)
	for i, u := range units {
		if err != nil {
			u.res.OK = false
			u.res.Reason = fmt.Sprintf("could not read the unit's state: %v", err)
			v.finish(u)
			continue
		}
		p := props[i]
		u.res.State = state(p)
		u.res.SDResult = p["Result"]
		u.res.NRestarts = atoi(p["NRestarts"])
		if !u.res.OK {
			// The operation itself failed; the state only explains why.
			u.what = describeFailedOp(u, p)
			v.finish(u)
			continue
		}
		if !v.verify {
			v.finish(u)
			continue
		}
		if what := describe(v.op, p, 0); what != "" {
			u.res.OK = false
			u.what = what
			v.finish(u)
			continue
		}
		if v.op == "stop" || v.settle <= 0 {
			v.finish(u)
			continue
		}
		u.baseRestarts = atoi(p["NRestarts"])
		u.baseInvocation = p["InvocationID"]
		u.deadline = u.opEnd.Add(v.settle)
		v.settling = append(v.settling, u)
	}
}

// checkSettled decides units whose settle window has passed: still active,
// with no restart since the first look.
func (v *verifier) checkSettled(units []*unitRun) {
	props, err := v.query(units)
	for i, u := range units {
		if err != nil {
			u.res.OK = false
			u.res.Reason = fmt.Sprintf("could not read the unit's state: %v", err)
			v.finish(u)
			continue
		}
		p := props[i]
		u.res.State = state(p)
		u.res.SDResult = p["Result"]
		u.res.NRestarts = atoi(p["NRestarts"])
		restarts := u.res.NRestarts - u.baseRestarts
		if restarts == 0 && p["InvocationID"] != u.baseInvocation {
			restarts = 1
		}
		if what := describe(v.op, p, restarts); what != "" || restarts > 0 {
			if what == "" {
				what = fmt.Sprintf("restarted %d time(s) within %s of %s", restarts, v.settle, v.op)
			}
			u.res.OK = false
			u.what = what
		}
		v.finish(u)
	}
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
