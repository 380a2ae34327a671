package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/exec"
	"github.com/moonfrp/moonfrp-bulk/joblog"
	"github.com/moonfrp/moonfrp-bulk/sanitize"
	"golang.org/x/sys/unix"
)

// SchemaVersion is the version of the JSON line format. It changes only
// when a field is removed or changes meaning; new fields may appear.
const SchemaVersion = 2

// Mode is the output mode: auto, text or json.
type Mode string

// Output modes.
const (
	Auto Mode = "auto"
	Text Mode = "text"
	JSON Mode = "json"
)

// Header is what a run says of itself before it starts (the start event,
// a dry run, the job log): its operation, settings and phases. Not to be
// confused with discover.Plan, which it shows.
type Header struct {
	exec.Settings
	Manager string // "user" or "system"
	Filters []string
	// MaxFailGiven is the failure limit as given (N or N%), "" for none;
	// Settings.MaxFail is what it comes to for this plan.
	MaxFailGiven string
	Phases       []discover.Phase
	// Missing are units systemd does not know (LoadState not-found).
	Missing map[string]bool
	// Refused holds frp's words on the configs that its verify refused
	// (see package preflight): those units are left as they are.
	Refused map[string]string
}

// Units counts the units in the plan.
func (p Header) Units() int {
	n := 0
	for _, ph := range p.Phases {
		n += len(ph.Units)
	}
	return n
}

// Run reports one bulk operation. It implements exec.Observer.
type Run struct {
	s     *Streams
	mode  Mode
	plan  Header
	live  bool
	total int
	start time.Time
	now   func() time.Time

	mu           sync.Mutex
	json         *json.Encoder
	running      int
	settling     int
	proving      map[string]bool // frp units whose tunnel is being proven
	ok           int
	failed       int
	needsRestart int
	lastLine     string
	// drawnCols is the width lastLine was drawn for.
	drawnCols int
	winch     chan os.Signal
	stop      chan struct{}
	stopped   chan struct{}
	ended     bool
}

// NewRun prepares a reporter for plan.
func NewRun(s *Streams, mode Mode, plan Header) *Run {
	r := &Run{s: s, mode: mode, plan: plan, total: plan.Units(), now: time.Now, proving: map[string]bool{}}
	r.live = s.Live(mode)
	if mode == JSON {
		r.json = json.NewEncoder(s.Out)
	}
	return r
}

// settings are the fields a start event and a dry-run plan share.
type settings struct {
	Operation   string `json:"operation"`
	Manager     string `json:"manager"`
	Units       int    `json:"units"`
	MaxParallel int    `json:"max_parallel"`
	Verify      bool   `json:"verify"`
	SettleMS    int64  `json:"settle_ms"`
	TimeoutMS   int64  `json:"timeout_ms"`
	// TunnelDeadlineMS bounds the proof of each frp tunnel.
	TunnelDeadlineMS int64    `json:"tunnel_deadline_ms"`
	Filters          []string `json:"filters"`
	// MaxFail is the failure limit in units (0: none); MaxFailGiven is
	// the flag's value as given ("10%", "2", "").
	MaxFail      int    `json:"max_fail"`
	MaxFailGiven string `json:"max_fail_given"`
	Canary       int    `json:"canary"`
}

func (p Header) settings() settings {
	filters := p.Filters
	if filters == nil {
		filters = []string{}
	}
	return settings{Operation: p.Operation, Manager: p.Manager, Units: p.Units(), MaxParallel: p.MaxParallel,
		Verify: p.Verify, SettleMS: p.Settle.Milliseconds(), TimeoutMS: p.Timeout.Milliseconds(),
		TunnelDeadlineMS: p.TunnelDeadline.Milliseconds(), Filters: filters,
		MaxFail: p.MaxFail, MaxFailGiven: p.MaxFailGiven, Canary: p.Canary}
}

type startEvent struct {
	SchemaVersion int    `json:"schema_version"`
	Event         string `json:"event"`
	Time          string `json:"time"`
	settings
}

