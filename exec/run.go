package exec

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/frp"
	"github.com/moonfrp/moonfrp-bulk/safefile"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// Settings are what a run does and how, as the operator chose them: the
// plan and the report show them, the run follows them, and the job log
// keeps them. Package report's Header carries the same value.
type Settings struct {
	Operation   string // start, stop, restart or reload
	MaxParallel int    // units in flight at once
	// Timeout bounds each unit's systemctl operation; 0 means none.
	Timeout time.Duration
	// Verify checks each unit's state after its operation; Settle is how
	// long a started unit must then stay up without restarting.
	Verify bool
	Settle time.Duration
	// TunnelDeadline bounds how long an frp unit's tunnel may take to be
	// proven up after its operation (see package frp).
	TunnelDeadline time.Duration
	// NoTunnel judges frp units by systemd's state alone, as other units.
	NoTunnel bool
	// User says the units are the user manager's (systemctl --user).
	User bool
	// MaxFail, when above 0, stops launching once that many units have
	// failed; operations in flight finish and are verified.
	MaxFail int
	// Canary, when above 0, runs that many units of each phase first,
	// and goes on only if every one of them succeeds.
	Canary int
	// RestartIfNeeded makes a reload restart the frp units that frp
	// cannot reload in place (see reload.go), instead of saying so.
	RestartIfNeeded bool
}

// Config is a run's settings and what it needs from its caller.
type Config struct {
	Settings
	// LogDir is MOONFRP_LOG_DIR, where <service>.log is looked for when a
	// unit does not name its own log file.
	LogDir string
	// Journal, when set, reads a unit's journal since a time: the last
	// source of log lines for units that log neither to a file of their
	// own nor to LogDir. See JournalReader.
	Journal func(ctx context.Context, unit string, since time.Time) []string
	Runner  systemctl.Runner
	// API asks frpc admin APIs; nil means a fresh one for the run.
	API *frp.API
	// Refused holds, by unit, frp's words on a config that its preflight
	// refused (see package preflight): such a unit is left as it is, and
	// fails with them.
	Refused map[string]string
	// Launch, when set, ends when the caller wants launching to stop
	// (the first interrupt, a lost terminal); its cause says why, and
	// becomes the summary's. Operations already running finish and are
	// verified. Cancelling the context passed to Run kills everything
	// instead.
	Launch context.Context
}

// unitRun is one unit's bookkeeping during a run.
type unitRun struct {
	res       Result
	logs      []string
	offsets   []int64
	opEnd     time.Time
	opEndMono uint64 // µs on CLOCK_MONOTONIC, the clock systemd stamps with
	// why says why the unit did not succeed, once it did not.
	why why
	// opt says whose files may be read for the unit (root's and its
	// User='s).
	opt safefile.Options
	// tun is set for an frp unit whose tunnel can be proven.
	tun *tunnelWatch
	// done closes when the unit is finished.
	done chan struct{}
	// cancelled is set when a second interrupt cut the unit's operation
	// or verification short.
	cancelled bool
	// user says the unit is the user manager's, for the commands a
	// reason suggests.
	user bool
	// counted is set once the unit's failure counts towards MaxFail.
	counted bool
	// held is set once the unit was stopped before its server's restart
	// (see discover.Phase.Held).
	held bool
	// verb is the unit's own operation when it is not cfg.Operation: on
	// reload, frp's reload (verbFRPReload), a restart, or none at all
	// (verbNeedsRestart); see classifyReload.
	verb string
	// pidBefore is the unit's main process before its operation.
	pidBefore int
	// last is how long the unit took the last time it went through
	// this operation, when lastKnown (see lastOwn).
	last      time.Duration
	lastKnown bool
}

