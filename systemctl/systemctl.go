// Package systemctl runs systemctl with argv (never through a shell) and
// parses the machine-readable parts of its output.
package systemctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Output is what one systemctl invocation produced. A non-zero exit is not
// an error here: for a unit operation it is an outcome, and the caller
// decides what it means.
type Output struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// Runner runs systemctl with the given arguments. Manager is the real one;
// unit tests substitute recording or scripted runners.
type Runner interface {
	Run(ctx context.Context, args ...string) (Output, error)
}

// Journaler reads the journal. Manager implements it with journalctl;
// unit tests substitute scripted ones.
type Journaler interface {
	// HasJournal reports whether a journal is there to read.
	HasJournal() bool
	// Journal runs journalctl [--user] args... like Run.
	Journal(ctx context.Context, args ...string) (Output, error)
}

// Manager talks to one service manager: the system one, or with User set
// the calling user's (systemctl --user).
type Manager struct {
	// Path is the systemctl binary; empty means "systemctl" from PATH.
	Path string
	// User selects the user's service manager.
	User bool
	// Journalctl is the journalctl binary; empty means "journalctl".
	Journalctl string
}

// quiet verbs print nothing useful on stdout; skipping the pipe saves a
// goroutine and a copy per unit on the hot path.
var quiet = map[string]bool{"start": true, "stop": true, "restart": true, "reload": true}

// Run executes systemctl [--user] args... and waits for it. The error is
// non-nil only when systemctl could not be run at all or ctx ended first;
// a non-zero exit status is reported in Output.ExitCode.
func (m Manager) Run(ctx context.Context, args ...string) (Output, error) {
	path := m.Path
	if path == "" {
		path = "systemctl"
	}
	return m.run(ctx, path, args)
}

// HasJournal reports whether journald runs here: its socket exists.
func (m Manager) HasJournal() bool {
	_, err := os.Stat("/run/systemd/journal/socket")
	return err == nil
}

// Journal runs journalctl [--user] args... and waits for it, as Run does.
func (m Manager) Journal(ctx context.Context, args ...string) (Output, error) {
	path := m.Journalctl
	if path == "" {
		path = "journalctl"
	}
	return m.run(ctx, path, args)
}

func (m Manager) run(ctx context.Context, path string, args []string) (Output, error) {
	if len(args) == 0 {
		return Output{}, fmt.Errorf("run %s: no arguments", path)
	}
	full := make([]string, 0, len(args)+1)
	if m.User {
		full = append(full, "--user")
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, path, full...)
	// Its own process group: a Ctrl-C at the terminal reaches moonfrp-bulk,
	// which lets operations in flight finish, instead of killing them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr bytes.Buffer
	if !quiet[args[0]] {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = &stderr
	err := cmd.Run()
	out := Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if ctxErr := ctx.Err(); ctxErr != nil {
		out.ExitCode = -1
		return out, ctxErr
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		out.ExitCode = exitErr.ExitCode()
	default:
		return out, fmt.Errorf("run %s: %w", path, err)
	}
	return out, nil
}

// Scope returns "user" or "system", for messages and JSON.
func (m Manager) Scope() string {
	if m.User {
		return "user"
	}
	return "system"
}

// Failure says why a systemctl call failed: its first error line, or its
// exit status when it printed nothing.
func Failure(out Output) string {
	if line := FirstLine(out.Stderr); line != "" {
		return line
	}
	return fmt.Sprintf("exited with status %d and printed no error", out.ExitCode)
}

// FirstLine returns the first non-empty line of b, trimmed.
func FirstLine(b []byte) string {
	for _, line := range strings.Split(string(b), "\n") {
		if s := strings.TrimSpace(line); s != "" {
			return s
		}
	}
	return ""
}
