package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/exec"
)

func testStreams(tty bool) (*Streams, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &Streams{Out: &out, Err: &errb, ErrTTY: tty}, &out, &errb
}

func sampleSummary() exec.Summary {
	return exec.Summary{Operation: "restart", Total: 3, Succeeded: 1, Failed: 2, Results: []exec.Result{
		{Index: 0, Unit: "moonfrp-server.service", OK: true},
		{Index: 1, Unit: "moonfrp-client-1.service", Reason: "exited with status 1 right after restart (auto-restart loop): login failed"},
		{Index: 2, Unit: "moonfrp-client-2.service", Reason: "unit not found"},
	}}
}

func TestWriteSummaryWording(t *testing.T) {
	s, _, errb := testStreams(false)
	WriteSummary(s, sampleSummary())
	want := "Bulk restart complete: 1 succeeded, 2 failed in 0.0s\n" +
		"  - moonfrp-client-1: exited with status 1 right after restart (auto-restart loop): login failed\n" +
		"  - moonfrp-client-2: unit not found\n"
	if errb.String() != want {
		t.Errorf("summary\n%q\nwant\n%q", errb.String(), want)
	}
}

func TestWriteSummaryInterruptedAndColour(t *testing.T) {
	s, _, errb := testStreams(true)
	sum := exec.Summary{Operation: "stop", Succeeded: 3, NotStarted: 7, Interrupted: true}
	WriteSummary(s, sum)
	if got := errb.String(); !strings.Contains(got, "Bulk stop interrupted: ") || !strings.Contains(got, ", 7 not started (interrupted)") || !strings.Contains(got, "\x1b[32m3\x1b[0m") {
		t.Errorf("interrupted summary on a terminal: %q", got)
	}
	s.NoColor = true
	errb.Reset()
	WriteSummary(s, sum)
	if strings.Contains(errb.String(), "\x1b[") {
		t.Errorf("colour with NO_COLOR: %q", errb.String())
	}
}

func runEvents(r *Run) {
	r.Begin()
	for _, u := range []string{"moonfrp-client-1.service", "moonfrp-client-2.service"} {
		r.Launched(u)
		r.OpEnded(u, false)
	}
	r.Finished(exec.Result{Unit: "moonfrp-client-1.service", Operation: "restart", OK: true})
	r.Finished(exec.Result{Unit: "moonfrp-client-2.service", Operation: "restart", Reason: "boom", LogTail: []string{"x"}})
	r.End(exec.Summary{Operation: "restart", Total: 2, Succeeded: 1, Failed: 1})
}

func TestRunLinesWhenNotATerminal(t *testing.T) {
	s, out, errb := testStreams(false)
	runEvents(NewRun(s, Auto, Header{Settings: exec.Settings{Operation: "restart", MaxParallel: 4}, Phases: []discover.Phase{{Number: 1, Name: "all units", Units: []string{"a", "b"}}}}))
	got := errb.String()
	want := "Restarting 2 service(s), up to 4 at a time...\n" +
		"Progress: 1/2 services... moonfrp-client-1 ok\n" +
		"Progress: 2/2 services... moonfrp-client-2 FAILED\n" +
		"Bulk restart complete: 1 succeeded, 1 failed in 0.0s\n"
	if got != want {
		t.Errorf("stderr\n%q\nwant\n%q", got, want)
	}
	if out.Len() != 0 {
		t.Errorf("text mode wrote to stdout: %q", out.String())
	}
}

func TestRunLiveLineOnATerminal(t *testing.T) {
	s, _, errb := testStreams(true)
	s.NoColor = true
	r := NewRun(s, Auto, Header{Settings: exec.Settings{Operation: "restart", MaxParallel: 4}, Phases: []discover.Phase{{Number: 1, Name: "all units", Units: []string{"a", "b"}}}})
	runEvents(r)
	got := errb.String()
	if !strings.Contains(got, "\r\x1b[KProgress: 0/2 services... 0 ok, 0 failed, 1 running, ") ||
		!strings.Contains(got, "\r\x1b[KProgress: 2/2 services... 1 ok, 1 failed, 0 running, ") {
		t.Errorf("live line missing: %q", got)
	}
	if !strings.Contains(got, "\r\x1b[KBulk restart complete: 1 succeeded, 1 failed in 0.0s\n") {
		t.Errorf("line not cleared before the summary: %q", got)
	}
	if strings.Contains(got, "\nProgress:") {
		t.Errorf("plain progress lines on a terminal: %q", got)
	}
	// A failure is printed as it happens, on a line of its own above the
	// live line.
	if !strings.Contains(got, "\r\x1b[KFAILED moonfrp-client-2: boom\n") {
		t.Errorf("failure not printed above the live line as it happened: %q", got)
	}
	// Text mode never draws the live line, even on a terminal.
	s2, _, errb2 := testStreams(true)
	runEvents(NewRun(s2, Text, Header{Settings: exec.Settings{Operation: "restart"}, Phases: []discover.Phase{{Number: 1, Name: "all units", Units: []string{"a", "b"}}}}))
	if strings.Contains(errb2.String(), "\r") {
		t.Errorf("-o text drew a live line: %q", errb2.String())
	}
}

