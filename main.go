// Command moonfrp-bulk starts, stops, restarts and reloads many systemd
// services at once, in parallel, and reports which of them really came up.
package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"golang.org/x/sys/unix"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/exec"
	"github.com/moonfrp/moonfrp-bulk/frp"
	"github.com/moonfrp/moonfrp-bulk/integrate"
	"github.com/moonfrp/moonfrp-bulk/lock"
	"github.com/moonfrp/moonfrp-bulk/report"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes, documented in --help and the README.
const (
	exitOK          = 0
	exitFailed      = 1   // at least one unit failed
	exitUsage       = 2   // bad flags, filters, unit names or a missing tag index
	exitCannotRun   = 3   // systemctl or the service manager could not be used
	exitBusy        = 4   // --no-wait and another run holds some of the units
	exitInterrupted = 130 // SIGINT or SIGTERM
)

const description = `Start, stop, restart or reload many systemd services at once, in parallel,
and report which of them really came up.

With no UNIT, an operation covers every MoonFRP service (moonfrp-*) on the
host, loaded or not. UNIT may be given with or without .service, and may be
a glob such as 'moonfrp-client-*'.

Order: on start and restart moonfrp-server goes first, then clients and
visitors; on stop clients and visitors go first, then the server. Each phase
runs in parallel. Before start and restart, failed units are reset
(systemctl reset-failed), and a unit refused for starting too often is reset
and tried once more, so that units that hit systemd's start limit come back.

An frp unit (ExecStart runs frpc or frps -c CONFIG) succeeds only when its
tunnel is up: a server accepts connections on its bindPort, a client is
logged in with every proxy running (its admin API, else its log.to), within
--tunnel-deadline. Clients start only once the server accepts. Any other
unit succeeds if it is active right after its operation and stays active,
without restarting, for the settle window (--settle). After stop a unit must
be inactive or failed.

Exit codes:
  0    every unit succeeded, or there was nothing to do
  1    at least one unit failed
  2    usage error: bad flag, filter or unit name, missing tag index
  3    systemctl or the service manager could not be used (or needs root)
  4    --no-wait, and another moonfrp-bulk run is acting on the same units
  130  interrupted (SIGINT or SIGTERM); the summary counts units not started`

// maxParallel bounds -j: beyond it systemd's single-threaded manager is
// long saturated, and each slot costs a systemctl process.
const maxParallel = 1000

// Parallel is a --max-parallel value: a whole number from 1 to maxParallel.
type Parallel int

