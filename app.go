package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/exec"
	"github.com/moonfrp/moonfrp-bulk/frp"
	"github.com/moonfrp/moonfrp-bulk/joblog"
	"github.com/moonfrp/moonfrp-bulk/lock"
	"github.com/moonfrp/moonfrp-bulk/preflight"
	"github.com/moonfrp/moonfrp-bulk/report"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// manager is what an invocation asks of the service manager: systemctl
// calls, its journal, and which manager it is. *systemctl.Manager runs
// systemctl; unit tests give a scripted one.
type manager interface {
	systemctl.Runner
	systemctl.Journaler
	Scope() string
}

// app is one invocation: streams, the service manager, and signal state.
type app struct {
	streams *report.Streams
	globals Globals
	mgr     manager
	mode    report.Mode
	// api asks frpc admin APIs; one per run keeps connections alive.
	api *frp.API
	// run is the operation's reporter while one runs, for what a signal
	// has to say.
	run atomic.Pointer[report.Run]

	// ctx ends on a second signal: everything in flight is killed.
	ctx    context.Context
	cancel context.CancelFunc
	// launch ends on the first signal, with exec.ErrInterrupted as its
	// cause: nothing new is launched (see exec.Config.Launch), and a wait
	// for another run's locks ends.
	launch     context.Context
	stopLaunch context.CancelCauseFunc
	sigs       chan os.Signal
	// hup takes SIGHUP (the terminal is gone: stop writing to it, and go
	// on) and SIGPIPE (handled, so that a write to a closed pipe is an
	// error that the streams keep, not the end of the process).
	hup     chan os.Signal
	sigDone chan struct{}

	// What the invocation said, for its ending (see ending): warnings,
	// and the recap line of the operation that ran.
	mu     sync.Mutex
	warned []string
	recap  string
}

func newApp(s *report.Streams, g Globals) *app {
	a := &app{streams: s, globals: g, mgr: &systemctl.Manager{Path: g.Systemctl, User: g.User},
		mode: report.Mode(g.Output), api: frp.NewAPI(), sigs: make(chan os.Signal, 2), hup: make(chan os.Signal, 2), sigDone: make(chan struct{})}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.launch, a.stopLaunch = context.WithCancelCause(a.ctx)
	signal.Notify(a.sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	signal.Notify(a.hup, syscall.SIGHUP, syscall.SIGPIPE)
	go a.watchSignals()
	return a
}

func (a *app) watchSignals() {
	n := 0
	for {
		select {
		case <-a.sigDone:
			return
		case sig := <-a.hup:
			// A hangup (the ssh session dropped) is no request to stop:
			// the run goes on to its end, as if nobody were watching,
			// and records itself in the job log for 'moonfrp-bulk last'.
			// Stopping half-way would leave a fleet half restarted.
			if sig == syscall.SIGHUP {
				a.streams.HangUp()
			}
		case <-a.sigs:
			n++
			if n == 1 {
				a.stopLaunch(exec.ErrInterrupted)
				if rep := a.run.Load(); rep != nil {
					rep.Notice(fmt.Sprintf("stopping: waiting for %d operation(s) in flight (Ctrl-C again to abandon them)", rep.InFlight()))
				}
				continue
			}
			// Second signal: kill what runs and leave. The summary and
			// the job log's record are still written if they can be
			// within a few seconds; then the process exits.
			a.cancel()
			time.AfterFunc(5*time.Second, func() { os.Exit(exitInterrupted) })
		}
	}
}

func (a *app) stopSignals() {
	signal.Stop(a.sigs)
	signal.Stop(a.hup)
	close(a.sigDone)
	a.cancel()
}

func (a *app) interrupted() bool { return errors.Is(context.Cause(a.launch), exec.ErrInterrupted) }

// warn prints a warning, and keeps it for the invocation's ending.
func (a *app) warn(format string, args ...any) {
	report.Warn(a.streams.Err, format, args...)
	a.mu.Lock()
	a.warned = append(a.warned, fmt.Sprintf(format, args...))
	a.mu.Unlock()
}

func (a *app) warnings() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.warned
}

