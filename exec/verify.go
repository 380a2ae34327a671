package exec

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/frp"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// Polling of a tunnel that is not proven yet: the first look comes soon
// after the operation (frpc logs in within tens of milliseconds on a
// healthy link), then the gap doubles up to maxLookGap. Each admin API
// request writes two lines into frpc's log, so a healthy tunnel costs one
// or two requests, and a dead one about one a second.
const (
	firstLookGap = 50 * time.Millisecond
	maxLookGap   = time.Second
	// maxLooks bounds the frp looks (admin API requests, port probes) in
	// flight at once, so that hundreds of tunnels, or a few endpoints that
	// answer slowly, cannot stall the run or flood the host.
	maxLooks = 16
	// maxReasons bounds the journal reads (a journalctl each) for failed
	// units' reasons at once (see fewAtOnce).
	maxReasons = 8
	// lookGrace lets the last look, begun just before the deadline, end.
	lookGrace = 250 * time.Millisecond
	// crashCheckGap is how often systemd's state is read while a tunnel
	// is not proven yet: a crash shows within it.
	crashCheckGap = 300 * time.Millisecond
)

// verifier checks each unit after its operation, in its own goroutine and
// without holding a pool slot: settle windows and tunnel proofs of many
// units run at the same time. State reads go through states, which
// batches them into few `systemctl show` calls.
type verifier struct {
	ctx      context.Context
	cfg      Config
	states   *states
	api      *frp.API
	looks    chan struct{}
	finish   func(u *unitRun)
	wg       sync.WaitGroup
	deadline time.Duration
}

func newVerifier(ctx context.Context, cfg Config, api *frp.API, finish func(*unitRun)) *verifier {
	prompt, lazy := windowsFor(cfg)
	return &verifier{ctx: ctx, cfg: cfg, states: newStates(ctx, cfg.Runner, prompt, lazy), api: api,
		looks: make(chan struct{}, maxLooks), finish: finish, deadline: cfg.TunnelDeadline}
}

// add takes a unit whose operation has ended and finishes it once it is
// decided.
func (v *verifier) add(u *unitRun) {
	v.states.join()
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.check(u)
		v.states.leave()
		v.finish(u)
	}()
}

// close says no more units will come; wait returns once all are finished.
func (v *verifier) close() { v.states.close() }
func (v *verifier) wait()  { v.wg.Wait() }

func (v *verifier) check(u *unitRun) {
	op := v.cfg.Operation
	switch {
	case !u.res.OK:
		// The operation itself failed; the state only explains why.
		if p, ok := v.read(u, true); ok {
			// The state only adds to what the operation's step saw:
			// frp's reload keeps its stage, and one that saw nothing is
			// systemctl's (see account).
			u.because(u.why.stage, describeFailedOp(u, p))
		}
	case op == "stop":
		if p, ok := v.read(u, false); ok {
			if what := describe(op, p, 0); what != "" {
				v.fail(u, what)
			}
		}
	case u.tun != nil:
		v.prove(u)
	case v.cfg.Settle > 0:
		if !v.sleepUntil(u, u.opEnd.Add(v.cfg.Settle)) {
			return
		}
		if p, ok := v.read(u, false); ok {
			v.judgeSettled(u, p)
		}
	default:
		if p, ok := v.read(u, false); ok {
			if what := describe(op, p, 0); what != "" {
				v.fail(u, what)
			}
		}
	}
}

// read returns the unit's state and records it in its result. When the
// state cannot be read the unit fails with that reason. prompt says that
// something waits on the answer (see busyWindow).
func (v *verifier) read(u *unitRun, prompt bool) (systemctl.Properties, bool) {
	p, err := v.states.read(u.res.Unit, prompt)
	if err != nil {
		u.res.OK = false
		if v.ctx.Err() != nil {
			u.cancelled = true
		} else {
			u.solely(StageState, fmt.Sprintf("could not read the unit's state: %v", err))
		}
		return nil, false
	}
	u.res.State = state(p)
	u.res.SDResult = p["Result"]
	u.res.NRestarts = atoi(p["NRestarts"])
	return p, true
}