func TestRunJSONEvents(t *testing.T) {
	s, out, _ := testStreams(false)
	runEvents(NewRun(s, JSON, Header{Settings: exec.Settings{Operation: "restart", MaxParallel: 4, Verify: true, Settle: time.Second, Timeout: time.Minute}, Manager: "user", Phases: []discover.Phase{{Number: 1, Name: "all units", Units: []string{"a", "b"}}}}))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d JSON lines, want start, 2 results, summary:\n%s", len(lines), out)
	}
	var evs []map[string]any
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("bad JSON line %q: %v", l, err)
		}
		if ev["schema_version"] != float64(SchemaVersion) {
			t.Errorf("schema_version missing: %v", ev)
		}
		if _, err := time.Parse(time.RFC3339, ev["time"].(string)); err != nil || !strings.HasSuffix(ev["time"].(string), "Z") {
			t.Errorf("time %v is not RFC 3339 UTC", ev["time"])
		}
		evs = append(evs, ev)
	}
	if evs[0]["event"] != "start" || evs[0]["units"] != float64(2) || evs[0]["max_parallel"] != float64(4) || evs[0]["settle_ms"] != float64(1000) {
		t.Errorf("start event %v", evs[0])
	}
	if evs[2]["event"] != "result" || evs[2]["ok"] != false || evs[2]["reason"] != "boom" || evs[2]["unit"] != "moonfrp-client-2.service" {
		t.Errorf("result event %v", evs[2])
	}
	if evs[3]["event"] != "summary" || evs[3]["succeeded"] != float64(1) || evs[3]["failed"] != float64(1) || evs[3]["not_started"] != float64(0) {
		t.Errorf("summary event %v", evs[3])
	}
}