type resultEvent struct {
	SchemaVersion int      `json:"schema_version"`
	Event         string   `json:"event"`
	Time          string   `json:"time"`
	Unit          string   `json:"unit"`
	Operation     string   `json:"operation"`
	Phase         int      `json:"phase"`
	OK            bool     `json:"ok"`
	NotStarted    bool     `json:"not_started"`
	Abandoned     bool     `json:"abandoned"`
	TimedOut      bool     `json:"timed_out"`
	NeedsRestart  bool     `json:"needs_restart"`
	DurationMS    int64    `json:"duration_ms"`
	OpDurationMS  int64    `json:"op_duration_ms"`
	GroupSize     int      `json:"group_size"`
	ExitCode      int      `json:"exit_code"`
	State         string   `json:"state"`
	Result        string   `json:"result"`
	NRestarts     int      `json:"n_restarts"`
	Reason        string   `json:"reason"`
	Detail        string   `json:"detail"`
	LogTail       []string `json:"log_tail"`
	// Tunnel is null for units that are not frp units.
	Tunnel *tunnelJSON `json:"tunnel"`
}

// tunnelJSON is an frp unit's tunnel in a result event.
type tunnelJSON struct {
	Kind     string      `json:"kind"`
	Config   string      `json:"config"`
	Check    string      `json:"check"`
	State    string      `json:"state"`
	Fallback string      `json:"fallback"`
	Note     string      `json:"note,omitempty"`
	Proxies  []proxyJSON `json:"proxies"`
}

type proxyJSON struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Status string `json:"status"`
	Err    string `json:"err"`
}

func tunnelOf(t *exec.Tunnel) *tunnelJSON {
	if t == nil {
		return nil
	}
	j := &tunnelJSON{Kind: string(t.Kind), Config: t.Config, Check: t.Check, State: string(t.State),
		Fallback: t.Fallback, Note: sanitize.Line(t.Note), Proxies: []proxyJSON{}}
	for _, p := range t.Proxies {
		j.Proxies = append(j.Proxies, proxyJSON{Name: p.Name, Type: p.Type, Status: p.Status, Err: p.Err})
	}
	return j
}

type summaryEvent struct {
	SchemaVersion int      `json:"schema_version"`
	Event         string   `json:"event"`
	Time          string   `json:"time"`
	Operation     string   `json:"operation"`
	Units         int      `json:"units"`
	Succeeded     int      `json:"succeeded"`
	Failed        int      `json:"failed"`
	NotStarted    int      `json:"not_started"`
	NeedsRestart  int      `json:"needs_restart"`
	Abandoned     int      `json:"abandoned"`
	Interrupted   bool     `json:"interrupted"`
	Lost          string   `json:"manager_lost"`
	Halted        string   `json:"halted"`
	DurationMS    int64    `json:"duration_ms"`
	Notes         []string `json:"notes"`
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func (r *Run) emit(v any) {
	if r.json != nil {
		// Encoder writes one line per value; stdout is unbuffered, so
		// each event reaches jq as it happens.
		_ = r.json.Encode(v)
	}
}

// stopLive stops the live line, if it runs, and clears it. It returns
// false when the run has already ended.
func (r *Run) stopLive() bool {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return false
	}
	r.ended = true
	stop, stopped := r.stop, r.stopped
	r.mu.Unlock()
	if stop != nil {
		close(stop)
		<-stopped
		r.mu.Lock()
		r.clearLive()
		r.mu.Unlock()
	}
	return true
}

// clearLive takes the live line off the screen, whatever the window did
// to it since it was drawn (see clearReflowed). Callers hold r.mu.
func (r *Run) clearLive() {
	if cols := r.s.Cols(); cols > 0 && cols != r.drawnCols {
		r.clearReflowed(cols)
		return
	}
	fmt.Fprint(r.s.Err, "\r\x1b[K")
	r.lastLine = ""
}

// above prints line on a line of its own above the live line, which the
// next draw puts back. Callers hold r.mu.
func (r *Run) above(line string) {
	if r.live && r.lastLine != "" {
		r.clearLive()
	}
	fmt.Fprintln(r.s.Err, line)
}

// Abort ends a run that could not take place: the live line goes, and no
// summary is printed, since no operation ran.
func (r *Run) Abort() { r.stopLive() }

// InFlight counts the units launched and not decided yet.
func (r *Run) InFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running + r.settling + len(r.proving)
}

// Notice prints a line for people while the run goes on: above the live
// line, which is then drawn again.
func (r *Run) Notice(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.above(line)
	r.draw()
}

