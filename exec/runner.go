package exec

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/frp"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
	"golang.org/x/sync/semaphore"
)

// Why a run stops launching: the cause of its launch context. The first
// two come from the caller (see Config.Launch), the others from the run.
var (
	// ErrInterrupted is the first Ctrl-C or SIGTERM.
	ErrInterrupted = errors.New("interrupted")
	// ErrTerminalLost is a hangup, or an output that can no longer be
	// written: nobody is watching any more.
	ErrTerminalLost = errors.New("terminal lost")
	// ErrManagerLost is a service manager that stopped answering.
	ErrManagerLost = errors.New("the service manager stopped answering")
)

// BrakeError is the run's own brake: the failure limit reached, or a
// canary that failed.
type BrakeError struct{ Why string }

func (e *BrakeError) Error() string { return e.Why }

// Run performs cfg.Operation on the plan's units, phase by phase, through
// ForEachGroup. Every unit gets exactly one Finished call. The error is
// non-nil only for the tool's own failures (systemctl cannot be run at
// all); unit failures are in the Summary.
func Run(ctx context.Context, cfg Config, plan discover.Plan, obs Observer) (Summary, error) {
	start := time.Now()
	units := plan.Units()
	cfg.Journal = fewAtOnce(cfg.Journal, maxReasons)
	r := &run{ctx: ctx, cfg: cfg, obs: obs, sum: Summary{Operation: cfg.Operation, Total: len(units)}}
	if len(units) == 0 {
		return r.sum, nil
	}
	runs, err := prepare(ctx, cfg, plan)
	if err != nil {
		return r.sum, err
	}
	r.api = cfg.API
	if r.api == nil {
		r.api = frp.NewAPI()
		defer r.api.Close()
	}
	parent := cfg.Launch
	if parent == nil {
		parent = ctx
	}
	r.launch, r.stop = context.WithCancelCause(parent)
	defer r.stop(nil)
	r.ver = newVerifier(ctx, cfg, r.api, r.finish)
	r.size = newSizer(cfg.MaxParallel)

	next := r.phases(plan, runs)
	r.probes.Wait()
	r.ver.close()
	r.ver.wait()
	r.settle(runs[next:])
	r.sum.Duration = time.Since(start)
	return r.sum, nil
}

// run is one Run: its launch context and what the units' verdicts share.
type run struct {
	// ctx ends at a second interrupt: everything in flight is killed.
	ctx context.Context
	// launch ends when launching stops; context.Cause says why.
	launch context.Context
	stop   context.CancelCauseFunc
	cfg    Config
	obs    Observer
	api    *frp.API
	ver    *verifier
	size   *sizer
	probes sync.WaitGroup // the sizer's stamp reads

	mu        sync.Mutex
	sum       Summary
	failures  int
	abandoned []*unitRun
}

// phases launches the plan phase by phase and returns how many units
// were launched (always a prefix of runs).
func (r *run) phases(plan discover.Plan, runs []*unitRun) int {
	next := 0
	for i, ph := range plan.Phases {
		batch := runs[next : next+len(ph.Units)]
		heldNext := i+1 < len(plan.Phases) && plan.Phases[i+1].Held
		if heldNext && r.ctx.Err() == nil {
			stopHeld(r.ctx, r.cfg, runs[next+len(ph.Units):next+len(ph.Units)+len(plan.Phases[i+1].Units)])
		}
		var n int
		switch {
		case ph.Held:
			// Stopped before the server: started again whatever stops
			// the run from launching, short of a second interrupt.
			n = r.launchAs(r.ctx, batch, "start")
		case r.launch.Err() != nil:
		case r.cfg.Canary > 0:
			n = r.withCanary(batch)
		default:
			longestFirst(batch)
			n = r.launchAs(r.launch, batch, r.cfg.Operation)
		}
		next += n
		if n < len(ph.Units) || r.ctx.Err() != nil {
			break
		}
		if !awaitServers(r.ctx, r.cfg, batch, &r.sum) {
			break
		}
		if r.launch.Err() != nil && !heldNext {
			break
		}
	}
	return next
}

// withCanary launches the phase's canaries first, and the rest only once
// every canary is proven (verified, tunnels up).
func (r *run) withCanary(batch []*unitRun) int {
	canaries := batch[:min(r.cfg.Canary, len(batch))]
	n := r.launchAs(r.launch, canaries, r.cfg.Operation)
	if n == len(canaries) && !canaryPassed(r.ctx, canaries) && r.ctx.Err() == nil {
		r.stop(&BrakeError{fmt.Sprintf("canary %s failed", failedNames(canaries))})
	}
	if n == len(canaries) && n < len(batch) {
		longestFirst(batch[n:])
		n += r.launchAs(r.launch, batch[n:], r.cfg.Operation)
	}
	return n
}

