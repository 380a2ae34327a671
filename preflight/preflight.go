// Package preflight checks frp units' configs the way frp will read them,
// before an operation touches the units: each unit's own binary, in its
// verify mode (`frpc verify -c CONFIG`, `frps verify -c CONFIG`; every
// frp release since 0.52 has it), as the unit's User=, in its working
// directory (where frp resolves a relative path and includes). A unit
// whose config frp refuses is left as it is: a restart would stop a
// working tunnel for a config that cannot start (nginx -t's habit).
package preflight

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moonfrp/moonfrp-bulk/discover"
	"github.com/moonfrp/moonfrp-bulk/frp"
	"github.com/moonfrp/moonfrp-bulk/sanitize"
)

// Timeout bounds one check: frp's verify reads a few files and exits.
const Timeout = 10 * time.Second

// maxOutput bounds what of frp's answer is kept.
const maxOutput = 4 << 10

// Check verifies the config of every frp unit of units (see
// discover.Facts) that frp has not already accepted as it is, at most
// parallel at a time, and returns frp's words for each config that frp
// refuses. A check that cannot run (no binary, a timeout) refuses
// nothing: the operation then says what is wrong. reloaded is when
// moonfrp-bulk last reloaded each unit in place (from the job log).
func Check(ctx context.Context, units []string, facts map[string]discover.Facts, reloaded map[string]time.Time, parallel int) map[string]string {
	refused := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, parallel))
	for _, u := range units {
		f := facts[u]
		if !needed(f, reloaded[u]) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if why := verify(ctx, f); why != "" {
				mu.Lock()
				refused[u] = why
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return refused
}

// needed says whether frp must be asked about a unit's config. Not when
// frp already accepted it as it is: the unit's frp runs, started from
// the binary on disk now, and the config and its includes have not
// changed since it read them (frp exits on a config it refuses). Each
// check is a start of frp's binary, about 40 ms of CPU, which on a
// restart of 200 unchanged tunnels on 2 cores was a third of the run.
// Not for a config that frp renders as a template from its unit's
// environment, which the check does not have: verify would judge
// another text.
func needed(f discover.Facts, reloaded time.Time) bool {
	if f.FRPBinary == "" || f.FRPPath == "" || f.FRPConfig == "" {
		return false
	}
	c, err := frp.Load(f.FRPConfig, f.FRPBinary, f.Owners(), f.WorkDir)
	if errors.Is(err, frp.ErrTemplate) {
		return false
	}
	if err != nil {
		return true
	}
	state, _ := discover.LoadedConfigState(f, c, reloaded)
	return state != discover.ConfigUnchanged || discover.BinaryReplaced(f)
}

// verify runs the unit's binary in verify mode and returns frp's words
// when it refuses the config ("" when it accepts it, or cannot tell).
func verify(ctx context.Context, f discover.Facts) string {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.FRPPath, "verify", "-c", f.FRPConfig)
	cmd.Dir = "/"
	if f.WorkDir != "" {
		cmd.Dir = f.WorkDir
	}
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	// Its own process group, so that whatever the binary forks ends with
	// it: a binary that is not frp (or a wrapper script) may serve instead
	// of verifying, and a child left behind would outlive the run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: credential(f.User)}
	cmd.Cancel = func() error { return killGroup(cmd) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		// The binary exited but something it started still holds its
		// output: that group still exists, so its id names only it.
		_ = killGroup(cmd)
	}
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) || ctx.Err() != nil || ee.ExitCode() < 0 {
		return ""
	}
	return words(out.Bytes())
}

// killGroup kills the check's process group. Cancel runs before the
// leader is reaped, so the group's id cannot have been reused.
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill verify's process group: %w", err)
	}
	return nil
}

// credential is the unit's User= (and its group) for a root run; nil
// when the check runs as the caller (no User=, or not root).
func credential(name string) *syscall.Credential {
	if name == "" || os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// words is frp's answer in one line: its lines, sanitised, joined, and
// bounded.
func words(out []byte) string {
	if len(out) > maxOutput {
		out = out[:maxOutput]
	}
	var parts []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(sanitize.Line(l)); l != "" {
			parts = append(parts, l)
		}
	}
	if len(parts) == 0 {
		return "frp's verify refused it without a word"
	}
	return fmt.Sprint(strings.Join(parts, "; "))
}