// Begin announces the run and starts the live line, if any.
func (r *Run) Begin() {
	r.start = r.now()
	p := r.plan
	r.mu.Lock()
	// Not on a terminal that a program reading the JSON writes to as
	// well (see Shared): its output comes at times of its choosing, and
	// the header could land between its lines.
	if !r.s.Quiet && !r.s.Shared(r.mode) {
		fmt.Fprintf(r.s.Err, "%s %d service(s), up to %d at a time...\n", gerund(p.Operation), r.total, p.MaxParallel)
	}
	r.emit(startEvent{SchemaVersion: SchemaVersion, Event: "start", Time: stamp(r.start), settings: p.settings()})
	r.mu.Unlock()
	if r.live {
		r.stop, r.stopped = make(chan struct{}), make(chan struct{})
		r.winch = make(chan os.Signal, 1)
		signal.Notify(r.winch, unix.SIGWINCH)
		go r.tick()
	}
}

// tick redraws the live line so the elapsed time moves while systemd
// works, and at once when the window is resized.
func (r *Run) tick() {
	defer close(r.stopped)
	defer signal.Stop(r.winch)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.mu.Lock()
			r.draw()
			r.mu.Unlock()
		case <-r.winch:
			r.mu.Lock()
			r.draw() // at the window's new width
			r.mu.Unlock()
		}
	}
}

// clearReflowed clears the live line drawn at another width before it is
// drawn for cols columns. A terminal that reflows (see Streams.Reflows)
// has wrapped the old line over several rows if the window got narrower:
// the cursor goes back up to its first row, then everything below goes.
// On one that cuts lines instead, the row the cursor is on is the line's.
// Callers hold r.mu.
func (r *Run) clearReflowed(cols int) {
	if rows := (len(r.lastLine) + cols - 1) / cols; rows > 1 && r.s.Reflows {
		fmt.Fprintf(r.s.Err, "\x1b[%dA", rows-1)
	}
	fmt.Fprint(r.s.Err, "\r\x1b[J")
	r.lastLine = ""
}

// Launched implements exec.Observer.
func (r *Run) Launched(string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running++
	r.draw()
}

// OpEnded implements exec.Observer.
func (r *Run) OpEnded(unit string, tunnel bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	if tunnel {
		r.proving[unit] = true
	} else {
		r.settling++
	}
}

// Finished implements exec.Observer.
func (r *Run) Finished(res exec.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !res.NotStarted {
		if r.proving[res.Unit] {
			delete(r.proving, res.Unit)
		} else {
			r.settling--
		}
		switch {
		case res.OK:
			r.ok++
		case res.NeedsRestart:
			r.needsRestart++
		default:
			r.failed++
		}
	}
	tail := make([]string, 0, len(res.LogTail))
	for _, l := range res.LogTail {
		tail = append(tail, sanitize.Line(l))
	}
	r.emit(resultEvent{SchemaVersion: SchemaVersion, Event: "result", Time: stamp(r.now()),
		Unit: res.Unit, Operation: res.Operation, Phase: res.Phase,
		OK: res.OK, NotStarted: res.NotStarted, Abandoned: res.Abandoned, TimedOut: res.TimedOut, NeedsRestart: res.NeedsRestart,
		DurationMS: res.Duration().Milliseconds(), OpDurationMS: res.OpDuration.Milliseconds(), GroupSize: max(1, res.GroupSize),
		ExitCode: res.ExitCode, State: res.State, Result: res.SDResult, NRestarts: res.NRestarts,
		Reason: sanitize.Line(res.Reason), Detail: sanitize.Text(res.Detail), LogTail: tail, Tunnel: tunnelOf(res.Tunnel)})
	if res.NotStarted {
		return
	}
	if r.live {
		if !res.OK && !res.NeedsRestart {
			// Each failure as it happens, above the live line (Ansible
			// style): on a long run the names are there to act on.
			// Cut to the width: the summary repeats it whole, and a line
			// that wraps would push the live line around.
			r.above(fit(fmt.Sprintf("FAILED %s: %s", short(res.Unit), sanitize.Line(res.Reason)), r.s.Cols()))
		}
		r.draw()
		return
	}
	if !r.s.Lines(r.mode) {
		return // failures come in the summary
	}
	verdict := "ok"
	switch {
	case res.NeedsRestart:
		verdict = "needs a restart"
	case !res.OK:
		verdict = "FAILED"
	}
	fmt.Fprintf(r.s.Err, "Progress: %d/%d services... %s %s\n", r.ok+r.failed+r.needsRestart, r.total, short(res.Unit), verdict)
}

