package tests

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"syscall"
	"testing"

	"github.com/creack/pty"
)

// runInPTY runs cmd with its stdio on a pseudo-terminal and returns all it
// wrote there and its exit code.
func runInPTY(t *testing.T, cmd *exec.Cmd) (string, int) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatalf("pty size: %v", err)
	}
	// The sandbox user must be able to open its terminal.
	if cred := cmd.SysProcAttr.Credential; cred != nil {
		if err := tty.Chown(int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatalf("chown pty: %v", err)
		}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr.Setsid = true
	cmd.SysProcAttr.Setctty = true
	if err := cmd.Start(); err != nil {
		t.Fatalf("start in pty: %v", err)
	}
	tty.Close()
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := io.Copy(&out, ptmx)
		// EIO is how a pty master reports that the other side closed.
		if err != nil && !errors.Is(err, syscall.EIO) {
			t.Errorf("read pty: %v", err)
		}
	}()
	err = cmd.Wait()
	<-done
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return out.String(), code
}
