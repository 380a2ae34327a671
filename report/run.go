package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/moonfrp/moonfrp-bulk/exec"
)

// SchemaVersion is the version of the JSON line format. It changes only
// when a field is removed or changes meaning; new fields may appear.
const SchemaVersion = 1

// Mode is the output mode: auto, text or json.
type Mode string

// Output modes.
const (
	Auto Mode = "auto"
	Text Mode = "text"
	JSON Mode = "json"
)

// Plan describes a run before it starts.
type Plan struct {
	Operation   string
	Manager     string // "user" or "system"
	MaxParallel int
	Verify      bool
	Settle      time.Duration
	Timeout     time.Duration
	Filters     []string
	Phases      [][]string
}

// Units counts the units in the plan.
func (p Plan) Units() int {
	n := 0
	for _, ph := range p.Phases {
		n += len(ph)
	}
	return n
}

// Run reports one bulk operation. It implements exec.Observer.
type Run struct {
	s     *Streams
	mode  Mode
	plan  Plan
	live  bool
	total int
	start time.Time
	now   func() time.Time

	mu       sync.Mutex
	json     *json.Encoder
	running  int
	settling int
	ok       int
	failed   int
	lastLine string
	stop     chan struct{}
	stopped  chan struct{}
}

// NewRun prepares a reporter for plan.
func NewRun(s *Streams, mode Mode, plan Plan) *Run {
	r := &Run{s: s, mode: mode, plan: plan, total: plan.Units(), now: time.Now}
	r.live = mode != Text && s.ErrTTY
	if mode == JSON {
		r.json = json.NewEncoder(s.Out)
	}
	return r
}

// settings are the fields a start event and a dry-run plan share.
type settings struct {
	Operation   string   `json:"operation"`
	Manager     string   `json:"manager"`
	Units       int      `json:"units"`
	MaxParallel int      `json:"max_parallel"`
	Verify      bool     `json:"verify"`
	SettleMS    int64    `json:"settle_ms"`
	TimeoutMS   int64    `json:"timeout_ms"`
	Filters     []string `json:"filters"`
}

func (p Plan) settings() settings {
	filters := p.Filters
	if filters == nil {
		filters = []string{}
	}
	return settings{p.Operation, p.Manager, p.Units(), p.MaxParallel, p.Verify,
		p.Settle.Milliseconds(), p.Timeout.Milliseconds(), filters}
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
	TimedOut      bool     `json:"timed_out"`
	DurationMS    int64    `json:"duration_ms"`
	OpDurationMS  int64    `json:"op_duration_ms"`
	ExitCode      int      `json:"exit_code"`
	State         string   `json:"state"`
	Result        string   `json:"result"`
	NRestarts     int      `json:"n_restarts"`
	Reason        string   `json:"reason"`
	Detail        string   `json:"detail"`
	LogTail       []string `json:"log_tail"`
}

type summaryEvent struct {
	SchemaVersion int    `json:"schema_version"`
	Event         string `json:"event"`
	Time          string `json:"time"`
	Operation     string `json:"operation"`
	Units         int    `json:"units"`
	Succeeded     int    `json:"succeeded"`
	Failed        int    `json:"failed"`
	NotStarted    int    `json:"not_started"`
	Interrupted   bool   `json:"interrupted"`
	DurationMS    int64  `json:"duration_ms"`
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func (r *Run) emit(v any) {
	if r.json != nil {
		// Encoder writes one line per value; stdout is unbuffered, so
		// each event reaches jq as it happens.
		_ = r.json.Encode(v)
	}
}

// Begin announces the run and starts the live line, if any.
func (r *Run) Begin() {
	r.start = r.now()
	p := r.plan
	r.mu.Lock()
	r.emit(startEvent{SchemaVersion, "start", stamp(r.start), p.settings()})
	fmt.Fprintf(r.s.Err, "%s %d service(s), up to %d at a time...\n", gerund(p.Operation), r.total, p.MaxParallel)
	r.mu.Unlock()
	if r.live {
		r.stop, r.stopped = make(chan struct{}), make(chan struct{})
		go r.tick()
	}
}

// tick redraws the live line so the elapsed time moves while systemd works.
func (r *Run) tick() {
	defer close(r.stopped)
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
		}
	}
}

