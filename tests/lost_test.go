package tests

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// lastRecord is the job log's newest record, as `last -o json` prints it.
func lastRecord(t *testing.T, sb *sandbox.Sandbox) map[string]any {
	t.Helper()
	r := bulk(t, sb, nil, "last", "-o", "json")
	wantCode(t, r, 0)
	evs := parseEvents(t, r.stdout)
	if len(evs) != 1 || evs[0]["event"] != "job" {
		t.Fatalf("last -o json: %q", r.stdout)
	}
	return evs[0]
}

// allRestarted checks that every unit's InvocationID changed.
func allRestarted(t *testing.T, sb *sandbox.Sandbox, before map[string]string) {
	t.Helper()
	for u, id := range invocationIDs(t, sb, sandbox.Names(sandbox.SlowStop("moonfrp-client", len(before), 0))) {
		if id == before[u] {
			t.Errorf("%s was not restarted", u)
		}
	}
}

// An ssh session that drops mid-run (SIGHUP) stops nothing: the run goes
// on to its end, every unit is restarted, and the job log has the whole
// run for `moonfrp-bulk last`.
func TestHangupLetsTheRunFinishAndRecordsIt(t *testing.T) {
	specs := sandbox.SlowStop("moonfrp-client", 20, 300*time.Millisecond)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	before := invocationIDs(t, sb, sandbox.Names(specs))

	cmd := bulkCmd(sb, nil, "restart", "-j", "2", "--settle=0")
	stderr, done := startAndWaitFor(t, cmd, regexp.MustCompile(`^Progress: 3/20 `))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	code := exitCode(cmd.Wait())
	<-done
	if code != 0 {
		t.Fatalf("exit %d after a hangup, want 0 (the run goes on):\n%s", code, stderr)
	}
	wantContains(t, "summary", stderr.String(), "Bulk restart complete: 20 succeeded, 0 failed")
	allRestarted(t, sb, before)
	rec := lastRecord(t, sb)
	if rec["succeeded"] != float64(20) || len(rec["results"].([]any)) != 20 {
		t.Errorf("job log record %v, want 20 units, 20 succeeded", rec)
	}
	r := bulk(t, sb, nil, "last")
	wantCode(t, r, 0)
	wantContains(t, "last", r.stdout, "Last restart on the user manager", "20 succeeded, 0 failed, 0 not started of 20")
}

// A reader that goes away (`-o json | head -1`) stops nothing either: the
// run goes on to its end, writes no more to the closed pipe, records
// itself, and exits 6 to say that its output was lost.
func TestClosedPipeLetsTheRunFinish(t *testing.T) {
	specs := sandbox.SlowStop("moonfrp-client", 20, 200*time.Millisecond)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	before := invocationIDs(t, sb, sandbox.Names(specs))

	cmd := bulkCmd(sb, nil, "restart", "-j", "2", "--settle=0", "-o", "json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.Contains(first, `"event":"start"`) {
		t.Fatalf("first line %q, %v", first, err)
	}
	out.(*os.File).Close() // as head -1 does
	code := exitCode(cmd.Wait())
	if code != 6 {
		t.Fatalf("exit %d after the reader left, want 6:\n%s", code, stderr.String())
	}
	wantContains(t, "stderr", stderr.String(), "the output could not be written", "moonfrp-bulk last")
	allRestarted(t, sb, before)
	if rec := lastRecord(t, sb); rec["succeeded"] != float64(20) {
		t.Errorf("job log record %v, want 20 succeeded", rec)
	}
}

// Output that cannot be written (a full disk) is exit 6 for every
// command, with one line on stderr; a run still does its work.
func TestOutputToAFullDiskIsExit6(t *testing.T) {
	specs := sandbox.SlowStop("moonfrp-client", 3, 10*time.Millisecond)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	before := invocationIDs(t, sb, sandbox.Names(specs))
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	for _, args := range [][]string{{"restart", "-o", "json"}, {"list", "-o", "json"}, {"restart", "--dry-run"}, {"last"}} {
		cmd := bulkCmd(sb, nil, args...)
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = full, &stderr
		code := exitCode(cmd.Run())
		if code != 6 || strings.Count(stderr.String(), "moonfrp-bulk: the output could not be written") != 1 {
			t.Errorf("%s >/dev/full: exit %d, want 6 with one line saying so:\n%s", strings.Join(args, " "), code, stderr.String())
		}
	}
	allRestarted(t, sb, before)
}