// selectUnits turns UNIT arguments and filters into the units to act on
// (see discover.Select), prints its warnings, and maps its errors to exit
// codes.
func (a *app) selectUnits(args, filters []string) (discover.Selection, error) {
	if err := a.needSystemctl(); err != nil {
		return discover.Selection{}, err
	}
	sel, err := discover.Select(a.ctx, a.mgr, args, filters, a.discoverOptions())
	for _, w := range sel.Warnings {
		a.warn("%s", w)
	}
	switch {
	case errors.Is(err, discover.ErrUsage):
		return sel, usageErr("%s", strings.TrimPrefix(err.Error(), discover.ErrUsage.Error()+": "))
	case errors.Is(err, discover.ErrManager):
		return sel, &exitError{exitCannotRun, a.managerAdvice(err, strings.TrimPrefix(err.Error(), discover.ErrManager.Error()+": "))}
	case err != nil:
		return sel, err
	}
	return sel, nil
}

// managerAdvice says what to do about err, a failure to ask the service
// manager (msg is its text): a process out of file descriptors is told
// so, and how to raise the limit; anything else may be a manager that is
// not running.
func (a *app) managerAdvice(err error, msg string) string {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		var lim syscall.Rlimit
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		return fmt.Sprintf("%s: out of file descriptors (limit %d); raise it (ulimit -n, or LimitNOFILE= for a service) and run again", msg, lim.Cur)
	}
	return fmt.Sprintf("%s; is the %s manager running?", msg, a.mgr.Scope())
}

// needSystemctl finds systemctl once, not on every one of possibly
// thousands of calls. version and integrate do without it.
func (a *app) needSystemctl() error {
	m, ok := a.mgr.(*systemctl.Manager)
	if !ok {
		return nil // a scripted manager runs no systemctl
	}
	path, err := osexec.LookPath(m.Path)
	if err != nil {
		return &exitError{exitCannotRun, fmt.Sprintf("%s not found: moonfrp-bulk drives systemd and needs its systemctl on PATH", m.Path)}
	}
	m.Path = path
	if err := fdFloor(); err != nil {
		return &exitError{exitCannotRun, err.Error()}
	}
	return nil
}

func (a *app) discoverOptions() discover.Options {
	dir, _ := joblog.Dir(a.globals.User) // "": last: filters say why
	return discover.Options{DataDir: dataDir(), API: a.api, StateDir: dir}
}

// record appends the run to the job log, for --filter=last:...; a log
// that cannot be written costs a warning, never the run's exit code.
func (a *app) record(plan report.Header, sum exec.Summary) {
	dir, err := joblog.Dir(a.globals.User)
	if err == nil {
		err = joblog.Append(dir, report.JobRecord(plan, sum, time.Now()))
	}
	if err != nil {
		a.warn("%v; --filter=last:... will not see this run", err)
	}
}

// logDir is MoonFRP's MOONFRP_LOG_DIR, where a unit that names no log file
// of its own may still have <service>.log.
func logDir() string {
	if d := os.Getenv("MOONFRP_LOG_DIR"); d != "" {
		return d
	}
	return "/var/log/frp"
}

func dataDir() string {
	if d := os.Getenv("MOONFRP_DATA_DIR"); d != "" {
		return d
	}
	return discover.DefaultDataDir
}

// writeStatus gives the bash shim the counts it returns, through a file
// descriptor it opened, so that stderr can stay the caller's terminal.
func (a *app) writeStatus(sum exec.Summary) {
	if a.globals.StatusFD < 0 {
		return
	}
	f := os.NewFile(uintptr(a.globals.StatusFD), "status")
	if f == nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "succeeded=%d failed=%d not_started=%d total=%d abandoned=%d\n", sum.Succeeded, sum.Failed, sum.NotStarted, sum.Total, sum.Abandoned)
}

