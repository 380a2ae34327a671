package tests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// binary is the moonfrp-bulk built for this test run, in a directory the
// sandbox user can read.
var binary string

func TestMain(m *testing.M) {
	if addr := os.Getenv(impostorEnv); addr != "" {
		impostor(addr)
		return
	}
	dir, err := os.MkdirTemp("", "moonfrp-bulk-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binary = filepath.Join(dir, "moonfrp-bulk")
	build := exec.Command("go", "build", "-o", binary, "..")
	// Static, so that it runs inside the booted hosts too.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build moonfrp-bulk:", err)
		os.Exit(2)
	}
	code := m.Run()
	sandbox.StopAll()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newSandbox starts a systemd user manager for one test and tears it down
// when the test ends. Where it cannot start it skips, except under
// CI=true, where a missing sandbox is a failure.
func newSandbox(t *testing.T, specs ...sandbox.Spec) *sandbox.Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sb, err := sandbox.Start(ctx)
	if err != nil {
		if errors.Is(err, sandbox.ErrUnavailable) && os.Getenv("CI") != "true" {
			t.Skipf("no systemd sandbox here: %v", err)
		}
		t.Fatalf("start sandbox: %v", err)
	}
	t.Cleanup(sb.Stop)
	if len(specs) > 0 {
		if err := sb.Install(ctx, specs...); err != nil {
			t.Fatalf("install units: %v", err)
		}
	}
	return sb
}

// result is one finished moonfrp-bulk run.
type result struct {
	stdout, stderr string
	code           int
	wall           time.Duration
}

// bulk runs moonfrp-bulk --user args... as the sandbox user.
func bulk(t *testing.T, sb *sandbox.Sandbox, env []string, args ...string) result {
	t.Helper()
	cmd := bulkCmd(sb, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), wall: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run moonfrp-bulk: %v", err)
	}
	t.Logf("moonfrp-bulk %s: exit %d in %s\nstderr:\n%s", strings.Join(args, " "), r.code, r.wall.Round(time.Millisecond), r.stderr)
	return r
}

// runMarker names an environment variable, unique per command, that every
// process a run starts inherits: assertNoChildren finds them by it.
const runMarker = "MOONFRP_BULK_TEST_RUN"

func bulkCmd(sb *sandbox.Sandbox, env []string, args ...string) *exec.Cmd {
	cmd := sb.Command(context.Background(), binary, append([]string{"--user"}, args...)...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d-%d", runMarker, os.Getpid(), time.Now().UnixNano()))
	return cmd
}

// startAll starts units and waits for the jobs (failures are expected for
// broken units).
func startAll(t *testing.T, sb *sandbox.Sandbox, specs []sandbox.Spec) {
	t.Helper()
	_, _ = sb.Systemctl(context.Background(), append([]string{"start"}, sandbox.Names(specs)...)...)
}

// activeState returns ActiveState/SubState of a unit.
func activeState(sb *sandbox.Sandbox, unit string) string {
	ctx := context.Background()
	return sb.Show(ctx, unit, "ActiveState") + "/" + sb.Show(ctx, unit, "SubState")
}

func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

// impostor listens on addr, says so, then reports on stdout every
// connection and every line it receives, answering nothing.
func impostor(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("cannot listen:", err)
		os.Exit(1)
	}
	fmt.Println("listening")
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(0)
		}
		fmt.Println("connection from", c.RemoteAddr())
		go func() {
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Println("received:", sc.Text())
			}
		}()
	}
}