// draw rewrites the live line in place. Callers hold r.mu.
func (r *Run) draw() {
	if !r.live {
		return
	}
	// The width is read at every draw, not only on SIGWINCH: a redraw
	// between the resize and its signal must not draw over a line that
	// the terminal has reflowed.
	cols := r.s.Cols()
	if r.lastLine != "" && cols > 0 && cols != r.drawnCols {
		r.clearReflowed(cols)
	}
	r.drawnCols = cols
	line := r.liveLine(cols)
	if line == r.lastLine {
		return
	}
	r.lastLine = line
	fmt.Fprintf(r.s.Err, "\r\x1b[K%s", line)
}

// liveLine is the progress line for a window cols wide (0: unknown). It
// never wraps, since a wrapped line cannot be redrawn in place: the first
// of its forms, longest first, that fits. Every form keeps the failed
// count and the elapsed time, at its end.
func (r *Run) liveLine(cols int) string {
	done := fmt.Sprintf("%d/%d", r.ok+r.failed+r.needsRestart, r.total)
	elapsed := Elapsed(r.now().Sub(r.start))
	busy := fmt.Sprintf("%d running", r.running)
	if r.settling > 0 {
		busy += fmt.Sprintf(", %d settling", r.settling)
	}
	names := ""
	if n := len(r.proving); n > 0 {
		busy += fmt.Sprintf(", %d proving", n)
		if n <= 3 {
			list := make([]string, 0, n)
			for u := range r.proving {
				list = append(list, short(u))
			}
			sort.Strings(list)
			names = " (" + strings.Join(list, " ") + ")"
		}
	}
	forms := []string{
		fmt.Sprintf("Progress: %s services... %d ok, %d failed, %s%s, %s", done, r.ok, r.failed, busy, names, elapsed),
		fmt.Sprintf("Progress: %s services... %d ok, %d failed, %s, %s", done, r.ok, r.failed, busy, elapsed),
		fmt.Sprintf("%s: %d ok, %d failed, %d running, %s", done, r.ok, r.failed, r.running, elapsed),
		fmt.Sprintf("%s %d ok %d failed %s", done, r.ok, r.failed, elapsed),
		fmt.Sprintf("%s %d failed %s", done, r.failed, elapsed),
		fmt.Sprintf("%d failed %s", r.failed, elapsed),
	}
	if cols <= 1 {
		return forms[0]
	}
	for _, f := range forms {
		if len(f) < cols {
			return f
		}
	}
	last := forms[len(forms)-1]
	return last[:cols-1] // ASCII: bytes are columns
}

// End stops the live line and prints the summary.
//
// End is safe without Begin (a run with nothing to do) and safe to call
// twice; the second call does nothing.
func (r *Run) End(sum exec.Summary) {
	if !r.stopLive() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	notes := sum.Notes
	if notes == nil {
		notes = []string{}
	}
	r.emit(summaryEvent{SchemaVersion: SchemaVersion, Event: "summary", Time: stamp(r.now()),
		Operation: sum.Operation, Units: sum.Total, Succeeded: sum.Succeeded, Failed: sum.Failed,
		NotStarted: sum.NotStarted, NeedsRestart: sum.NeedsRestart, Abandoned: sum.Abandoned, Interrupted: sum.Interrupted, Lost: sum.Lost,
		Halted: sum.Halted, DurationMS: sum.Duration.Milliseconds(),
		Notes: notes})
	if sum.Total > 0 && !r.s.Shared(r.mode) {
		// "Bulk X complete" only when an operation ran: scripts grep it.
		WriteSummary(r.s, sum)
	}
}

// WriteSummary prints the summary that MoonFRP scripts grep:
// "Bulk restart complete: X succeeded, Y failed", then one
// "  - <service>: <reason>" line per failure in plan order.
func WriteSummary(s *Streams, sum exec.Summary) {
	w := s.Err
	fmt.Fprintln(w, recap(sum, s.green, s.red))
	for _, n := range sum.Notes {
		fmt.Fprintf(w, "  ! %s\n", sanitize.Line(n))
	}
	for _, res := range sum.Results {
		if !res.OK && !res.NotStarted && !res.NeedsRestart {
			// Abandoned units too: each says the state it was left in.
			fmt.Fprintf(w, "  - %s: %s\n", s.bold(short(res.Unit)), sanitize.Line(res.Reason))
		}
	}
	for _, res := range sum.Results {
		if res.NeedsRestart {
			fmt.Fprintf(w, "  ~ %s: %s (left running; --restart-if-needed restarts it)\n", s.bold(short(res.Unit)), sanitize.Line(res.Reason))
		}
	}
}