// last prints the newest runs of the job log.
func (a *app) last(c LastCmd) error {
	if c.N < 1 {
		return usageErr("-n must be at least 1, got %d (for example -n 5)", c.N)
	}
	dir, err := joblog.Dir(a.globals.User)
	if err != nil {
		return &exitError{exitCannotRun, err.Error()}
	}
	recs, skipped, err := joblog.Recent(dir, c.N)
	switch {
	case errors.Is(err, joblog.ErrNoRuns):
		return usageErr("%v; a run of start, stop, restart or reload records itself there", err)
	case err != nil:
		return &exitError{exitCannotRun, err.Error()}
	}
	report.Last(a.streams, a.mode, recs, skipped)
	return nil
}

func (a *app) list(c ListCmd) error {
	sel, err := a.selectUnits(nil, c.Filter)
	if err != nil {
		return err
	}
	if c.Names {
		for _, u := range sel.Units {
			fmt.Fprintln(a.streams.Out, u.Short())
		}
		return nil
	}
	if err := discover.Describe(a.ctx, a.mgr, &sel, a.discoverOptions()); err != nil {
		return &exitError{exitCannotRun, fmt.Sprintf("list: %v", err)}
	}
	if a.mode == report.JSON {
		if sel.Aliases, err = discover.Aliases(a.ctx, a.mgr); err != nil {
			return &exitError{exitCannotRun, fmt.Sprintf("list: %v", err)}
		}
	}
	if err := report.List(a.streams, a.mode, sel); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	return nil
}