// Launched implements exec.Observer.
func (r *Run) Launched(string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running++
	r.draw()
}

// OpEnded implements exec.Observer.
func (r *Run) OpEnded(string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	r.settling++
}

// Finished implements exec.Observer.
func (r *Run) Finished(res exec.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !res.NotStarted {
		r.settling--
		if res.OK {
			r.ok++
		} else {
			r.failed++
		}
	}
	tail := res.LogTail
	if tail == nil {
		tail = []string{}
	}
	r.emit(resultEvent{SchemaVersion, "result", stamp(r.now()), res.Unit, res.Operation, res.Phase,
		res.OK, res.NotStarted, res.TimedOut, res.Duration().Milliseconds(), res.OpDuration.Milliseconds(),
		res.ExitCode, res.State, res.SDResult, res.NRestarts, res.Reason, res.Detail, tail})
	if res.NotStarted {
		return
	}
	if r.live {
		r.draw()
		return
	}
	verdict := "ok"
	if !res.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(r.s.Err, "Progress: %d/%d services... %s %s\n", r.ok+r.failed, r.total, short(res.Unit), verdict)
}

// draw rewrites the live line in place. Callers hold r.mu.
func (r *Run) draw() {
	if !r.live {
		return
	}
	line := fmt.Sprintf("Progress: %d/%d services... %d ok, %d failed, %d running",
		r.ok+r.failed, r.total, r.ok, r.failed, r.running)
	if r.settling > 0 {
		line += fmt.Sprintf(", %d settling", r.settling)
	}
	line += fmt.Sprintf(", %.1fs", r.now().Sub(r.start).Seconds())
	// A line that wraps cannot be redrawn with \r; keep it inside the width.
	if r.s.Width > 1 && len(line) >= r.s.Width {
		line = line[:r.s.Width-1]
	}
	if line == r.lastLine {
		return
	}
	r.lastLine = line
	fmt.Fprintf(r.s.Err, "\r\x1b[K%s", line)
}

// End stops the live line and prints the summary.
func (r *Run) End(sum exec.Summary) {
	if r.live {
		close(r.stop)
		<-r.stopped
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live {
		fmt.Fprint(r.s.Err, "\r\x1b[K")
	}
	r.emit(summaryEvent{SchemaVersion, "summary", stamp(r.now()), sum.Operation, sum.Total,
		sum.Succeeded, sum.Failed, sum.NotStarted, sum.Interrupted, sum.Duration.Milliseconds()})
	WriteSummary(r.s, sum)
}

// WriteSummary prints the summary that MoonFRP scripts grep:
// "Bulk restart complete: X succeeded, Y failed", then one
// "  - <service>: <reason>" line per failure in plan order.
func WriteSummary(s *Streams, sum exec.Summary) {
	w := s.Err
	word := "complete"
	if sum.Interrupted {
		word = "interrupted"
	}
	failed := fmt.Sprintf("%d failed", sum.Failed)
	if sum.Failed > 0 {
		failed = s.red(failed)
	}
	line := fmt.Sprintf("Bulk %s %s: %s succeeded, %s", sum.Operation, word, s.green(fmt.Sprint(sum.Succeeded)), failed)
	if sum.NotStarted > 0 || sum.Interrupted {
		line += fmt.Sprintf(", %d not started (interrupted)", sum.NotStarted)
	}
	fmt.Fprintln(w, line)
	for _, res := range sum.Results {
		if !res.OK && !res.NotStarted {
			fmt.Fprintf(w, "  - %s: %s\n", s.bold(short(res.Unit)), res.Reason)
		}
	}
}

func short(unit string) string { return strings.TrimSuffix(unit, ".service") }

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
