package tests

import (
	"os/exec"
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
	cmd := bulkCmd(sb, nil, "stop")
	cmd.Args = append([]string{"prlimit", "--nofile=8:8", "--"}, cmd.Args...)
	cmd.Path = "/usr/bin/prlimit"
	var stderr strings.Builder
	cmd.Stderr = &stderr
	code := exitCode(cmd.Run())
	if code != 3 || !strings.Contains(stderr.String(), "out of file descriptors (limit 8); raise it") || strings.Contains(stderr.String(), "manager running") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 3 saying that descriptors ran out", code, stderr.String())
	}
}