func (a *app) operate(op string, args []string, f OpFlags) error {
	if f.Timeout < 0 || f.Settle < 0 || f.TunnelDeadline <= 0 {
		return usageErr("--timeout and --settle must not be negative, and --tunnel-deadline must be positive (for example --tunnel-deadline=10s)")
	}
	if f.Canary < 0 {
		return usageErr("--canary must be 0 (none) or a number of units, got %d (for example --canary=2)", f.Canary)
	}
	sel, err := a.selectUnits(args, f.Filter)
	if err != nil {
		return err
	}
	j := int(f.MaxParallel)
	if lim, ok := fdLimit(); ok {
		if fit, err := fdBudget(lim, j); err == nil && fit < min(j, len(sel.Units)) {
			a.warn("-j %d lowered to %d: the file descriptor limit is %d; raise it (ulimit -n, or LimitNOFILE= for a service) for more", j, fit, lim)
			j = fit
		}
	}
	var locks *lock.Set
	if !f.DryRun && len(sel.Units) > 0 {
		// The units are locked before their state is read, so that the
		// state read with the facts (see discover.Facts.Pre) is the
		// state the run begins from, whoever ran before.
		if !a.globals.User && os.Geteuid() != 0 {
			// Its lock directory is root's, and so, on MoonFRP hosts, are
			// the units' logs and configs that verification reads.
			return &exitError{exitCannotRun, fmt.Sprintf("%s on the system manager needs root: run it as root (sudo moonfrp-bulk ...), or add --user for your own services", op)}
		}
		// The first signal also ends a wait for another run's locks.
		names := make([]string, len(sel.Units))
		for i, u := range sel.Units {
			names[i] = u.Name
		}
		locks, err = lock.Acquire(a.launch, lock.Dir(a.globals.User), names, lock.Options{
			NoWait: f.NoWait,
			OnWait: func(pid int) {
				if pid > 0 {
					fmt.Fprintf(a.streams.Err, "waiting for another moonfrp-bulk run (pid %d)...\n", pid)
				} else {
					fmt.Fprintln(a.streams.Err, "waiting for a lock held by another process (not a moonfrp-bulk run that can be named)...")
				}
			},
		})
		if err != nil {
			switch {
			case errors.Is(err, lock.ErrBusy):
				return &exitError{exitBusy, fmt.Sprintf("%v; retry later, or drop --no-wait to wait for it", err)}
			case a.interrupted():
				return &exitError{exitInterrupted, "interrupted while waiting for another run; nothing was done"}
			}
			return &exitError{exitCannotRun, err.Error()}
		}
		defer locks.Release()
	}
	if sel.Facts != nil {
		// Read by a filter, before the locks: the run reads the state
		// again.
		for name, facts := range sel.Facts {
			facts.Pre = nil
			sel.Facts[name] = facts
		}
	}
	if sel.Facts == nil && len(sel.Units) > 0 {
		// What each unit runs decides its phase: one batched show.
		if sel.Facts, err = discover.ReadFacts(a.ctx, a.mgr, sel.Units); err != nil {
			return &exitError{exitCannotRun, a.managerAdvice(err, err.Error())}
		}
	}
	work := discover.NewPlan(op, sel.Units, sel.Facts)
	names := work.Units()
	set := exec.Settings{Operation: op, MaxParallel: j, Timeout: f.Timeout,
		Verify: !f.NoVerify, Settle: f.Settle, TunnelDeadline: f.TunnelDeadline, NoTunnel: f.NoTunnelCheck, User: a.globals.User,
		MaxFail: f.MaxFail.Units(len(names)), Canary: f.Canary, RestartIfNeeded: f.RestartIfNeeded}
	plan := report.Header{Settings: set, Manager: a.mgr.Scope(), Filters: f.Filter, MaxFailGiven: f.MaxFail.Given,
		Phases: work.Phases, Missing: map[string]bool{}}
	for name, facts := range sel.Facts {
		if facts.LoadState == "not-found" {
			plan.Missing[name] = true
		}
	}
	if !f.NoPreflight && op != "stop" {
		// frp's verify of every frp unit's config, before anything is
		// touched: a config that cannot start leaves its unit as it is.
		plan.Refused = preflight.Check(a.ctx, names, sel.Facts, joblog.Reloaded(a.discoverOptions().StateDir), j)
	}
	if f.DryRun {
		return report.DryRun(a.streams, a.mode, plan)
	}
	if len(names) == 0 {
		a.warn("No services found for bulk %s; nothing to do (see 'moonfrp-bulk list')", op)
		report.NewRun(a.streams, a.mode, plan).End(exec.Summary{Operation: op})
		a.writeStatus(exec.Summary{})
		return nil
	}
	rep := report.NewRun(a.streams, a.mode, plan)
	rep.Begin()
	a.run.Store(rep)
	defer a.run.Store(nil)
	sum, err := exec.Run(a.ctx, exec.Config{Settings: set, LogDir: logDir(), Journal: exec.JournalReader(a.mgr, a.globals.User),
		Runner: a.mgr, Launch: a.launch, API: a.api, Refused: plan.Refused}, work, rep)
	if err != nil {
		// Nothing ran: no summary line that scripts would read as one.
		rep.Abort()
		return &exitError{exitCannotRun, a.managerAdvice(err, err.Error())}
	}
	rep.End(sum)
	a.recap = report.Recap(sum)
	a.writeStatus(sum)
	// The units are free for the next run before the job log is written.
	locks.Release()
	a.record(plan, sum)
	switch {
	case sum.Lost != "":
		return &exitError{exitCannotRun, fmt.Sprintf("the %s manager stopped answering mid-run (%s); %d unit(s) not started; check it (systemctl%s is-system-running) and run again",
			a.mgr.Scope(), sum.Lost, sum.NotStarted, map[bool]string{true: " --user", false: ""}[a.globals.User])}
	case sum.Interrupted || a.interrupted():
		return &exitError{exitInterrupted, ""}
	case sum.Failed > 0:
		return &exitError{exitFailed, ""}
	case sum.NeedsRestart > 0:
		return &exitError{exitNeedRestart, ""}
	}
	return nil
}
