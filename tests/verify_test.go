package tests

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// A unit that crashes right after start makes systemctl return 0. Only
// verification tells the truth; this test pins the difference.
func TestCrashAfterStartIsAFailureOnlyWithVerification(t *testing.T) {
	specs := []sandbox.Spec{
		{Name: "moonfrp-client-1", Behaviour: sandbox.Up, StopDelay: 50 * time.Millisecond},
		{Name: "moonfrp-client-2", Behaviour: sandbox.Crash, Message: "login to the server failed: authorization failed"},
	}
	sb := newSandbox(t, specs...)

	r := bulk(t, sb, nil, "restart")
	wantCode(t, r, 1)
	wantContains(t, "summary", r.stderr, "Bulk restart complete: 1 succeeded, 1 failed",
		"  - moonfrp-client-2: exited with status 1 right after restart (auto-restart loop",
		"): login to the server failed: authorization failed\n")
	if strings.Contains(r.stderr, "\x1b[") {
		t.Errorf("colour codes from the log reached the summary: %q", r.stderr)
	}

	r = bulk(t, sb, nil, "restart", "--no-verify")
	wantCode(t, r, 0)
	wantContains(t, "summary", r.stderr, "Bulk restart complete: 2 succeeded, 0 failed")
}

func TestFailureReasonsAndNoJobsLeft(t *testing.T) {
	specs := []sandbox.Spec{
		{Name: "moonfrp-client-pre", Behaviour: sandbox.FailPre},
		{Name: "moonfrp-client-hang", Behaviour: sandbox.Hang},
		{Name: "moonfrp-client-ok", Behaviour: sandbox.Up, StopDelay: 50 * time.Millisecond},
	}
	sb := newSandbox(t, specs...)

	r := bulk(t, sb, nil, "start", "--timeout=1s", "-o", "json",
		"moonfrp-client-pre", "moonfrp-client-hang", "moonfrp-client-nosuch", "moonfrp-client-ok")
	wantCode(t, r, 1)
	events := parseEvents(t, r.stdout)
	want := map[string]*regexp.Regexp{
		"moonfrp-client-pre.service":    regexp.MustCompile(`^ExecStartPre /bin/false exited with status 1 \(systemctl: Job for moonfrp-client-pre.service failed because the control process exited with error code.\)$`),
		"moonfrp-client-hang.service":   regexp.MustCompile(`^timed out after 1s \(its systemd job was cancelled\)`),
		"moonfrp-client-nosuch.service": regexp.MustCompile(`Unit moonfrp-client-nosuch.service not found`),
	}
	for _, ev := range events {
		if ev["event"] != "result" {
			continue
		}
		unit := ev["unit"].(string)
		re, broken := want[unit]
		ok := ev["ok"].(bool)
		switch {
		case !broken && !ok:
			t.Errorf("%s failed: %v", unit, ev["reason"])
		case broken && ok:
			t.Errorf("%s reported as a success", unit)
		case broken && !re.MatchString(ev["reason"].(string)):
			t.Errorf("%s reason %q, want it to match %s", unit, ev["reason"], re)
		}
		if unit == "moonfrp-client-hang.service" && ev["timed_out"] != true {
			t.Errorf("hang not marked timed_out: %v", ev)
		}
		if strings.Contains(fmt.Sprint(ev["reason"]), "See \"systemctl") {
			t.Errorf("%s reason keeps systemctl's boilerplate hint: %v", unit, ev["reason"])
		}
	}
	if jobs, _ := sb.Systemctl(context.Background(), "list-jobs", "--no-legend"); strings.TrimSpace(jobs) != "" {
		t.Errorf("systemd jobs left behind:\n%s", jobs)
	}
	if got := activeState(sb, "moonfrp-client-ok"); got != "active/running" {
		t.Errorf("the good unit is %s: a hang elsewhere held it up", got)
	}
}

