package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// 1,000 units under a 1,024 descriptor limit (soft and hard): the run
// holds one descriptor for all its locks, and acts on every unit.
func TestThousandUnitsUnderASmallDescriptorLimit(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("no prlimit")
	}
	specs := sandbox.SlowStop("moonfrp-client", 1000, 10*time.Millisecond)
	sb := newSandbox(t, specs...)
	cmd := bulkCmd(sb, nil, "stop", "-j", "50")
	cmd.Args = append([]string{"prlimit", "--nofile=1024:1024", "--"}, cmd.Args...)
	cmd.Path = "/usr/bin/prlimit"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	code := exitCode(cmd.Run())
	if code != 0 {
		t.Fatalf("exit %d under a 1,024 limit:\n%s", code, stderr.String())
	}
	wantContains(t, "summary", stderr.String(), "Bulk stop complete: 1000 succeeded, 0 failed")
}

// A process that runs out of descriptors is told so, and how to raise
// the limit; never that the manager may not be running.
func TestOutOfDescriptorsSaysSo(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("no prlimit")
	}
	specs := sandbox.SlowStop("moonfrp-client", 3, 10*time.Millisecond)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	cmd := bulkCmd(sb, nil, "stop")
	cmd.Args = append([]string{"prlimit", "--nofile=8:8", "--"}, cmd.Args...)
	cmd.Path = "/usr/bin/prlimit"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	code := exitCode(cmd.Run())
	if code != 3 || !strings.Contains(stderr.String(), "out of file descriptors (limit 8, and moonfrp-bulk needs at least ") || strings.Contains(stderr.String(), "manager running") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 3 saying that descriptors ran out", code, stderr.String())
	}
	if n := strings.Count(strings.TrimSpace(stderr.String()), "\n"); n != 0 {
		t.Errorf("the refusal is %d lines, want one:\n%s", n+1, stderr.String())
	}
	for _, s := range specs {
		if got := sb.Show(context.Background(), s.Name, "ActiveState"); got != "active" {
			t.Errorf("%s is %s after a refused run, want it left active", s.Name, got)
		}
	}
}

// A -j that the descriptor limit cannot hold is lowered to what it can,
// with a warning, and the run acts on every unit: never a run that dies
// half-way on "too many open files".
func TestParallelismFitsTheDescriptorLimit(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Skip("no prlimit")
	}
	specs := sandbox.SlowStop("moonfrp-client", 12, 10*time.Millisecond)
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	cmd := bulkCmd(sb, nil, "stop", "-j", "50")
	// 176 for the invocation, and 8 for each of 4 slots.
	cmd.Args = append([]string{"prlimit", "--nofile=208:208", "--"}, cmd.Args...)
	cmd.Path = "/usr/bin/prlimit"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if code := exitCode(cmd.Run()); code != 0 {
		t.Fatalf("exit %d under a limit of 208:\n%s", code, stderr.String())
	}
	wantContains(t, "warning", stderr.String(), "-j 50 lowered to 4: the file descriptor limit is 208")
	wantContains(t, "summary", stderr.String(), "Bulk stop complete: 12 succeeded, 0 failed")
	for _, s := range specs {
		if got := sb.Show(context.Background(), s.Name, "ActiveState"); got != "inactive" {
			t.Errorf("%s is %s, want stopped", s.Name, got)
		}
	}
}

// A unit with an alias is one unit, whatever it is called: named twice it
// is restarted once, list shows it once, by its Id, and its lock is the
// same under either name.
func TestAliasIsOneUnit(t *testing.T) {
	specs := sandbox.SlowStop("moonfrp-client-al", 1, 2*time.Second)
	specs[0].Name = "moonfrp-client-al"
	sb := newSandbox(t, specs...)
	if err := os.Symlink(filepath.Join(sb.UnitDir, "moonfrp-client-al.service"), filepath.Join(sb.UnitDir, "moonfrp-client-alias.service")); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(sb.UnitDir, "moonfrp-client-alias.service"), sb.UID, sb.GID); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Systemctl(context.Background(), "daemon-reload"); err != nil {
		t.Fatal(err)
	}
	startAll(t, sb, specs)
	before := monotonic(t, sb, "moonfrp-client-al", "ExecMainStartTimestampMonotonic")

	r := bulk(t, sb, nil, "restart", "-j", "1", "-o", "json", "moonfrp-client-al", "moonfrp-client-alias")
	wantCode(t, r, 0)
	res := results(t, r.stdout)
	if len(res) != 1 || res["moonfrp-client-al"] == nil {
		t.Fatalf("results %v, want one, for moonfrp-client-al", res)
	}
	wantContains(t, "warning", r.stderr, "moonfrp-client-alias is an alias of moonfrp-client-al")
	if after := monotonic(t, sb, "moonfrp-client-al", "ExecMainStartTimestampMonotonic"); after == before {
		t.Error("the unit was not restarted")
	}
	if n := sb.Show(context.Background(), "moonfrp-client-al", "NRestarts"); n != "0" {
		t.Errorf("NRestarts %s: restarted more than once", n)
	}

	l := bulk(t, sb, nil, "list", "--names")
	wantCode(t, l, 0)
	if strings.TrimSpace(l.stdout) != "moonfrp-client-al" {
		t.Errorf("list shows %q, want the unit once, by its Id", l.stdout)
	}
	l = bulk(t, sb, nil, "list", "-o", "json")
	wantCode(t, l, 0)
	if evs := parseEvents(t, l.stdout); len(evs) != 1 || fmt.Sprint(evs[0]["aliases"]) != "[moonfrp-client-alias]" {
		t.Errorf("list -o json: %s, want one unit with its alias", l.stdout)
	}

	// One run holds the unit by one name; another, naming the alias,
	// finds it busy.
	first := bulkCmd(sb, nil, "restart", "moonfrp-client-al")
	stderr, done := startAndWaitFor(t, first, regexp.MustCompile(`^Restarting 1 service`))
	second := bulk(t, sb, nil, "restart", "--no-wait", "moonfrp-client-alias")
	wantCode(t, second, 4)
	if err := first.Wait(); err != nil {
		t.Errorf("first run: %v\n%s", err, stderr)
	}
	<-done
}
