// Command moonfrp-bulk starts, stops, restarts and reloads many systemd
// services at once, in parallel, and reports which of them really came up.
package main

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"golang.org/x/sys/unix"

	"github.com/moonfrp/moonfrp-bulk/report"
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
	exitUnknownMoon = 5   // integrate: MoonFRP's service functions are not the ones the shim replaces
	exitOutputLost  = 6   // the output could not be written (a closed pipe, a full disk, a hung-up terminal)
	exitNeedRestart = 7   // reload: some frp units need a restart to take their config, and were left running
	exitInterrupted = 130 // SIGINT or SIGTERM
)

const description = `Start, stop, restart or reload many systemd services at once, in parallel,
and report which of them really came up.

With no UNIT, an operation covers every MoonFRP service (moonfrp-*) on the
host, loaded or not. UNIT may be given with or without .service, and may be
a glob such as 'moonfrp-client-*'.

Order: on start and restart moonfrp-server goes first, then clients and
visitors; on stop clients and visitors go first, then the server. On
restart, the frp clients of a server restarted in the same run are stopped
before it and started once it accepts. Each phase
runs in parallel. Before start and restart, failed units are reset
(systemctl reset-failed), and a unit refused for starting too often is reset
and tried once more, so that units that hit systemd's start limit come back.

An frp unit (ExecStart runs frpc or frps -c CONFIG) succeeds only when its
tunnel is up: a server accepts connections on its bindPort, a client is
logged in with every proxy running (its admin API, else its log.to), within
--tunnel-deadline; a tunnel that frp has refused (a rejected login, a
refused proxy) fails at once, with frp's words. Clients start once the
server accepts, or without it when it is not ready by its deadline. Any
other unit succeeds if it is active right after its operation and stays active,
without restarting, for the settle window (--settle). After stop a unit must
be inactive or failed.

Exit codes:
  0    every unit succeeded, or there was nothing to do
  1    at least one unit failed, or was not started after --max-fail or a
       failed --canary
  2    usage error: bad flag, filter or unit name, missing tag index, no
       earlier run for a last: filter
  3    systemctl or the service manager could not be used (or needs root)
  4    --no-wait, and another moonfrp-bulk run is acting on the same units
  5    integrate: this MoonFRP defines service functions that moonfrp-bulk
       does not know (or lacks ones it replaces); nothing was changed
  6    the output (JSON, the list, the summary) could not be written: a
       closed pipe, a full disk, a terminal that hung up; a run still went
       on to its end and is in the job log (moonfrp-bulk last)
  7    reload: every unit that was reloaded succeeded, but some frp units
       cannot be reloaded in place and were left running as they were
       (--restart-if-needed restarts them)
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

// FailLimit is a --max-fail value: a count of units (N) or a share of
// the plan (N%), after which nothing more is launched.
type FailLimit struct {
	Given   string // as written, "" when not set
	N       int
	Percent bool
}

// Decode implements kong.MapperValue.
func (f *FailLimit) Decode(ctx *kong.DecodeContext) error {
	var s string
	if err := ctx.Scan.PopValueInto("max-fail", &s); err != nil {
		return err
	}
	v, err := ParseFailLimit(s)
	if err != nil {
		return err
	}
	*f = v
	return nil
}

// ParseFailLimit reads N (1 or more units) or N% (over 0, at most 100).
func ParseFailLimit(s string) (FailLimit, error) {
	t := strings.TrimSpace(s)
	num, pct := strings.CutSuffix(t, "%")
	n, err := strconv.Atoi(num)
	switch {
	case err != nil || n < 1 || strings.TrimLeft(num, "0123456789") != "":
		return FailLimit{}, fmt.Errorf("must be a number of units from 1, or a percentage such as 10%%, got %q (for example --max-fail=5; leave it unset for no limit)", s)
	case pct && n > 100:
		return FailLimit{}, fmt.Errorf("a percentage must be from 1%% to 100%%, got %q", s)
	}
	return FailLimit{Given: t, N: n, Percent: pct}, nil
}

// Units is the limit for a plan of total units: N, or N% of total
// rounded up (so that 10% of 5 units still allows one failure).
func (f FailLimit) Units(total int) int {
	if f.Given == "" {
		return 0
	}
	if !f.Percent {
		return f.N
	}
	return max(1, (f.N*total+99)/100)
}

// Globals are flags shared by every command.
type Globals struct {
	Version   kong.VersionFlag `short:"v" help:"Print the version and exit."`
	Quiet     bool             `short:"q" help:"Print only failures, warnings and the summary: no progress."`
	User      bool             `env:"MOONFRP_BULK_USER" help:"Talk to the calling user's service manager (systemctl --user)."`
	Output    string           `short:"o" enum:"auto,text,json" default:"${output_default}" help:"Output: auto (a live line on a terminal, plain text otherwise), text, or json (JSON lines on stdout). Default: json when MOONFRP_LOG_FORMAT=json, else auto."`
	Systemctl string           `hidden:"" env:"MOONFRP_SYSTEMCTL" default:"systemctl" help:"systemctl binary to run."`
	StatusFD  int              `hidden:"" default:"-1" help:"Write 'succeeded=N failed=N not_started=N total=N abandoned=N' to this file descriptor at the end (for the bash shim)."`
}

// OpFlags are the flags of start, stop, restart, reload and bulk.
type OpFlags struct {
	MaxParallel     Parallel      `short:"j" env:"MOONFRP_MAX_PARALLEL" default:"10" placeholder:"N" help:"At most N units in flight at once (default 10; fast units may share one systemctl call, holding a slot each)."`
	Filter          []string      `sep:"none" placeholder:"EXPR" predictor:"filter" help:"Only units matching EXPR: tag:KEY, tag:KEY:VALUE, status:STATE, name:PATTERN, type:server|client|visitor, tunnel:STATE, config:changed|unchanged (the frp config, or a file it includes, changed since frp read it), last:failed|not-started|unfinished (from the previous run's job log). Repeat to AND them."`
	DryRun          bool          `help:"Print the units that would be acted on, by phase, and change nothing."`
	Timeout         time.Duration `default:"2m" help:"Bound on each unit's operation (0: none); a unit that takes longer fails and its systemd job is cancelled."`
	Settle          time.Duration `default:"1s" help:"How long a started unit that is not an frp unit must stay up, without restarting, to count as a success."`
	TunnelDeadline  time.Duration `default:"10s" placeholder:"DUR" help:"How long an frp tunnel may take to be proven up (logged in, every proxy running; a server accepting) before its unit fails (default 10s)."`
	NoTunnelCheck   bool          `help:"Judge frp units by systemd's state and the settle window alone, as other units, without proving their tunnels."`
	NoVerify        bool          `help:"Trust systemctl's exit code; do not check the units' state afterwards."`
	NoWait          bool          `help:"Fail at once (exit 4) if another moonfrp-bulk run is acting on the same units, instead of waiting."`
	MaxFail         FailLimit     `env:"MOONFRP_BULK_MAX_FAIL" placeholder:"N|N%" help:"Stop launching once N units (or N% of them) have failed; operations in flight finish, the rest are reported not started (exit 1). Default: no limit."`
	Canary          int           `env:"MOONFRP_BULK_CANARY" placeholder:"N" help:"In each phase, act on N units first and go on only if all of them succeed (verified, tunnels up). Default: 0, no canary."`
	NoPreflight     bool          `help:"Do not check frp units' configs with frp's own verify before start, restart and reload (a unit whose config frp refuses is otherwise left as it is, and fails)."`
	RestartIfNeeded bool          `help:"On reload, restart the frp units that frp cannot reload in place (frps, an frpc without webServer, a changed server address) instead of leaving them running and reporting them (exit 7)."`
}

// OpCmd is start, stop, restart or reload.
type OpCmd struct {
	Units []string `arg:"" optional:"" name:"unit" predictor:"unit" help:"Units to act on (default: every MoonFRP service)."`
	OpFlags
}

// BulkCmd takes the argument form of MoonFRP's 'moonfrp service bulk'.
type BulkCmd struct {
	Operation string `required:"" enum:"start,stop,restart,reload" help:"start, stop, restart or reload."`
	OpFlags
}

// ListCmd lists MoonFRP services.
type ListCmd struct {
	Filter []string `sep:"none" placeholder:"EXPR" predictor:"filter" help:"Only units matching EXPR (see the operations' --filter)."`
	Names  bool     `help:"Print only the service names, one a line, without .service (as MoonFRP's get_moonfrp_services)."`
}

// LastCmd shows the newest runs from the job log.
type LastCmd struct {
	N int `short:"n" default:"1" placeholder:"N" help:"How many of the newest runs to show (newest first)."`
}

// Run carries out `moonfrp-bulk last`.
func (c *LastCmd) Run(a *app) error { return a.last(*c) }

// shim is the bash shim, carried in the binary so that `integrate`
// installs the one that matches it.
//
//go:embed bash/moonfrp-bulk.sh
var shim []byte

// IntegrateCmd wires the shim into an installed MoonFRP.
type IntegrateCmd struct {
	MoonfrpDir string `name:"moonfrp-dir" placeholder:"DIR" help:"MoonFRP's module directory (default: where 'moonfrp' on PATH lives, symlinks resolved, else /usr/local/bin)."`
	ShimDir    string `default:"/usr/local/share/moonfrp-bulk" placeholder:"DIR" help:"Where the shim is installed (default /usr/local/share/moonfrp-bulk)."`
	Check      bool   `help:"Change nothing; load MoonFRP's modules as moonfrp.sh does and say which service functions run through moonfrp-bulk (exit 0 when all do, 1 otherwise)."`
	Undo       bool   `help:"Remove exactly what integrate added: the block in moonfrp-services.sh and the shim, and turn the watch off."`
	// Watch is how moonfrp-bulk-integrate.service runs it: the same
	// integration, logged for the journal, and a check that cannot load
	// MoonFRP yet (its installer may still be copying modules) is no
	// failure.
	Watch bool `hidden:"" help:"Run as the watch does after MoonFRP replaced moonfrp-services.sh."`
}

// VersionCmd prints the version.
type VersionCmd struct{}

// StartCmd, StopCmd, RestartCmd and ReloadCmd are the operations.
type (
	StartCmd   struct{ OpCmd }
	StopCmd    struct{ OpCmd }
	RestartCmd struct{ OpCmd }
	ReloadCmd  struct{ OpCmd }
)

// examples are shown by each operation's --help.
func examples(op string) string {
	return "Examples:\n" +
		"  moonfrp-bulk " + op + "                                  # every MoonFRP service, 10 at a time\n" +
		"  moonfrp-bulk " + op + " --dry-run --filter=tag:env:prod  # which units, in which phase\n" +
		"  moonfrp-bulk " + op + " -j 50 'moonfrp-client-*'         # by glob, 50 at a time\n" +
		"  moonfrp-bulk " + op + " --filter=tunnel:down             # only the tunnels that are down\n" +
		"  moonfrp-bulk " + op + " --canary=2 --max-fail=5%         # stop early if the change is bad\n" +
		"  moonfrp-bulk " + op + " --filter=last:failed             # again, what failed last time\n" +
		"  moonfrp-bulk " + op + " -o json | jq -r 'select(.event==\"result\" and (.ok|not)) | .unit'"
}

// Help gives start --help its examples.
func (c *StartCmd) Help() string { return examples("start") }

// Help gives stop --help its examples.
func (c *StopCmd) Help() string { return examples("stop") }

// Help gives restart --help its examples.
func (c *RestartCmd) Help() string { return examples("restart") }

// Help gives reload --help its examples.
func (c *ReloadCmd) Help() string { return examples("reload") }

// Run starts units. kong calls the Run method of the command given.
func (c *StartCmd) Run(a *app) error { return a.operate("start", c.Units, c.OpFlags) }

// Run stops units.
func (c *StopCmd) Run(a *app) error { return a.operate("stop", c.Units, c.OpFlags) }

// Run restarts units.
func (c *RestartCmd) Run(a *app) error { return a.operate("restart", c.Units, c.OpFlags) }

// Run reloads units.
func (c *ReloadCmd) Run(a *app) error { return a.operate("reload", c.Units, c.OpFlags) }

// Run runs MoonFRP's 'service bulk' form.
func (c *BulkCmd) Run(a *app) error { return a.operate(c.Operation, nil, c.OpFlags) }

// Run lists services.
func (c *ListCmd) Run(a *app) error { return a.list(*c) }

// Run prints the version.
func (c *VersionCmd) Run(a *app) error {
	fmt.Fprintf(a.streams.Out, "moonfrp-bulk %s\n", buildVersion())
	return nil
}

// buildVersion is the version set at link time, else the module version
// that `go install` records (a tag, or a pseudo-version), else "dev".
func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// Run wires the shim into MoonFRP, checks it or undoes it.
func (c *IntegrateCmd) Run(a *app) error { return a.integrate(*c) }

// CLI is the whole command line.
type CLI struct {
	Globals
	Start      StartCmd      `cmd:"" help:"Start units."`
	Stop       StopCmd       `cmd:"" help:"Stop units (clients and visitors before the server)."`
	Restart    RestartCmd    `cmd:"" help:"Restart units (the server first)."`
	Reload     ReloadCmd     `cmd:"" help:"Reload units: an frpc with an admin API through frp's own reload (no signal, no new login; proxies that changed restart); frps and an frpc without one need a restart, and are reported (--restart-if-needed restarts them); other units by systemctl reload."`
	List       ListCmd       `cmd:"" help:"List MoonFRP services with their load, active and sub state, and tags."`
	Last       LastCmd       `cmd:"" help:"Show how the newest runs ended, from the job log: what to type after a lost ssh session. -n N for more, -o json for the records."`
	Bulk       BulkCmd       `cmd:"" help:"Run an operation with MoonFRP's 'service bulk' flags (--operation=... --filter=... --max-parallel=N --dry-run)."`
	Integrate  IntegrateCmd  `cmd:"" help:"Make MoonFRP's menus and 'moonfrp service' commands run through moonfrp-bulk: installs the shim and sources it at the end of moonfrp-services.sh, so that MoonFRP's repeated loading of that file keeps it. --check and --undo."`
	Version    VersionCmd    `cmd:"" help:"Print the version."`
	Help       HelpCmd       `cmd:"" help:"Show the help of a command (moonfrp-bulk help restart)."`
	Completion CompletionCmd `cmd:"" help:"Print a bash, zsh or fish completion script (commands, flags, unit names, filters)."`
	Man        ManCmd        `cmd:"" hidden:"" help:"Print the man page (roff)."`
}

// flagEnv are the environment variables that set flags' defaults (see
// the env tags above).
var flagEnv = []string{"MOONFRP_BULK_USER", "MOONFRP_MAX_PARALLEL", "MOONFRP_BULK_MAX_FAIL", "MOONFRP_BULK_CANARY"}

// exitError carries an exit code and a one-line message ("" for none):
// every ending of a command leaves through one, or through nil (exit 0).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &exitError{exitUsage, fmt.Sprintf(format, args...)}
}

func main() {
	var code int
	if argsFile, ok := ansibleModule(os.Args); ok {
		code = runModule(argsFile)
	} else {
		code = run(os.Args[1:])
	}
	stopProfile()
	os.Exit(code)
}

// run parses the command line, runs the command, and turns its ending
// into the exit code: the one exit path.
func run(args []string) int {
	return runWith(report.System(), args)
}

// runWith is run with the given streams: the process's own, or buffers
// when the binary runs as an Ansible module.
func runWith(streams *report.Streams, args []string) int {
	return runOn(streams, args, nil).code
}

// ending is how an invocation ended, for a caller in this process (the
// Ansible module): what it printed for people, as values.
type ending struct {
	code     int
	err      string   // the one-line error, without the program's name
	warnings []string // without "moonfrp-bulk: warning: "
	recap    string   // "Bulk restart complete: ..." when an operation ran
}

// runOn is runWith on the given service manager (nil: systemctl's),
// with its ending.
func runOn(streams *report.Streams, args []string, mgr manager) ending {
	// An empty setting means "not set", as in MoonFRP's scripts.
	for _, name := range append([]string{"MOONFRP_SYSTEMCTL"}, flagEnv...) {
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
		kong.Vars{"output_default": outputDefault, "version": "moonfrp-bulk " + buildVersion()},
		kong.Writers(streams.Out, streams.Err),
		kong.Exit(func(code int) { helpExit = code }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
	if err != nil {
		return ending{code: exitCannotRun, err: say(streams, fmt.Sprintf("internal error: %v", err))}
	}
	if completing(args) {
		return ending{code: completeLine(parser)}
	}
	kctx, err := parser.Parse(args)
	if helpExit >= 0 {
		return ending{code: helpExit}
	}
	if err != nil {
		return ending{code: exitUsage, err: say(streams, fmt.Sprintf("%v; see 'moonfrp-bulk --help'", err))}
	}
	streams.Quiet = streams.Quiet || cli.Quiet
	if cli.StatusFD >= 0 {
		// The shim's status descriptor is for this process alone: no
		// systemctl it runs should inherit it.
		unix.CloseOnExec(cli.StatusFD)
	}
	a := newApp(streams, cli.Globals)
	if mgr != nil {
		a.mgr = mgr
	}
	defer a.stopSignals()
	code, msg := exitCode(streams, kctx.Run(a))
	code, lost := outputLost(streams, code)
	if lost != "" {
		msg = lost
	}
	return ending{code: code, err: msg, warnings: a.warnings(), recap: a.recap}
}

// say prints msg as the program's one-line error and returns it.
func say(streams *report.Streams, msg string) string {
	fmt.Fprintf(streams.Err, "moonfrp-bulk: %s\n", msg)
	return msg
}

// exitCode turns a command's ending into its exit code, saying why on
// Err; it returns what it said.
func exitCode(streams *report.Streams, err error) (int, string) {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK, ""
	case errors.As(err, &ee):
		if ee.msg != "" {
			return ee.code, say(streams, ee.msg)
		}
		return ee.code, ""
	default:
		return exitCannotRun, say(streams, err.Error())
	}
}

// outputLost makes a command whose output could not be written end with
// exitOutputLost, whatever it did otherwise (0 or 1): its caller could
// not tell. Usage errors, an unusable manager, a busy lock and an
// interrupt keep their own codes. It returns what it said.
func outputLost(streams *report.Streams, code int) (int, string) {
	out, errs := streams.Lost()
	if (out == nil && errs == nil) || (code != exitOK && code != exitFailed) {
		return code, ""
	}
	if errs == nil {
		return exitOutputLost, say(streams, fmt.Sprintf("the output could not be written (%v); a run went on to its end all the same: see 'moonfrp-bulk last'", out))
	}
	return exitOutputLost, ""
}