// Verification must not cost a settle window per wave: settle windows run
// concurrently, and do not hold a parallelism slot.
func TestSettleCostIsPaidOnce(t *testing.T) {
	specs := sandbox.SlowStop("moonfrp-client", 50, 200*time.Millisecond)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)

	// Best of two runs each, taking turns: the machine's load drifts.
	var plain, verified time.Duration
	for i := 0; i < 2; i++ {
		p := bulk(t, sb, nil, "restart", "--no-verify")
		wantCode(t, p, 0)
		v := bulk(t, sb, nil, "restart", "--settle=1s")
		wantCode(t, v, 0)
		if i == 0 || p.wall < plain {
			plain = p.wall
		}
		if i == 0 || v.wall < verified {
			verified = v.wall
		}
	}
	// A window per wave would add five (50 units, -j 10): 5 × 1 s. Run
	// concurrently, the windows add about one; 3 s leaves room for a
	// loaded machine without letting per-wave windows through.
	if limit := plain + 3*time.Second; verified > limit {
		t.Errorf("verified run took %s; the unverified one %s: want at most %s (a settle window per wave would add 5s)", verified, plain, limit)
	}
	// The window is waited for: the last unit's window alone adds a second,
	// less what noise takes off the two runs' difference.
	if verified < plain+500*time.Millisecond {
		t.Errorf("verified run took %s, the unverified one %s: the 1s settle window was not waited for", verified, plain)
	}
}