// Recap is the first line of WriteSummary, without colour.
func Recap(sum exec.Summary) string {
	plain := func(s string) string { return s }
	return recap(sum, plain, plain)
}

// recap is "Bulk OP complete: X succeeded, Y failed ... in T", with the
// counts in green and red.
func recap(sum exec.Summary, green, red func(string) string) string {
	word := "complete"
	switch {
	case sum.Interrupted:
		word = "interrupted"
	case sum.Lost != "":
		word = "stopped"
	case sum.Halted != "":
		word = "halted"
	}
	failed := fmt.Sprintf("%d failed", sum.Failed)
	if sum.Failed > 0 {
		failed = red(failed)
	}
	line := fmt.Sprintf("Bulk %s %s: %s succeeded, %s", sum.Operation, word, green(fmt.Sprint(sum.Succeeded)), failed)
	if sum.NotStarted > 0 || sum.Interrupted {
		line += fmt.Sprintf(", %d not started", sum.NotStarted)
		switch {
		case sum.Interrupted:
			line += " (interrupted)"
		case sum.Lost != "":
			line += " (the service manager stopped answering)"
		case sum.Halted != "":
			line += " (" + sum.Halted + ")"
		}
	}
	if sum.NeedsRestart > 0 {
		line += fmt.Sprintf(", %d need a restart", sum.NeedsRestart)
	}
	if sum.Abandoned > 0 {
		line += fmt.Sprintf(", %d abandoned in flight", sum.Abandoned)
	}
	return line + " in " + Elapsed(sum.Duration)
}

// Elapsed formats a run's duration for people: tenths of a second, and
// minutes once there are any ("2.4s", "1m3.5s").
func Elapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", max(0, d.Seconds()))
	}
	return d.Round(100 * time.Millisecond).String()
}

func short(unit string) string { return discover.ShortName(unit) }

func gerund(op string) string {
	switch op {
	case "stop":
		return "Stopping"
	case "":
		return "Acting on"
	}
	return strings.ToUpper(op[:1]) + op[1:] + "ing"
}

// Warn prints a one-line warning for people.
func Warn(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "moonfrp-bulk: warning: "+format+"\n", args...)
}

// fit cuts line to fewer than width columns (runes), marking the cut.
func fit(line string, width int) string {
	if width <= 1 {
		return line
	}
	rs := []rune(line)
	if len(rs) < width {
		return line
	}
	return string(rs[:width-2]) + "…"
}

// JobRecord is the job log's line for a run of plan that ended in sum:
// one JSON object, event "job", in schema SchemaVersion.
func JobRecord(plan Header, sum exec.Summary, end time.Time) []byte {
	filters := plan.Filters
	if filters == nil {
		filters = []string{}
	}
	rec := joblog.Record{SchemaVersion: SchemaVersion, Event: "job", Time: stamp(end), Operation: sum.Operation,
		Manager: plan.Manager, Filters: filters, Units: sum.Total, Succeeded: sum.Succeeded, Failed: sum.Failed,
		NotStarted: sum.NotStarted, NeedsRestart: sum.NeedsRestart, Interrupted: sum.Interrupted, Halted: sum.Halted,
		DurationMS: sum.Duration.Milliseconds(), Results: make([]joblog.Entry, 0, len(sum.Results))}
	for _, r := range sum.Results {
		j := joblog.Entry{Unit: r.Unit, OK: r.OK, NotStarted: r.NotStarted, Abandoned: r.Abandoned, TimedOut: r.TimedOut,
			State: r.State, Reason: sanitize.Line(r.Reason)}
		if r.Tunnel != nil {
			j.TunnelState = string(r.Tunnel.State)
		}
		rec.Results = append(rec.Results, j)
	}
	b, _ := json.Marshal(rec) // plain strings and numbers: cannot fail
	return b
}