// decided waits until every one of units is finished (its verdict
// reached), and reports false if the run was cancelled first.
func decided(ctx context.Context, units ...*unitRun) bool {
	for _, u := range units {
		select {
		case <-u.done:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// canaryPassed waits until every canary is decided and reports whether
// all of them succeeded. A cancelled run passes nothing.
func canaryPassed(ctx context.Context, canaries []*unitRun) bool {
	if !decided(ctx, canaries...) {
		return false
	}
	for _, u := range canaries {
		if !u.res.OK {
			return false
		}
	}
	return true
}

// failedNames names the units that failed, short and comma-separated.
func failedNames(units []*unitRun) string {
	var names []string
	for _, u := range units {
		if !u.res.OK {
			names = append(names, discover.ShortName(u.res.Unit))
		}
	}
	return strings.Join(names, ", ")
}

// reasonTimeout bounds the gathering of one failed unit's reason (its
// logs, the journal), so that a slow source cannot hold the run.
const reasonTimeout = 3 * time.Second

// managerLost reports whether systemctl's error says that the service
// manager itself cannot be reached, rather than that a unit failed.
func managerLost(stderr string) bool {
	for _, s := range []string{"Failed to connect to bus", "Failed to get D-Bus connection",
		"Transport endpoint is not connected", "Connection reset by peer"} {
		if strings.Contains(stderr, s) {
			return true
		}
	}
	return false
}

// settleAbandoned reads the state of units cut short by a second interrupt
// once, with a short context of its own (the run's is cancelled), so that
// each says where it was left: systemd may well have finished the job.
func settleAbandoned(cfg Config, units []*unitRun) {
	if len(units) == 0 {
		return
	}
	names := make([]string, len(units))
	for i, u := range units {
		names[i] = u.res.Unit
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	props, err := showUnits(ctx, cfg.Runner, stateProps, names)
	for i, u := range units {
		u.res.OK, u.res.Abandoned = false, true
		if err != nil {
			u.solely(StageAbandoned, "abandoned in flight at the second interrupt; its state could not be read")
			continue
		}
		u.res.State = state(props[i])
		u.solely(StageAbandoned, fmt.Sprintf("abandoned in flight at the second interrupt; it was then %s (check it with systemctl status %s)",
			u.res.State, discover.ShortName(u.res.Unit)))
	}
}

// prepare takes the units' state from their facts (or reads it in one
// batched show when they lack it), resets failed ones
// before a start, reads the frp config of each frp unit the plan names,
// and lays out the runs in the plan's phase order with their log files.
func prepare(ctx context.Context, cfg Config, plan discover.Plan) ([]*unitRun, error) {
	units := plan.Units()
	preByName := map[string]systemctl.Properties{}
	var unread []string
	for _, name := range units {
		if p := plan.Facts[name].Pre; p != nil {
			// Read with the facts: at 500 units a second show would
			// cost half a second of the manager's time.
			preByName[name] = p
		} else {
			unread = append(unread, name)
		}
	}
	if len(unread) > 0 {
		pre, err := showUnits(ctx, cfg.Runner, discover.PreProps, unread)
		if err != nil {
			return nil, fmt.Errorf("read units before %s: %w", cfg.Operation, err)
		}
		for i, name := range unread {
			preByName[name] = pre[i]
		}
	}
	var failed []string
	for _, name := range units {
		if preByName[name]["ActiveState"] == "failed" {
			failed = append(failed, name)
		}
	}
	// systemd refuses to start a failed unit that hit its start limit
	// until its failure is reset; a bulk restart is meant to bring it back.
	// Units that are up but get refused for restarting too often are reset
	// and retried one by one (see operate), so the common case costs no
	// call at all.
	if (cfg.Operation == "start" || cfg.Operation == "restart") && len(failed) > 0 {
		if _, err := cfg.Runner.Run(ctx, append([]string{"reset-failed", "--"}, failed...)...); err != nil {
			return nil, fmt.Errorf("reset failed units: %w", err)
		}
	}
	runs := make([]*unitRun, 0, len(units))
	for _, ph := range plan.Phases {
		for _, name := range ph.Units {
			facts := plan.Facts[name]
			u := &unitRun{res: Result{Index: len(runs), Phase: ph.Number, Unit: name, Operation: cfg.Operation},
				done: make(chan struct{}), opt: safefile.ForUser(facts.User), user: cfg.User}
			u.pidBefore = facts.MainPID
			u.last, u.lastKnown = lastOwn(preByName[name], cfg.Operation)
			if facts.FRPBinary != "" && (!cfg.NoTunnel || cfg.Operation == "reload") && cfg.Operation != "stop" {
				// (A stopped tunnel is judged by systemd alone. frp's
				// reload is proven by frp, whatever --no-tunnel-check.)
				u.tun, u.res.Tunnel = loadTunnel(facts.FRPBinary, facts.FRPConfig, facts.WorkDir, u.opt)
			}
			if cfg.Operation == "reload" {
				classifyReload(cfg, u, facts)
			}
			if why, ok := cfg.Refused[name]; ok {
				u.verb = verbRefused
				left := "left running"
				if preByName[name]["ActiveState"] != "active" {
					left = "not started"
				}
				u.solely(StagePreflight, left+": config invalid: "+why)
			}
			p := preByName[name]
			if u.tun != nil && cfg.Operation != "restart" && p["ActiveState"] == "active" {
				// start leaves a running process alone, and reload keeps
				// it: its login happened before the operation.
				u.tun.fromTail = true
			}
			u.logs = logFiles(p["FragmentPath"], strings.Fields(p["DropInPaths"]), name, u.opt)
			if len(u.logs) == 0 && cfg.LogDir != "" {
				u.logs = []string{filepath.Join(cfg.LogDir, discover.ShortName(name)+".log")}
			}
			runs = append(runs, u)
		}
	}
	return runs, nil
}

// waitAccepts waits, with growing gaps, until the server of u accepts
// connections or d has passed since its operation ended.
func waitAccepts(ctx context.Context, u *unitRun, d time.Duration) {
	deadline := u.opEnd.Add(d)
	gap := firstLookGap
	as, err := frp.Addrs(ctx, u.tun.cfg.BindAddr)
	if err != nil {
		return
	}
	for time.Now().Before(deadline) {
		if frp.Accepts(ctx, as[0], u.tun.cfg.BindPort) == nil {
			return
		}
		if !sleep(ctx, min(gap, time.Until(deadline))) {
			return
		}
		gap = min(2*gap, maxLookGap)
	}
}

// awaitServers holds the next phase back until the frp servers of this
// one accept connections, are seen down, or pass their deadline, so that
// clients find their server listening. A server that is not ready is
// noted in the summary; its clients go anyway. It returns false when the
// run was cancelled meanwhile.
func awaitServers(ctx context.Context, cfg Config, batch []*unitRun, sum *Summary) bool {
	if cfg.Operation != "start" && cfg.Operation != "restart" {
		return true
	}
	for _, u := range batch {
		if u.tun == nil || u.tun.cfg.Kind != frp.Server {
			continue
		}
		if !decided(ctx, u) {
			return false
		}
		if !cfg.Verify && u.res.OK {
			// Not verifying is no reason to start clients against a
			// server that does not listen yet.
			waitAccepts(ctx, u, cfg.TunnelDeadline)
		}
		if !u.res.OK && !u.res.NotStarted {
			sum.Notes = append(sum.Notes, fmt.Sprintf("%s was not ready, so its clients started without it: %s",
				discover.ShortName(u.res.Unit), u.res.Reason))
		}
	}
	return true
}

// unitLog gathers what a failed unit wrote to its own output since its
// operation began: its log files, or the journal when it has none.
func unitLog(ctx context.Context, cfg Config, u *unitRun) []string {
	var tail []string
	found := false
	for i, p := range u.logs {
		lines, note := readTail(p, u.offsets[i], u.opt)
		if note != "" {
			u.note(note)
			found = true // it exists: the journal would not be its source
		} else if fileSize(p, u.opt) >= 0 {
			found = true
			tail = append(tail, lines...)
		}
	}
	if !found && cfg.Journal != nil && !u.res.Start.IsZero() {
		tail = cfg.Journal(ctx, u.res.Unit, u.res.Start)
	}
	if len(tail) > maxTailLines {
		tail = tail[len(tail)-maxTailLines:]
	}
	return tail
}

// operate runs one unit's systemctl operation, bounded by cfg.Timeout. A
// timed-out operation has its queued or running systemd job cancelled, so
// nothing is left behind the tool's back.
// It reports whether the call ran to its end, alone (see operateGroup).
func operate(ctx context.Context, cfg Config, u *unitRun, obs Observer) (clean bool) {
	u.markLogs()
	obs.Launched(u.res.Unit)
	u.res.Start = time.Now()
	clean = operateOne(ctx, cfg, u)
	obs.OpEnded(u.res.Unit, u.tun != nil && cfg.Verify && u.res.OK)
	return clean
}

// markLogs records where the unit's logs end as its operation begins.
func (u *unitRun) markLogs() {
	if u.tun != nil {
		u.tun.mark()
	}
	u.offsets = make([]int64, len(u.logs))
	for i, p := range u.logs {
		u.offsets[i] = fileSize(p, u.opt)
	}
}

// operateOne runs the unit's own systemctl call and records its outcome.
// It reports whether one call ran to its end: not cut short, not retried.
func operateOne(ctx context.Context, cfg Config, u *unitRun) (clean bool) {
	opCtx, cancel := ctx, context.CancelFunc(func() {})
	if cfg.Timeout > 0 {
		opCtx, cancel = context.WithTimeout(ctx, cfg.Timeout)
	}
	out, err := cfg.Runner.Run(opCtx, cfg.Operation, "--", u.res.Unit)
	clean = err == nil
	if err == nil && out.ExitCode != 0 && startLimited(cfg.Operation, out) {
		clean = false
		// Refused for starting too often lately (an operator restarting
		// the same units a few times in a row): reset the limit and try
		// once more, within the same timeout.
		if _, rerr := cfg.Runner.Run(opCtx, "reset-failed", "--", u.res.Unit); rerr == nil {
			out, err = cfg.Runner.Run(opCtx, cfg.Operation, "--", u.res.Unit)
		}
	}
	cancel()
	u.opEnd = time.Now()
	u.opEndMono = monotonicMicros()
	u.res.OpDuration = u.opEnd.Sub(u.res.Start)
	u.res.ExitCode = out.ExitCode
	u.res.Stderr = strings.TrimSpace(string(out.Stderr))
	u.res.OK = false
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		u.res.TimedOut = true
		what := fmt.Sprintf("timed out after %s", cfg.Timeout)
		switch n, err := cancelJobs(ctx, cfg.Runner, []string{u.res.Unit}); {
		case err != nil:
			what += fmt.Sprintf(" (could not cancel its systemd job: %v)", err)
		case n[u.res.Unit] > 0:
			what += " (its systemd job was cancelled)"
		}
		u.because(StageOperation, what)
	case err != nil && ctx.Err() != nil:
		u.cancelled = true
	case err != nil:
		u.because(StageOperation, fmt.Sprintf("could not run systemctl: %v", err))
	case out.ExitCode == 0:
		u.res.OK = true
	}
	return clean
}

// startLimited reports whether systemctl was refused by the unit's start
// rate limit. systemd 252 says so only in systemctl's message; the unit's
// Result keeps its previous value.
func startLimited(op string, out systemctl.Output) bool {
	if op != "start" && op != "restart" {
		return false
	}
	msg := string(out.Stderr)
	return strings.Contains(msg, "attempted too often") || strings.Contains(msg, "start-limit")
}

// cancelJobs cancels every pending systemd job of units and returns how
// many each had; jobs of other units are left alone.
func cancelJobs(ctx context.Context, r systemctl.Runner, units []string) (map[string]int, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := r.Run(cctx, "list-jobs", "--no-legend", "--no-pager")
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	want := map[string]bool{}
	for _, u := range units {
		want[u] = true
	}
	counts := map[string]int{}
	var ids []string
	for _, j := range systemctl.ParseListJobs(out.Stdout) {
		if want[j.Unit] {
			ids = append(ids, j.ID)
			counts[j.Unit]++
		}
	}
	if len(ids) == 0 {
		return counts, nil
	}
	c, err := r.Run(cctx, append([]string{"cancel"}, ids...)...)
	if err != nil {
		return nil, fmt.Errorf("cancel: %w", err)
	}
	if c.ExitCode != 0 {
		return nil, fmt.Errorf("cancel: %s", systemctl.Failure(c))
	}
	return counts, nil
}