// With JSON piped to a program that writes to the same terminal as
// stderr (`-o json | jq`), stderr carries warnings and errors only: not
// even the header, which could land between the program's lines.
func TestRunSharedTerminalGetsNoHeader(t *testing.T) {
	s, out, errb := testStreams(true)
	runEvents(NewRun(s, JSON, Header{Settings: exec.Settings{Operation: "restart", MaxParallel: 4}, Phases: []discover.Phase{{Number: 1, Name: "all units", Units: []string{"a", "b"}}}}))
	if errb.Len() != 0 {
		t.Errorf("stderr on a shared terminal: %q", errb.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 4 {
		t.Errorf("%d JSON lines, want 4", n)
	}
}

// gh's rule for the live line: only on a terminal that can redraw, and
// never when stdout carries JSON to a program behind the same terminal
// (`moonfrp-bulk restart -o json | jq` garbled jq's output).
func TestLiveLineRule(t *testing.T) {
	cases := []struct {
		name                 string
		errTTY, outTTY, dumb bool
		mode                 Mode
		want                 bool
	}{
		{"terminal, auto", true, true, false, Auto, true},
		{"terminal, json to the terminal", true, true, false, JSON, true},
		{"terminal, json piped to jq", true, false, false, JSON, false},
		{"terminal, text output", true, true, false, Text, false},
		{"stderr to a file", false, true, false, Auto, false},
		{"TERM=dumb", true, true, true, Auto, false},
		{"auto, stdout piped", true, false, false, Auto, true},
	}
	for _, c := range cases {
		s := &Streams{ErrTTY: c.errTTY, OutTTY: c.outTTY, Dumb: c.dumb}
		if got := s.Live(c.mode); got != c.want {
			t.Errorf("%s: Live = %v, want %v", c.name, got, c.want)
		}
	}
}

// Per-unit lines on a terminal that a JSON reader shares would cross its
// output (`-o json | jq`); into a file, or from a log, they are harmless.
func TestLinesRule(t *testing.T) {
	cases := []struct {
		name string
		s    Streams
		mode Mode
		want bool
	}{
		{"json piped to jq on a terminal", Streams{ErrTTY: true}, JSON, false},
		{"json into a file, terminal", Streams{ErrTTY: true, OutFile: true}, JSON, true},
		{"json, stderr to a log", Streams{}, JSON, true},
		{"text on a terminal", Streams{ErrTTY: true}, Text, true},
		{"quiet", Streams{Quiet: true}, Text, false},
	}
	for _, c := range cases {
		if got := c.s.Lines(c.mode); got != c.want {
			t.Errorf("%s: Lines = %v, want %v", c.name, got, c.want)
		}
	}
	if !(&Streams{ErrTTY: true, OutFile: true}).Live(JSON) {
		t.Error("json into a file: no live line on the terminal")
	}
}

func TestColorRule(t *testing.T) {
	cases := []struct {
		name string
		s    Streams
		want bool
	}{
		{"terminal", Streams{ErrTTY: true}, true},
		{"NO_COLOR", Streams{ErrTTY: true, NoColor: true}, false},
		{"not a terminal", Streams{}, false},
		{"CLICOLOR_FORCE", Streams{ForceColor: true}, true},
	}
	for _, c := range cases {
		if got := c.s.Color(); got != c.want {
			t.Errorf("%s: Color = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestWriteSummaryHaltedAndElapsed(t *testing.T) {
	s, _, errb := testStreams(false)
	WriteSummary(s, exec.Summary{Operation: "restart", Total: 50, Succeeded: 8, Failed: 2, NotStarted: 40,
		Halted: "failure limit of 2 reached", Duration: 83 * time.Second})
	want := "Bulk restart halted: 8 succeeded, 2 failed, 40 not started (failure limit of 2 reached) in 1m23s\n"
	if errb.String() != want {
		t.Errorf("summary %q, want %q", errb.String(), want)
	}
}

// The live line never reaches the last column (a wrapped line cannot be
// redrawn in place) and, however narrow, keeps the failed count and the
// elapsed time.
func TestLiveLineFitsEveryWidth(t *testing.T) {
	s, _, _ := testStreams(true)
	r := NewRun(s, Auto, Header{Settings: exec.Settings{Operation: "restart"}, Phases: []discover.Phase{{Units: make([]string, 1000)}}})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.start, r.now = base, func() time.Time { return base.Add(1234500 * time.Millisecond) }
	r.ok, r.failed, r.running, r.settling = 512, 37, 50, 12
	r.proving = map[string]bool{"moonfrp-client-123.service": true, "moonfrp-client-77.service": true}
	if got := r.liveLine(5); len(got) >= 5 {
		t.Errorf("5 columns: %q wraps", got)
	}
	for cols := 20; cols <= 200; cols++ {
		line := r.liveLine(cols)
		if len(line) >= cols {
			t.Errorf("%d columns: %q is %d long", cols, line, len(line))
		}
		if !strings.Contains(line, "37 failed 20m34.5s") && !strings.Contains(line, "37 failed, ") {
			t.Errorf("%d columns: %q lost the failed count", cols, line)
		}
		if !strings.HasSuffix(line, "20m34.5s") {
			t.Errorf("%d columns: %q lost the elapsed time at its end", cols, line)
		}
	}
	if got := r.liveLine(40); got != "549/1000 512 ok 37 failed 20m34.5s" {
		t.Errorf("40 columns: %q", got)
	}
}

// After the window narrows, the old line (reflowed over two rows) is
// cleared from its first row and the line drawn again to fit.
func TestResizeClearsTheReflowedLine(t *testing.T) {
	s, _, errb := testStreams(true)
	s.Reflows = true
	r := NewRun(s, Auto, Header{Settings: exec.Settings{Operation: "restart"}, Phases: []discover.Phase{{Units: make([]string, 50)}}})
	r.start = r.now()
	s.Width = 120
	r.draw()
	old := r.lastLine
	errb.Reset()
	s.Width = len(old)/2 + 1
	r.draw()
	got := errb.String()
	if !strings.HasPrefix(got, "\x1b[1A\r\x1b[J") {
		t.Errorf("after narrowing to %d columns: %q, want the cursor up one row and the screen cleared below", s.Width, got)
	}
	if len(r.lastLine) >= s.Width {
		t.Errorf("redrawn line %q does not fit %d columns", r.lastLine, s.Width)
	}
	// A terminal that cuts lines keeps the rows above: no cursor up.
	s.Reflows = false
	errb.Reset()
	s.Width = 120
	r.draw()
	s.Width = 40
	errb.Reset()
	r.draw()
	if got := errb.String(); strings.Contains(got, "\x1b[1A") || !strings.HasPrefix(got, "\r\x1b[J") {
		t.Errorf("on a terminal that does not reflow: %q", got)
	}
}