// launchAs runs op on batch in groups, until launch ends.
func (r *run) launchAs(launch context.Context, batch []*unitRun, op string) int {
	r.size.phase()
	cfg := r.cfg
	cfg.Operation = op
	size := func(ctx context.Context, lo int) int {
		stamped := op == r.cfg.Operation // the stamps are of this operation
		quick := 0
		if stamped {
			quick = quickAhead(batch[lo:], cfg.MaxParallel)
		}
		k := r.size.next(ctx, quick)
		if stamped && k == 1 && lo > 0 && lo < cfg.MaxParallel {
			sleep(ctx, launchGap(batch[lo], cfg.MaxParallel))
		}
		return k
	}
	return ForEachGroup(r.ctx, launch, cfg.MaxParallel, len(batch), size, func(lo, hi int) {
		start, since, calls := time.Now(), monotonicMicros(), r.size.begin()
		clean := r.operate(cfg, batch[lo:hi])
		r.size.end(time.Since(start), hi-lo, calls, clean)
		if clean && hi-lo == 1 {
			if probe, gen := r.size.loneUnit(batch[lo].res.Unit, since, batch[lo].res.OK); probe != nil {
				// Once a run, and again after a slow group: one show of
				// a few units, beside the calls rather than in this
				// call's slot, which would sit idle for it (about 0.1 s)
				// right where the run turns to groups. A show is no unit
				// operation, so -j does not count it.
				r.probes.Add(1)
				go func() {
					defer r.probes.Done()
					r.size.owned(gen, readOwn(r.ctx, r.cfg.Runner, probe))
				}()
			}
		}
		r.mu.Lock()
		for _, u := range batch[lo:hi] {
			switch {
			case managerLost(u.res.Stderr):
				// The manager's failure, not the unit's: it stops the
				// run on its own, and is no brake's business.
				u.counted = true
			case !u.res.OK && !u.cancelled && !u.res.NeedsRestart:
				// Known now: brake before the next launch, not after
				// this unit's reason has been gathered.
				r.failed(u)
			}
		}
		r.mu.Unlock()
		for _, u := range batch[lo:hi] {
			if managerLost(u.res.Stderr) {
				r.lost(u)
			}
			if u.res.NeedsRestart || u.verb == verbRefused {
				r.finish(u) // left as it was: nothing to verify
				continue
			}
			if u.res.OK && !r.cfg.Verify && u.verb != verbFRPReload {
				r.finish(u) // a trusted exit code: nothing to query
				continue
			}
			r.ver.add(u)
		}
		if r.cfg.MaxFail > 0 {
			// With a failure limit, a unit holds its slots until it is
			// decided (verified, its tunnel proven): a crash in the
			// settle window must count before the next launch, or every
			// unit would be launched before the first verdict.
			decided(r.ctx, batch[lo:hi]...)
		}
	})
}

// operate runs the operation of a group of units: one systemctl call per
// verb among them (a reload's units may differ: see classifyReload), frp's
// reload for each unit that gets it, and nothing for those that need a
// restart. It reports whether every call ran to its end, alone.
func (r *run) operate(cfg Config, units []*unitRun) bool {
	byVerb := map[string][]*unitRun{}
	var verbs []string
	for _, u := range units {
		v := u.verb
		if v == "" {
			v = cfg.Operation
		}
		if byVerb[v] == nil {
			verbs = append(verbs, v)
		}
		byVerb[v] = append(byVerb[v], u)
	}
	clean := true
	for _, v := range verbs {
		switch v {
		case verbNeedsRestart, verbRefused:
			for _, u := range byVerb[v] {
				r.obs.Launched(u.res.Unit)
				u.res.NeedsRestart = v == verbNeedsRestart
				r.obs.OpEnded(u.res.Unit, false)
			}
		case verbFRPReload:
			for _, u := range byVerb[v] {
				frpReload(r.ctx, r.cfg, r.api, u, r.obs)
			}
		default:
			c := cfg
			c.Operation = v
			clean = operateGroup(r.ctx, c, byVerb[v], r.obs) && clean
		}
	}
	return clean && len(verbs) == 1
}

// failed counts a failure towards cfg.MaxFail once per unit: as soon as
// its operation fails, or when verification finds it down. Callers hold
// r.mu.
func (r *run) failed(u *unitRun) {
	if u.counted {
		return
	}
	u.counted = true
	r.failures++
	if r.cfg.MaxFail > 0 && r.failures >= r.cfg.MaxFail {
		r.stop(&BrakeError{fmt.Sprintf("failure limit of %d reached", r.cfg.MaxFail)})
	}
}

// lost stops launching when the service manager stops answering.
func (r *run) lost(u *unitRun) {
	r.stop(fmt.Errorf("%w: %s", ErrManagerLost, systemctl.Failure(systemctl.Output{Stderr: []byte(u.res.Stderr), ExitCode: u.res.ExitCode})))
}

