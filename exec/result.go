package exec

import "time"

// Result is one unit's outcome. A unit that fails is a Result with OK
// false, never an error: errors are kept for the tool's own failures.
type Result struct {
	Index     int    // position in the plan, for stable ordering
	Phase     int    // the phase the unit ran in, counted from 1
	Unit      string // full unit name
	Operation string
	OK        bool
	// NotStarted is set for units that were never launched because the
	// run was interrupted, halted, or the manager was lost.
	NotStarted bool
	// Abandoned is set for units whose operation or verification was cut
	// short by a second interrupt; State then holds what was read once
	// afterwards, if the manager answered.
	Abandoned bool
	// TimedOut is set when the operation did not finish within the timeout.
	TimedOut bool
	// NeedsRestart is set, on reload, for an frp unit that frp cannot
	// reload in place (Reason says why): it was left running as it was.
	NeedsRestart bool
	// Start and End bound the whole unit: operation plus verification.
	Start, End time.Time
	// OpDuration is how long the systemctl call itself took; for units
	// that shared a call (GroupSize > 1), the whole call's duration.
	OpDuration time.Duration
	GroupSize  int    // units in the unit's systemctl call
	ExitCode   int    // systemctl's exit code
	Stderr     string // systemctl's own error text, as printed
	// State after the operation (and settle window), e.g. "active/running".
	State     string
	SDResult  string // systemd's Result= (success, exit-code, timeout, ...)
	NRestarts int
	// Stage is the step that decided a unit that did not succeed (or,
	// on reload, that needs a restart); StageNone otherwise.
	Stage Stage
	// Reason is one line for people; Detail holds everything known.
	Reason  string
	Detail  string
	LogTail []string
	// Tunnel is set for frp units: what frp-level verification found.
	Tunnel *Tunnel
}

// Duration is the time from launch to verdict.
func (r Result) Duration() time.Duration {
	if r.End.IsZero() || r.Start.IsZero() {
		return 0
	}
	return r.End.Sub(r.Start)
}

// Observer receives a run's events. Its methods are called from several
// goroutines at once and must be safe for that.
type Observer interface {
	// Launched is called just before a unit's systemctl operation starts.
	Launched(unit string)
	// OpEnded is called when the operation returns and verification
	// begins; tunnel is true when the unit's tunnel is to be proven.
	OpEnded(unit string, tunnel bool)
	// Finished is called once per unit with its final result, including
	// units that were never launched.
	Finished(r Result)
}

// Summary counts a run's outcomes.
type Summary struct {
	Operation  string
	Total      int
	Succeeded  int
	Failed     int // abandoned units included
	NotStarted int
	// NeedsRestart counts the units that a reload left running because
	// frp cannot reload them in place (see Result.NeedsRestart).
	NeedsRestart int
	Abandoned    int
	Interrupted  bool
	// Lost says why the run stopped launching when the service manager
	// stopped answering mid-run ("" otherwise).
	Lost string
	// Halted says why the run stopped launching on its own brake: the
	// failure limit reached, or a canary that failed ("" otherwise).
	Halted string
	// Stopped is why the run stopped launching (the cause of its launch
	// context: ErrInterrupted, ErrTerminalLost, ErrManagerLost or a
	// *BrakeError), nil when it launched every unit it meant to. Lost,
	// Halted and Interrupted say the same for the report and JSON.
	Stopped  error
	Duration time.Duration
	// Notes are run-level findings shown above the failures, such as a
	// server that was not ready when its clients started.
	Notes []string
	// Results holds every unit's result in plan order.
	Results []Result
}
