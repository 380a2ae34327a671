package report

import (
	"bytes"
	"encoding/json"
	"github.com/moonfrp/moonfrp-bulk/discover"
	"strings"
	"testing"
	"time"

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
	want := "Bulk restart complete: 1 succeeded, 2 failed\n" +
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
	runEvents(NewRun(s, Auto, Plan{Operation: "restart", MaxParallel: 4, Phases: []discover.Phase{{Number: 1, Name: "all units", Units: []string{"a", "b"}}}}))
	got := errb.String()
	want := "Restarting 2 service(s), up to 4 at a time...\n" +
		"Progress: 1/2 services... moonfrp-client-1 ok\n" +
		"Progress: 2/2 services... moonfrp-client-2 FAILED\n" +
		"Bulk restart complete: 1 succeeded, 1 failed\n"
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
	r := NewRun(s, Auto, Plan{Operation: "restart", MaxParallel: 4, Phases: []discover.Phase{{Number: 1, Name: "all units", Units: []string{"a", "b"}}}})
	runEvents(r)
	got := errb.String()
	if !strings.Contains(got, "\r\x1b[KProgress: 0/2 services... 0 ok, 0 failed, 1 running, ") ||
		!strings.Contains(got, "\r\x1b[KProgress: 2/2 services... 1 ok, 1 failed, 0 running, ") {
		t.Errorf("live line missing: %q", got)
	}
	if !strings.Contains(got, "\r\x1b[KBulk restart complete: 1 succeeded, 1 failed\n") {
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
	runEvents(NewRun(s2, Text, Plan{Operation: "restart", Phases: []discover.Phase{{Number: 1, Name: "all units", Units: []string{"a", "b"}}}}))
	if strings.Contains(errb2.String(), "\r") {
		t.Errorf("-o text drew a live line: %q", errb2.String())
	}
}

func TestRunJSONEvents(t *testing.T) {
	s, out, _ := testStreams(false)
	runEvents(NewRun(s, JSON, Plan{Operation: "restart", Manager: "user", MaxParallel: 4, Verify: true,
		Settle: time.Second, Timeout: time.Minute, Phases: []discover.Phase{{Number: 1, Name: "all units", Units: []string{"a", "b"}}}}))
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