// finish decides a unit whose operation and verification are done: its
// reason, if it failed, and its Finished call.
func (r *run) finish(u *unitRun) {
	if u.res.NeedsRestart || u.verb == verbRefused {
		// Left as it was: frp's words are the reason; nothing ran whose
		// logs could say more. A refused config is a failure.
		u.res.OK, u.res.End = false, time.Now()
		u.account("", nil, true)
		r.mu.Lock()
		r.sum.Results = append(r.sum.Results, u.res)
		if u.verb == verbRefused {
			r.failed(u)
		}
		r.mu.Unlock()
		r.obs.Finished(u.res)
		close(u.done)
		return
	}
	if u.cancelled {
		// Cut short by a second interrupt: decided in settle, once.
		r.mu.Lock()
		r.abandoned = append(r.abandoned, u)
		r.mu.Unlock()
		close(u.done)
		return
	}
	if !u.res.OK {
		rctx, cancel := context.WithTimeout(r.ctx, reasonTimeout)
		unitLines := unitLog(rctx, r.cfg, u)
		cancel()
		u.res.LogTail = unitLines
		frpKey := ""
		if u.tun != nil {
			// frp's own log first: it is where frp says why.
			u.res.LogTail = append(append([]string(nil), u.tun.lines...), unitLines...)
			frpKey = u.tun.log.LastError
		}
		if len(u.res.LogTail) > maxTailLines {
			u.res.LogTail = u.res.LogTail[len(u.res.LogTail)-maxTailLines:]
		}
		u.account(frpKey, unitLines, false)
	}
	u.res.End = time.Now()
	r.mu.Lock()
	r.sum.Results = append(r.sum.Results, u.res)
	if !u.res.OK {
		r.failed(u)
	}
	r.mu.Unlock()
	r.obs.Finished(u.res)
	close(u.done)
}

// settle accounts for the units that were cut short or never launched,
// and counts the summary from the cause that stopped launching.
func (r *run) settle(unlaunched []*unitRun) {
	settleAbandoned(r.cfg, r.abandoned)
	for _, u := range r.abandoned {
		u.account("", nil, false)
		u.res.End = time.Now()
		r.obs.Finished(u.res)
		r.sum.Results = append(r.sum.Results, u.res)
	}
	cause := context.Cause(r.launch)
	if r.launch.Err() == nil {
		cause = nil
	}
	var brake *BrakeError
	switch {
	case errors.Is(cause, ErrManagerLost):
		r.sum.Lost = strings.TrimPrefix(cause.Error(), ErrManagerLost.Error()+": ")
	case errors.As(cause, &brake):
		r.sum.Halted = brake.Why
	}
	r.sum.Interrupted = errors.Is(cause, ErrInterrupted) || r.ctx.Err() != nil
	r.sum.Stopped = cause
	for _, u := range unlaunched {
		u.res.NotStarted = true
		u.res.Tunnel = nil
		var what string
		switch {
		case u.held:
			what = "stopped before its server's restart, and not started again (interrupted): start it with systemctl start " + discover.ShortName(u.res.Unit)
		case r.sum.Lost != "":
			what = "not started: the service manager stopped answering"
		case r.sum.Halted != "":
			what = "not started: " + r.sum.Halted
		case errors.Is(cause, ErrTerminalLost):
			what = "not started (the terminal was lost)"
		default:
			what = "not started (interrupted)"
		}
		u.solely(StageNotStarted, what)
		u.account("", nil, false)
		r.obs.Finished(u.res)
		r.sum.Results = append(r.sum.Results, u.res)
	}
	sort.Slice(r.sum.Results, func(i, j int) bool { return r.sum.Results[i].Index < r.sum.Results[j].Index })
	for _, res := range r.sum.Results {
		if res.Abandoned {
			r.sum.Abandoned++
		}
		switch {
		case res.NeedsRestart:
			r.sum.NeedsRestart++
		case res.NotStarted:
			r.sum.NotStarted++
		case res.OK:
			r.sum.Succeeded++
		default:
			r.sum.Failed++
		}
	}
	if r.sum.NotStarted == 0 {
		r.sum.Halted = "" // the brake came too late to hold anything back
	}
}

// stopHeld stops the clients of a held phase before their server's
// restart, at most cfg.MaxParallel units per systemctl call, one call at
// a time. A unit that does not stop is started all the same, later; its
// result tells.
func stopHeld(ctx context.Context, cfg Config, units []*unitRun) {
	for lo := 0; lo < len(units) && ctx.Err() == nil; lo += max(1, cfg.MaxParallel) {
		hi := min(len(units), lo+max(1, cfg.MaxParallel))
		names := make([]string, 0, hi-lo)
		for _, u := range units[lo:hi] {
			if u.verb == verbRefused {
				continue // its config would not start: it stays up
			}
			u.held = true
			names = append(names, u.res.Unit)
		}
		if len(names) > 0 {
			_, _ = cfg.Runner.Run(ctx, append([]string{"stop", "--"}, names...)...)
		}
	}
}

// fewAtOnce lets at most n reads of read run at once: when hundreds of
// units fail together, their journals must not take hundreds of
// processes and descriptors. Waiting counts against the read's context,
// so that a slow journal still cannot hold a failure's reason longer
// than reasonTimeout.
func fewAtOnce(read func(context.Context, string, time.Time) []string, n int64) func(context.Context, string, time.Time) []string {
	if read == nil {
		return nil
	}
	sem := semaphore.NewWeighted(n)
	return func(ctx context.Context, unit string, since time.Time) []string {
		if sem.Acquire(ctx, 1) != nil {
			return nil
		}
		defer sem.Release(1)
		return read(ctx, unit, since)
	}
}