// waitLine starts cmd and returns once a line of its stderr matches re,
// with a reader that keeps collecting the rest.
func startAndWaitFor(t *testing.T, cmd *exec.Cmd, re *regexp.Regexp) (*strings.Builder, chan struct{}) {
	t.Helper()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	seen := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		matched := false
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if !matched && re.MatchString(sc.Text()) {
				matched = true
				close(seen)
			}
		}
		if !matched {
			close(seen)
		}
	}()
	select {
	case <-seen:
	case <-time.After(60 * time.Second):
		t.Fatalf("no line matching %s", re)
	}
	return &all, done
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestInterruptStopsLaunchingAndSummarises(t *testing.T) {
	specs := sandbox.SlowStop("moonfrp-client", 50, 300*time.Millisecond)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)

	t.Run("one signal", func(t *testing.T) {
		cmd := bulkCmd(sb, nil, "restart", "-j", "2")
		stderr, done := startAndWaitFor(t, cmd, regexp.MustCompile(`^Progress: 3/50 `))
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		code := exitCode(cmd.Wait())
		<-done
		out := stderr.String()
		if code != 130 {
			t.Fatalf("exit %d, want 130:\n%s", code, out)
		}
		m := regexp.MustCompile(`Bulk restart interrupted: (\d+) succeeded, (\d+) failed, (\d+) not started \(interrupted\)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no interrupted summary:\n%s", out)
		}
		// The first Ctrl-C is not silent: it says what the run waits for.
		if !regexp.MustCompile(`(?m)^stopping: waiting for \d+ operation\(s\) in flight \(Ctrl-C again to abandon them\)$`).MatchString(out) {
			t.Errorf("no word after the first signal:\n%s", out)
		}
		ok, failed, notStarted := atoi(m[1]), atoi(m[2]), atoi(m[3])
		if ok+failed+notStarted != 50 || notStarted == 0 || ok < 3 || failed != 0 {
			t.Errorf("counts %d+%d+%d: want 50 in all, in-flight units finished and some not started", ok, failed, notStarted)
		}
		assertNoChildren(t, cmd)
	})

	t.Run("two signals", func(t *testing.T) {
		cmd := bulkCmd(sb, nil, "restart", "-j", "4", "-o", "json")
		var stdout strings.Builder
		cmd.Stdout = &stdout
		stderr, done := startAndWaitFor(t, cmd, regexp.MustCompile(`^Progress: 1/50 `))
		start := time.Now()
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Process.Signal(syscall.SIGINT)
		code := exitCode(cmd.Wait())
		<-done
		if code != 130 {
			t.Errorf("exit %d, want 130", code)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %s to exit after a second signal", d)
		}
		// Every unit is in the summary exactly once: succeeded, failed
		// (abandoned ones among them, with the state they were left in)
		// or not started; the JSON results agree.
		out := stderr.String()
		m := regexp.MustCompile(`Bulk restart interrupted: (\d+) succeeded, (\d+) failed, (\d+) not started \(interrupted\)(, (\d+) abandoned in flight)?`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no interrupted summary:\n%s", out)
		}
		if n := atoi(m[1]) + atoi(m[2]) + atoi(m[3]); n != 50 {
			t.Errorf("summary counts %d units, want 50:\n%s", n, out)
		}
		seen := map[string]int{}
		for _, ev := range parseEvents(t, stdout.String()) {
			if ev["event"] == "result" {
				seen[ev["unit"].(string)]++
				if ev["abandoned"] == true && !strings.Contains(ev["reason"].(string), "it was then ") {
					t.Errorf("%s abandoned without its state: %q", ev["unit"], ev["reason"])
				}
			}
		}
		if len(seen) != 50 {
			t.Errorf("%d units have a result event, want 50", len(seen))
		}
		for u, n := range seen {
			if n != 1 {
				t.Errorf("%s has %d result events", u, n)
			}
		}
		assertNoChildren(t, cmd)
	})
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// assertNoChildren checks that nothing that this one run of moonfrp-bulk
// started is still running. Other processes may share the machine and
// the sandbox user, so it looks only for processes whose environment
// carries the run's own marker (see bulkCmd), which every child inherits.
func assertNoChildren(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	marker := ""
	for _, kv := range cmd.Env {
		if strings.HasPrefix(kv, runMarker+"=") {
			marker = kv
		}
	}
	if marker == "" {
		t.Fatal("the command carries no run marker")
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if kv == marker {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				t.Errorf("pid %d of this run outlived it: %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " "))
			}
		}
	}
}

func TestOverlappingRunsAreSerialised(t *testing.T) {
	// The first run holds its locks for seconds while the other runs try
	// theirs: its units stop slowly, and its settle window is long. The
	// other runs start once it has printed its plan, which it does with
	// its locks taken. (Its first verdict was the signal once; verdicts
	// now wait for company while operations are launched, and a run of
	// quick restarts could end soon after it.)
	specs := append(sandbox.SlowStop("moonfrp-client", 6, 700*time.Millisecond),
		sandbox.SlowStop("moonfrp-visitor", 6, 50*time.Millisecond)...)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	names := sandbox.Names(specs)

	first := bulkCmd(sb, nil, append([]string{"restart", "-j", "1", "--settle=3s"}, names[:6]...)...)
	_, firstDone := startAndWaitFor(t, first, regexp.MustCompile(`^Restarting 6 service`))
	firstPid := first.Process.Pid

	// Disjoint units do not wait.
	disjoint := bulk(t, sb, nil, append([]string{"restart", "--no-wait", "--settle=0"}, names[8:]...)...)
	wantCode(t, disjoint, 0)

	busy := bulk(t, sb, nil, "restart", "--no-wait", names[3], names[7])
	wantCode(t, busy, 4)
	wantContains(t, "--no-wait message", busy.stderr, "another moonfrp-bulk run is acting on the same units", fmt.Sprintf("pid %d", firstPid))

	second := bulk(t, sb, nil, "restart", "--settle=0", names[5], names[6])
	firstErr := first.Wait()
	<-firstDone
	if exitCode(firstErr) != 0 {
		t.Fatalf("first run exit %v", firstErr)
	}
	wantCode(t, second, 0)
	wantContains(t, "second run", second.stderr, fmt.Sprintf("waiting for another moonfrp-bulk run (pid %d)...", firstPid))
	if first.ProcessState == nil {
		t.Fatal("first run did not finish")
	}
}

func TestUnitThatHitItsStartLimitComesBack(t *testing.T) {
	sp := sandbox.Spec{Name: "moonfrp-client-1", Behaviour: sandbox.Up, ModeFile: true, RestartDelay: 50 * time.Millisecond}
	sb := newSandbox(t, sp)
	if err := sb.SetMode(sp.Name, sandbox.Crash); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _ = sb.Systemctl(ctx, "start", sp.Name)
	// systemd offers no event to wait on here; poll its state with a bound.
	deadline := time.Now().Add(20 * time.Second)
	for sb.Show(ctx, sp.Name, "ActiveState") != "failed" {
		if time.Now().After(deadline) {
			t.Fatalf("unit never gave up restarting: %s", activeState(sb, sp.Name))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := sb.SetMode(sp.Name, sandbox.Up); err != nil {
		t.Fatal(err)
	}
	// Even fixed, a plain restart is refused now: the start limit is hit.
	// (systemd 252 words it as the last failure, not as the limit.)
	if _, err := sb.Systemctl(ctx, "restart", sp.Name); err == nil {
		t.Fatal("plain systemctl restart worked: the start limit was not hit")
	}
	r := bulk(t, sb, nil, "restart")
	wantCode(t, r, 0)
	if got := activeState(sb, sp.Name); got != "active/running" {
		t.Errorf("after the bulk restart the unit is %s", got)
	}
}

// A manager that dies mid-run: nothing more is launched, one top-level
// error says so, every unit is counted, and the exit code is 3.
func TestManagerLostMidRun(t *testing.T) {
	specs := sandbox.SlowStop("moonfrp-client", 30, 300*time.Millisecond)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	cmd := bulkCmd(sb, nil, "restart", "-j", "2", "--settle=0")
	stderr, done := startAndWaitFor(t, cmd, regexp.MustCompile(`^Progress: 2/30 `))
	if err := sb.KillManager(); err != nil {
		t.Fatal(err)
	}
	code := exitCode(cmd.Wait())
	<-done
	out := stderr.String()
	if code != 3 {
		t.Fatalf("exit %d, want 3:\n%s", code, out)
	}
	m := regexp.MustCompile(`Bulk restart stopped: (\d+) succeeded, (\d+) failed, (\d+) not started \(the service manager stopped answering\) in `).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary that counts the units not started:\n%s", out)
	}
	if n := atoi(m[1]) + atoi(m[2]) + atoi(m[3]); n != 30 || atoi(m[3]) == 0 {
		t.Errorf("counts %s+%s+%s: want 30 in all, with units not started", m[1], m[2], m[3])
	}
	errs := regexp.MustCompile(`(?m)^moonfrp-bulk: the user manager stopped answering mid-run`).FindAllString(out, -1)
	if len(errs) != 1 {
		t.Errorf("want one top-level error about the lost manager:\n%s", out)
	}
	assertNoChildren(t, cmd)
}

// Hostile logs: a log that is a FIFO is never opened for reading (the run
// ends in bounded time and says why), and terminal escapes that a unit
// (or the server frpc quotes) writes never reach the terminal or JSON.
func TestHostileLogsNeitherHangNorReachTheTerminal(t *testing.T) {
	specs := []sandbox.Spec{
		{Name: "moonfrp-client-fifo", NoLogFile: true, ExecStart: "/bin/sh -c 'exit 1'"},
		{Name: "moonfrp-client-esc", ExecStart: `/bin/sh -c 'printf "\\033]52;c;cHduZWQ=\\007\\033]0;title\\033\\\\login failed \\033c\\302\\233""31m\\010\\000 boom\\n"; exit 1'`},
	}
	sb := newSandbox(t, specs...)
	logDir := filepath.Join(sb.RuntimeDir, "moonfrp-logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(logDir, "moonfrp-client-fifo.log"), 0o666); err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() { done <- bulk(t, sb, []string{"MOONFRP_LOG_DIR=" + logDir}, "start", "-o", "json") }()
	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the run hung on a FIFO log")
	}
	wantCode(t, r, 1)
	res := results(t, r.stdout)
	wantContains(t, "fifo detail", res["moonfrp-client-fifo"]["detail"].(string), "is a FIFO, not a regular file")
	wantContains(t, "escape reason", res["moonfrp-client-esc"]["reason"].(string), "login failed", "boom")
	for _, s := range []string{r.stderr, res["moonfrp-client-esc"]["reason"].(string), res["moonfrp-client-esc"]["detail"].(string)} {
		for _, bad := range []string{"\x1b", "\u009b", "\x07", "\x08", "\x00", "cHduZWQ"} {
			if strings.Contains(s, bad) {
				t.Errorf("%q reached the output: %q", bad, s)
			}
		}
	}
}