func (v *verifier) fail(u *unitRun, what string) {
	u.res.OK = false
	u.because(StageState, what)
}

// sleepUntil waits for t; false when the run was cancelled first.
func (v *verifier) sleepUntil(u *unitRun, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	if !sleep(v.ctx, d) {
		u.res.OK = false
		u.cancelled = true
		return false
	}
	return true
}

// restarted returns how many restarts the state shows since the unit's
// operation ended. systemd stamps every start of the main process and
// every entry into the active state on the monotonic clock, so one look
// shows any restart in between.
func restarted(u *unitRun, p systemctl.Properties) int {
	if started := max(atou(p["ExecMainStartTimestampMonotonic"]), atou(p["ActiveEnterTimestampMonotonic"])); started > u.opEndMono {
		return max(1, atoi(p["NRestarts"]))
	}
	return 0
}

// judgeSettled decides a unit whose settle window has passed: active now,
// and not started again since the operation ended.
func (v *verifier) judgeSettled(u *unitRun, p systemctl.Properties) {
	n := restarted(u, p)
	if what := describe(v.cfg.Operation, p, n); what != "" {
		v.fail(u, what)
	} else if n > 0 {
		v.fail(u, fmt.Sprintf("restarted within %s of %s", v.cfg.Settle, v.cfg.Operation))
	}
}

// prove looks at an frp unit until its tunnel is proven up, its process
// is seen down or restarted (it fails at once), or its deadline passes.
// The first look comes as soon as the operation ends. systemd's state is
// read when the tunnel is proven (to confirm the process is the one the
// operation started) and, while it is not, at most every crashCheckGap,
// so that proving many tunnels loads the manager little.
func (v *verifier) prove(u *unitRun) {
	deadline := u.opEnd.Add(v.deadline)
	gap := firstLookGap
	var lastRead time.Time
	mainPID := 0
	// crashed reads the state and fails the unit if its process is down
	// or was restarted since the operation.
	crashed := func() (stop bool) {
		p, ok := v.read(u, true)
		if !ok {
			return true
		}
		lastRead = time.Now()
		mainPID = atoi(p["MainPID"])
		if n := restarted(u, p); n > 0 || (p["ActiveState"] != "active" && p["ActiveState"] != "reloading") {
			what := describe(v.cfg.Operation, p, n)
			if what == "" {
				what = fmt.Sprintf("restarted right after %s", v.cfg.Operation)
			}
			v.fail(u, what)
			u.tun.readLog()
			u.res.Tunnel.State = frp.Down
			return true
		}
		return false
	}
	if u.tun.cfg.Kind == frp.Server || u.tun.cfg.Admin != nil {
		// The look needs the main process (whose socket it must be).
		if crashed() {
			return
		}
	}
	// refusedBy is the earliest frp can have refused the tunnel: the look
	// before the one that saw the refusal.
	var refusedBy time.Time
	lookedAt := u.opEnd
	for {
		before := time.Now()
		verdict := v.look(u, mainPID, deadline)
		if verdict.State == frp.Online {
			// A verdict from a socket of the main process that a state
			// read after the operation named (admin API, port) is that
			// process's: a crash or restart since would have made it
			// another's. A log's verdict is confirmed by one more read.
			if !verdict.Owned && crashed() {
				return
			}
			if u.verb == verbFRPReload {
				// frp's reload keeps the process and its session.
				switch {
				case mainPID != u.pidBefore:
					u.res.OK = false
					u.because(StageReload, fmt.Sprintf("frpc was replaced during the reload (pid %d, then %d)", u.pidBefore, mainPID))
					return
				case u.tun.log.Logins > 0:
					u.res.OK = false
					u.because(StageReload, "frpc logged in to its server again during the reload: its session was lost")
					return
				}
			}
			u.res.Tunnel.State = frp.Online
			return
		}
		if verdict.State == frp.Unchecked {
			// Nothing can prove this tunnel (no log to read, an admin
			// API that cannot be asked; or, running since before the
			// operation, a log with no login in it): systemd's word is
			// all there is, as `list` says.
			if !crashed() {
				u.res.Tunnel.State, u.res.Tunnel.Check = frp.Unchecked, "systemd"
				u.res.Tunnel.Fallback = verdict.Why + "; checked at systemd level"
				if u.tun.fromTail {
					u.res.Tunnel.Fallback = "running since before the " + v.cfg.Operation + ", and its log holds no login to judge by; checked at systemd level"
				}
			}
			return
		}
		if time.Since(lastRead) >= crashCheckGap && crashed() {
			return
		}
		switch {
		case !verdict.Refused:
			refusedBy = time.Time{}
		case refusedBy.IsZero():
			refusedBy = lookedAt
		}
		lookedAt = before
		// frp asks again no sooner than Retry after its refusal: when
		// that is past the deadline, its answer cannot change in time.
		if verdict.Refused && (verdict.Retry == 0 || refusedBy.Add(verdict.Retry).After(deadline)) {
			// frp's answer cannot change before the deadline: say it now.
			u.res.OK = false
			u.res.Tunnel.State = verdict.State
			what := "frp refused the tunnel: " + verdict.Why
			if verdict.Retry > 0 {
				what += fmt.Sprintf(" (frpc asks again only after %s)", verdict.Retry)
			}
			u.because(StageTunnel, what)
			return
		}
		if !time.Now().Before(deadline) {
			u.res.OK = false
			u.res.Tunnel.State = verdict.State
			what := fmt.Sprintf("tunnel not up within %s", v.deadline)
			if u.tun.cfg.Kind == frp.Server {
				what = fmt.Sprintf("not accepting connections within %s", v.deadline)
			}
			u.because(StageTunnel, what+": "+verdict.Why)
			return
		}
		next := time.Now().Add(gap)
		if next.After(deadline) {
			next = deadline
		}
		if !v.sleepUntil(u, next) {
			return
		}
		gap = min(2*gap, maxLookGap)
	}
}