// Decode implements kong.MapperValue, so that a bad value gets our message.
func (p *Parallel) Decode(ctx *kong.DecodeContext) error {
	var s string
	if err := ctx.Scan.PopValueInto("max-parallel", &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > maxParallel {
		return fmt.Errorf("must be a whole number from 1 to %d, got %q (for example -j 10)", maxParallel, s)
	}
	*p = Parallel(n)
	return nil
}

// Globals are flags shared by every command.
type Globals struct {
	User      bool   `env:"MOONFRP_BULK_USER" help:"Talk to the calling user's service manager (systemctl --user)."`
	Output    string `short:"o" enum:"auto,text,json" default:"${output_default}" help:"Output: auto (a live line on a terminal, plain text otherwise), text, or json (JSON lines on stdout). Default: json when MOONFRP_LOG_FORMAT=json, else auto."`
	Systemctl string `hidden:"" env:"MOONFRP_SYSTEMCTL" default:"systemctl" help:"systemctl binary to run."`
	StatusFD  int    `hidden:"" default:"-1" help:"Write 'succeeded=N failed=N not_started=N total=N' to this file descriptor at the end (for the bash shim)."`
}

// OpFlags are the flags of start, stop, restart, reload and bulk.
type OpFlags struct {
	MaxParallel    Parallel      `short:"j" env:"MOONFRP_MAX_PARALLEL" default:"10" placeholder:"N" help:"At most N systemctl operations at once."`
	Filter         []string      `sep:"none" placeholder:"EXPR" help:"Only units matching EXPR: tag:KEY, tag:KEY:VALUE, status:STATE, name:PATTERN, type:server|client|visitor, tunnel:STATE. Repeat to AND them."`
	DryRun         bool          `help:"Print the units that would be acted on, by phase, and change nothing."`
	Timeout        time.Duration `default:"2m" help:"Bound on each unit's operation (0: none); a unit that takes longer fails and its systemd job is cancelled."`
	Settle         time.Duration `default:"1s" help:"How long a started unit that is not an frp unit must stay up, without restarting, to count as a success."`
	TunnelDeadline time.Duration `default:"10s" placeholder:"DUR" help:"How long an frp tunnel may take to be proven up (logged in, every proxy running; a server accepting) before its unit fails."`
	NoTunnelCheck  bool          `help:"Judge frp units by systemd's state and the settle window alone, as other units, without proving their tunnels."`
	NoVerify       bool          `help:"Trust systemctl's exit code; do not check the units' state afterwards."`
	NoWait         bool          `help:"Fail at once (exit 4) if another moonfrp-bulk run is acting on the same units, instead of waiting."`
}

// OpCmd is start, stop, restart or reload.
type OpCmd struct {
	Units []string `arg:"" optional:"" name:"unit" help:"Units to act on (default: every MoonFRP service)."`
	OpFlags
}

// BulkCmd takes the argument form of MoonFRP's 'moonfrp service bulk'.
type BulkCmd struct {
	Operation string `required:"" enum:"start,stop,restart,reload" help:"start, stop, restart or reload."`
	OpFlags
}

// ListCmd lists MoonFRP services.
type ListCmd struct {
	Filter []string `sep:"none" placeholder:"EXPR" help:"Only units matching EXPR (see the operations' --filter)."`
	Names  bool     `help:"Print only the service names, one a line, without .service (as MoonFRP's get_moonfrp_services)."`
}

// shim is the bash shim, carried in the binary so that `integrate`
// installs the one that matches it.
//
//go:embed bash/moonfrp-bulk.sh
var shim []byte

// IntegrateCmd wires the shim into an installed MoonFRP.
type IntegrateCmd struct {
	MoonfrpDir string `name:"moonfrp-dir" placeholder:"DIR" help:"MoonFRP's module directory (default: where 'moonfrp' on PATH lives, symlinks resolved, else /usr/local/bin)."`
	ShimDir    string `default:"/usr/local/share/moonfrp-bulk" placeholder:"DIR" help:"Where the shim is installed."`
	Check      bool   `help:"Change nothing; load MoonFRP's modules as moonfrp.sh does and say which service functions run through moonfrp-bulk (exit 0 when all do, 1 otherwise)."`
	Undo       bool   `help:"Remove exactly what integrate added: the block in moonfrp-services.sh and the shim."`
}

// VersionCmd prints the version.
type VersionCmd struct{}

// CLI is the whole command line.
type CLI struct {
	Globals
	Start     OpCmd        `cmd:"" help:"Start units."`
	Stop      OpCmd        `cmd:"" help:"Stop units (clients and visitors before the server)."`
	Restart   OpCmd        `cmd:"" help:"Restart units (the server first)."`
	Reload    OpCmd        `cmd:"" help:"Reload units (ExecReload, e.g. SIGHUP to frpc)."`
	List      ListCmd      `cmd:"" help:"List MoonFRP services with their load, active and sub state, and tags."`
	Bulk      BulkCmd      `cmd:"" help:"Run an operation with MoonFRP's 'service bulk' flags (--operation=... --filter=... --max-parallel=N --dry-run)."`
	Integrate IntegrateCmd `cmd:"" help:"Make MoonFRP's menus and 'moonfrp service' commands run through moonfrp-bulk: installs the shim and sources it at the end of moonfrp-services.sh, so that MoonFRP's repeated loading of that file keeps it. --check and --undo."`
	Version   VersionCmd   `cmd:"" help:"Print the version."`
}

// exitError carries an exit code and a one-line message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &exitError{exitUsage, fmt.Sprintf(format, args...)}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	streams := report.System()
	// An empty setting means "not set", as in MoonFRP's scripts.
	for _, name := range []string{"MOONFRP_MAX_PARALLEL", "MOONFRP_SYSTEMCTL", "MOONFRP_BULK_USER"} {
		if v, ok := os.LookupEnv(name); ok && strings.TrimSpace(v) == "" {
			os.Unsetenv(name)
		}
	}
	outputDefault := "auto"
	if os.Getenv("MOONFRP_LOG_FORMAT") == "json" {
		outputDefault = "json"
	}
	var cli CLI
	helpExit := -1
	parser, err := kong.New(&cli,
		kong.Name("moonfrp-bulk"),
		kong.Description(description),
		kong.Vars{"output_default": outputDefault},
		kong.Writers(streams.Out, streams.Err),
		kong.Exit(func(code int) { helpExit = code }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
	if err != nil {
		fmt.Fprintf(streams.Err, "moonfrp-bulk: internal error: %v\n", err)
		return exitCannotRun
	}
	kctx, err := parser.Parse(args)
	if helpExit >= 0 {
		return helpExit
	}
	if err != nil {
		fmt.Fprintf(streams.Err, "moonfrp-bulk: %v; see 'moonfrp-bulk --help'\n", err)
		return exitUsage
	}

	if cli.StatusFD >= 0 {
		// The shim's status descriptor is for this process alone: no
		// systemctl it runs should inherit it.
		unix.CloseOnExec(cli.StatusFD)
	}
	cmd := kctx.Command()
	if cmd == "integrate" {
		return runIntegrate(streams, cli.Integrate)
	}
	if cmd != "version" {
		// Resolve once, not on every one of possibly thousands of calls.
		path, err := osexec.LookPath(cli.Systemctl)
		if err != nil {
			fmt.Fprintf(streams.Err, "moonfrp-bulk: %s not found: moonfrp-bulk drives systemd and needs its systemctl on PATH\n", cli.Systemctl)
			return exitCannotRun
		}
		cli.Systemctl = path
	}
	app := newApp(streams, cli.Globals)
	defer app.stopSignals()

	var runErr error
	switch {
	case cmd == "version":
		fmt.Fprintf(streams.Out, "moonfrp-bulk %s\n", version)
	case cmd == "list":
		runErr = app.list(cli.List)
	case cmd == "bulk":
		runErr = app.operate(cli.Bulk.Operation, nil, cli.Bulk.OpFlags)
	default:
		op := strings.Fields(cmd)[0]
		c := map[string]OpCmd{"start": cli.Start, "stop": cli.Stop, "restart": cli.Restart, "reload": cli.Reload}[op]
		runErr = app.operate(op, c.Units, c.OpFlags)
	}
	var ee *exitError
	switch {
	case runErr == nil:
		return app.code
	case errors.As(runErr, &ee):
		if ee.msg != "" {
			fmt.Fprintf(streams.Err, "moonfrp-bulk: %s\n", ee.msg)
		}
		return ee.code
	default:
		fmt.Fprintf(streams.Err, "moonfrp-bulk: %v\n", runErr)
		return exitCannotRun
	}
}

// app is one invocation: streams, the service manager, and signal state.
type app struct {
	streams *report.Streams
	globals Globals
	mgr     systemctl.Manager
	mode    report.Mode
	code    int
	// api asks frpc admin APIs; one per run keeps connections alive.
	api *frp.API

	// ctx ends on a second signal: everything in flight is killed.
	ctx    context.Context
	cancel context.CancelFunc
	// drain closes on the first signal: nothing new is launched.
	drain   chan struct{}
	sigs    chan os.Signal
	sigDone chan struct{}
}

func newApp(s *report.Streams, g Globals) *app {
	a := &app{streams: s, globals: g, mgr: systemctl.Manager{Path: g.Systemctl, User: g.User},
		mode: report.Mode(g.Output), api: frp.NewAPI(), drain: make(chan struct{}), sigs: make(chan os.Signal, 2), sigDone: make(chan struct{})}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	signal.Notify(a.sigs, syscall.SIGINT, syscall.SIGTERM)
	go a.watchSignals()
	return a
}

func (a *app) watchSignals() {
	n := 0
	for {
		select {
		case <-a.sigDone:
			return
		case <-a.sigs:
			n++
			if n == 1 {
				close(a.drain)
				continue
			}
			// Second signal: kill what runs and leave. The summary still
			// prints if it can within a moment; then the process exits.
			a.cancel()
			time.AfterFunc(2*time.Second, func() { os.Exit(exitInterrupted) })
		}
	}
}

func (a *app) stopSignals() {
	signal.Stop(a.sigs)
	close(a.sigDone)
	a.cancel()
}

func (a *app) interrupted() bool {
	select {
	case <-a.drain:
		return true
	default:
		return false
	}
}

func (a *app) warn(format string, args ...any) { report.Warn(a.streams.Err, format, args...) }

// resolve turns UNIT arguments and filters into the units to act on.
func (a *app) resolve(args []string, filterExprs []string) (discover.Selection, error) {
	filters := make([]discover.Filter, 0, len(filterExprs))
	for _, e := range filterExprs {
		f, err := discover.ParseFilter(e)
		if err != nil {
			return discover.Selection{}, usageErr("%v", err)
		}
		filters = append(filters, f)
	}
	var names []string
	needDiscovery := len(args) == 0 || len(filters) > 0
	for _, arg := range args {
		n, err := discover.Normalize(arg)
		if err != nil {
			return discover.Selection{}, usageErr("%v", err)
		}
		if discover.IsPattern(n) {
			needDiscovery = true
		}
		names = append(names, n)
	}
	var all []discover.Unit
	if needDiscovery {
		var err error
		all, err = discover.All(a.ctx, a.mgr)
		if err != nil {
			return discover.Selection{}, &exitError{exitCannotRun, fmt.Sprintf("%v; is the %s manager running?", err, a.mgr.Scope())}
		}
	}
	units := all
	if len(args) > 0 {
		byName := map[string]discover.Unit{}
		for _, u := range all {
			byName[u.Name] = u
		}
		seen := map[string]bool{}
		units = nil
		add := func(u discover.Unit) {
			if !seen[u.Name] {
				seen[u.Name] = true
				units = append(units, u)
			}
		}
		for i, n := range names {
			if !discover.IsPattern(n) {
				u, ok := byName[n]
				if !ok {
					// Not a MoonFRP unit systemd lists; systemctl will
					// say what is wrong with it.
					u = discover.Unit{Name: n, Load: "unknown", Active: "unknown", Sub: "unknown"}
				}
				add(u)
				continue
			}
			matched := false
			for _, u := range all {
				if discover.MatchName(n, u.Name) {
					add(u)
					matched = true
				}
			}
			if !matched {
				a.warn("%q matches no MoonFRP service", args[i])
			}
		}
	}
	sel, err := discover.Apply(a.ctx, a.mgr, units, filters, a.discoverOptions())
	if err != nil {
		if errors.Is(err, discover.ErrNoIndex) {
			return sel, usageErr("tag filter: %v", err)
		}
		return sel, &exitError{exitCannotRun, fmt.Sprintf("filter: %v", err)}
	}
	for _, w := range sel.Warnings {
		a.warn("%s", w)
	}
	if sel.Empty != "" {
		a.warn("filter %q matches no service", sel.Empty)
	}
	return sel, nil
}

func (a *app) discoverOptions() discover.Options {
	return discover.Options{DataDir: dataDir(), API: a.api}
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

func (a *app) list(c ListCmd) error {
	sel, err := a.resolve(nil, c.Filter)
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
	if err := report.List(a.streams, a.mode, sel); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	return nil
}

func (a *app) operate(op string, args []string, f OpFlags) error {
	if f.Timeout < 0 || f.Settle < 0 || f.TunnelDeadline <= 0 {
		return usageErr("--timeout and --settle must not be negative, and --tunnel-deadline must be positive (for example --tunnel-deadline=10s)")
	}
	sel, err := a.resolve(args, f.Filter)
	if err != nil {
		return err
	}
	units := sel.Units
	names := make([]string, len(units))
	for i, u := range units {
		names[i] = u.Name
	}
	plan := report.Plan{Operation: op, Manager: a.mgr.Scope(), MaxParallel: int(f.MaxParallel),
		Verify: !f.NoVerify, Settle: f.Settle, Timeout: f.Timeout, TunnelDeadline: f.TunnelDeadline, Filters: f.Filter,
		Phases: exec.Phases(op, names)}
	if f.DryRun {
		return report.DryRun(a.streams, a.mode, plan)
	}
	if !a.globals.User && os.Geteuid() != 0 {
		return &exitError{exitCannotRun, fmt.Sprintf("%s on the system manager needs root: run it as root (sudo moonfrp-bulk ...), or add --user for your own services", op)}
	}
	if len(names) == 0 {
		a.warn("No services found for bulk %s; nothing to do (see 'moonfrp-bulk list')", op)
		if a.mode == report.JSON {
			report.NewRun(a.streams, a.mode, plan).End(exec.Summary{Operation: op})
		}
		a.writeStatus(exec.Summary{})
		return nil
	}

	// The first signal also ends a wait for another run's locks.
	lockCtx, lockCancel := context.WithCancel(a.ctx)
	defer lockCancel()
	go func() {
		select {
		case <-a.drain:
			lockCancel()
		case <-lockCtx.Done():
		}
	}()
	locks, err := lock.Acquire(lockCtx, lock.Dir(a.globals.User), names, lock.Options{
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

	rep := report.NewRun(a.streams, a.mode, plan)
	rep.Begin()
	sum, err := exec.Run(a.ctx, exec.Config{
		Operation: op, MaxParallel: int(f.MaxParallel), Timeout: f.Timeout,
		Verify: !f.NoVerify, Settle: f.Settle, TunnelDeadline: f.TunnelDeadline, NoTunnel: f.NoTunnelCheck, LogDir: logDir(),
		Journal: exec.JournalReader(a.mgr, a.globals.User), Runner: a.mgr, Drain: a.drain, API: a.api,
	}, names, rep)
	if err != nil {
		// Nothing ran: no summary line that scripts would read as one.
		rep.Abort()
		return &exitError{exitCannotRun, fmt.Sprintf("%v; is the %s manager running?", err, a.mgr.Scope())}
	}
	rep.End(sum)
	a.writeStatus(sum)
	switch {
	case sum.Lost != "":
		return &exitError{exitCannotRun, fmt.Sprintf("the %s manager stopped answering mid-run (%s); %d unit(s) not started; check it (systemctl%s is-system-running) and run again",
			a.mgr.Scope(), sum.Lost, sum.NotStarted, map[bool]string{true: " --user", false: ""}[a.globals.User])}
	case sum.Interrupted || a.interrupted():
		a.code = exitInterrupted
	case sum.Failed > 0:
		a.code = exitFailed
	}
	return nil
}

// runIntegrate carries out `moonfrp-bulk integrate`.
func runIntegrate(s *report.Streams, c IntegrateCmd) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(s.Err, "moonfrp-bulk: integrate: %v\n", err)
		return code
	}
	dir, err := integrate.Find(c.MoonfrpDir)
	if err != nil {
		return fail(exitUsage, err)
	}
	bin, err := os.Executable()
	if err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		return fail(exitCannotRun, fmt.Errorf("find this binary: %w", err))
	}
	opt := integrate.Options{Dir: dir, ShimDir: c.ShimDir, Shim: shim, Bin: bin}
	ctx := context.Background()
	switch {
	case c.Check && c.Undo:
		return fail(exitUsage, errors.New("--check and --undo exclude each other"))
	case c.Check:
		st, err := integrate.Check(ctx, dir)
		if err != nil {
			return fail(exitCannotRun, err)
		}
		report.IntegrationStatus(s, dir, st)
		if !st.Integrated() {
			return exitFailed
		}
		return exitOK
	case c.Undo:
		ch, err := integrate.Undo(opt)
		if err != nil {
			return fail(exitCannotRun, err)
		}
		if ch.Done == "absent" {
			fmt.Fprintf(s.Out, "moonfrp-bulk was not integrated in %s; nothing to undo\n", ch.Services)
		} else {
			fmt.Fprintf(s.Out, "Removed moonfrp-bulk from %s; MoonFRP's own service functions run again\n", ch.Services)
		}
		return exitOK
	}
	ch, err := integrate.Apply(opt)
	if err != nil {
		return fail(exitCannotRun, err)
	}
	st, err := integrate.Check(ctx, dir)
	if err != nil {
		return fail(exitCannotRun, fmt.Errorf("integrated, but checking it failed: %w", err))
	}
	report.Integrated(s, ch.Services, ch.Shim, ch.Backup, ch.Done, st)
	if !st.Integrated() {
		return exitFailed
	}
	return exitOK
}