// look runs one frp-level look, bounded by maxLooks at a time and by the
// unit's deadline: a slow endpoint, or many, cannot keep a unit past it.
func (v *verifier) look(u *unitRun, mainPID int, deadline time.Time) frp.Verdict {
	ctx, cancel := context.WithDeadline(v.ctx, deadline.Add(lookGrace))
	defer cancel()
	select {
	case v.looks <- struct{}{}:
	case <-ctx.Done():
		return frp.Verdict{State: u.tun.last.State, Why: "no look was possible before the deadline (too many slow endpoints)"}
	}
	defer func() { <-v.looks }()
	verdict := u.tun.look(ctx, v.api, mainPID)
	t := u.res.Tunnel
	t.Check, t.Note = verdict.Check, verdict.Note
	if verdict.Proxies != nil {
		t.Proxies = verdict.Proxies
	}
	return verdict
}

// describeFailedOp explains a unit whose systemctl call failed. An unknown
// unit is left to systemctl's own words, which name it.
func describeFailedOp(u *unitRun, p systemctl.Properties) string {
	if u.res.TimedOut && p["ActiveState"] != "" {
		// Cancelling the job does not undo what it began: say where the
		// unit was left, and what to look at.
		return fmt.Sprintf("%s; it was left %s (%s): see systemctl%s status %s", u.why.text, p["ActiveState"], p["SubState"],
			map[bool]string{true: " --user", false: ""}[u.user], discover.ShortName(u.res.Unit))
	}
	if u.res.TimedOut || u.why.text != "" {
		return u.why.text
	}
	switch p["LoadState"] {
	case "not-found":
		return ""
	case "masked":
		return "unit is masked; unmask it first (systemctl unmask " + discover.ShortName(u.res.Unit) + ")"
	}
	return resultWords(u.res.Operation, p)
}

// windowsFor gives the state reads' windows while operations are launched
// (see busyWindow): a brake (--max-fail, --canary) waits for verdicts
// before launching more, so there no read may wait longer than usual.
func windowsFor(cfg Config) (prompt, lazy time.Duration) {
	if cfg.MaxFail > 0 || cfg.Canary > 0 {
		return stateWindow, stateWindow
	}
	return busyWindow, lazyWindow
}
