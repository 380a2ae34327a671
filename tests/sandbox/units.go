package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Behaviour is how a sandbox tunnel behaves when started.
type Behaviour string

// Behaviours of the stand-in frpc.
const (
	// Up runs until stopped, taking StopDelay to stop gracefully.
	Up Behaviour = "up"
	// Crash logs a frpc-style error (with ANSI colour) and exits 1 at
	// once; with Restart=always the unit loops in activating/auto-restart
	// while systemctl start still returns 0.
	Crash Behaviour = "crash"
	// FailPre fails in ExecStartPre=/bin/false: systemctl itself fails.
	FailPre Behaviour = "fail-pre"
	// Hang never finishes starting (ExecStartPre sleeps forever).
	Hang Behaviour = "hang"
)

// Spec describes one unit to install.
type Spec struct {
	Name      string // without .service
	Behaviour Behaviour
	// StopDelay is the graceful stop time of an Up unit (default 0.5s).
	StopDelay time.Duration
	// Config is the path passed as "-c PATH", as MoonFRP's units do.
	Config string
	// Message is what a Crash unit logs.
	Message string
	// RecordPre, when set, makes ExecStartPre append "B <ns>" and
	// "E <ns>" lines to StateDir/RecordPre around a Hold-long sleep, so
	// tests can see from outside how many starts overlapped.
	RecordPre string
	Hold      time.Duration
	// RestartDelay is RestartSec= for Restart=always (default 5s, as MoonFRP writes it).
	RestartDelay time.Duration
	// ModeFile lets a test change the behaviour later: the stand-in frpc
	// reads StateDir/<Name>.mode at each start when it exists.
	ModeFile bool
	// NoStartLimit turns off systemd's start rate limit, for benchmarks
	// that restart the same units many times in a row.
	NoStartLimit bool
	// ExecStart, when set, is the unit's command instead of the stand-in
	// frpc: a real frpc or frps, with Behaviour ignored.
	ExecStart string
	// NoLogFile leaves out StandardOutput=/StandardError=: the unit's
	// log is then looked for in MOONFRP_LOG_DIR.
	NoLogFile bool
	// WorkDir is the unit's WorkingDirectory=, when set.
	WorkDir string
}

// frpcScript stands in for frpc: MoonFRP-shaped ExecStart, real process
// behaviour. It is installed once per sandbox.
const frpcScript = `#!/bin/sh
# Stand-in for frpc in sandbox units: "-c CONFIG" is accepted and ignored.
# A graceful stop takes STOP_DELAY. systemd sends SIGTERM to every process
# in the unit's cgroup and re-reads the cgroup until no new process turns
# up, so a sleep forked by the trap could be killed at once, and about one
# stop in six then took milliseconds. Ignoring TERM before the fork protects
# the sleep (an ignored signal stays ignored across exec); SIGKILL at
# TimeoutStopSec still ends both. The traps come before anything else,
# since a Type=simple unit counts as started at fork.
trap 'trap "" TERM; sleep "${STOP_DELAY:-0.5}"; exit 0' TERM
# frpc reloads its config on SIGHUP (ExecReload) and keeps running.
trap 'printf "%s [I] [service.go:120] reload config success\n" "$(date "+%Y/%m/%d %H:%M:%S")"' HUP
# "frpc verify -c CONFIG" (the preflight) answers as frp does and exits.
if [ "$1" = verify ]; then echo "frpc: the configuration file $3 syntax is ok"; exit 0; fi
mode="${MODE:-up}"
if [ -n "$MODE_FILE" ] && [ -r "$MODE_FILE" ]; then mode=$(cat "$MODE_FILE"); fi
case "$mode" in
crash)
	printf '%s \033[1;31m[E] [service.go:295] %s\033[0m\n' "$(date '+%Y/%m/%d %H:%M:%S')" "${MESSAGE:-login to the server failed: authorization failed}"
	exit 1 ;;
esac
printf '%s [I] [service.go:301] login to server success\n' "$(date '+%Y/%m/%d %H:%M:%S')"
while :; do sleep 3600 & wait; done
`

const recordScript = `#!/bin/sh
# ExecStartPre that records when it begins and ends: $1 file, $2 seconds.
echo "B $(date +%s%N)" >> "$1"
sleep "$2"
echo "E $(date +%s%N)" >> "$1"
`

// BinDir holds the stand-in programs.
func (s *Sandbox) BinDir() string { return filepath.Join(s.RuntimeDir, "bin") }

func (s *Sandbox) installScripts() error {
	if err := os.MkdirAll(s.BinDir(), 0o755); err != nil {
		return fmt.Errorf("bin dir: %w", err)
	}
	for name, body := range map[string]string{"frpc": frpcScript, "record-pre": recordScript} {
		if err := os.WriteFile(filepath.Join(s.BinDir(), name), []byte(body), 0o755); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
	}
	return nil
}

// UnitFile renders the unit as MoonFRP would write it, pointed at the
// stand-in frpc and the sandbox's log directory.
func (s *Sandbox) UnitFile(sp Spec) string {
	var b strings.Builder
	cfg := sp.Config
	if cfg == "" {
		cfg = "/etc/frp/" + strings.TrimPrefix(sp.Name, "moonfrp-") + ".toml"
	}
	stop := sp.StopDelay
	if stop == 0 {
		stop = 500 * time.Millisecond
	}
	restartDelay := sp.RestartDelay
	if restartDelay == 0 {
		restartDelay = 5 * time.Second
	}
	log := filepath.Join(s.LogDir, sp.Name+".log")
	fmt.Fprintf(&b, "[Unit]\nDescription=MoonFRP sandbox tunnel %s\n", sp.Name)
	if sp.NoStartLimit {
		b.WriteString("StartLimitIntervalSec=0\n")
	}
	b.WriteString("\n[Service]\nType=simple\n")
	fmt.Fprintf(&b, "Environment=STOP_DELAY=%.3f\n", stop.Seconds())
	switch sp.Behaviour {
	case Crash:
		fmt.Fprintf(&b, "Environment=MODE=crash\n")
		if sp.Message != "" {
			fmt.Fprintf(&b, "Environment=\"MESSAGE=%s\"\n", sp.Message)
		}
	case FailPre:
		b.WriteString("ExecStartPre=/bin/false\n")
	case Hang:
		b.WriteString("ExecStartPre=/bin/sleep infinity\nTimeoutStartSec=infinity\n")
	}
	if sp.ModeFile {
		fmt.Fprintf(&b, "Environment=MODE_FILE=%s\n", filepath.Join(s.StateDir, sp.Name+".mode"))
	}
	if sp.RecordPre != "" {
		hold := sp.Hold
		if hold == 0 {
			hold = 200 * time.Millisecond
		}
		fmt.Fprintf(&b, "ExecStartPre=%s %s %.3f\n", filepath.Join(s.BinDir(), "record-pre"), filepath.Join(s.StateDir, sp.RecordPre), hold.Seconds())
	}
	if sp.WorkDir != "" {
		fmt.Fprintf(&b, "WorkingDirectory=%s\n", sp.WorkDir)
	}
	if sp.ExecStart != "" {
		fmt.Fprintf(&b, "ExecStart=%s\n", sp.ExecStart)
	} else {
		fmt.Fprintf(&b, "ExecStart=%s -c %s\n", filepath.Join(s.BinDir(), "frpc"), cfg)
	}
	b.WriteString("ExecReload=/bin/kill -HUP $MAINPID\n")
	fmt.Fprintf(&b, "Restart=always\nRestartSec=%.3f\n", restartDelay.Seconds())
	if !sp.NoLogFile {
		fmt.Fprintf(&b, "StandardOutput=append:%s\nStandardError=append:%s\n", log, log)
	}
	return b.String()
}

// Install writes the units and reloads the manager.
func (s *Sandbox) Install(ctx context.Context, specs ...Spec) error {
	if err := s.installScripts(); err != nil {
		return err
	}
	for _, sp := range specs {
		p := filepath.Join(s.UnitDir, sp.Name+".service")
		if err := os.WriteFile(p, []byte(s.UnitFile(sp)), 0o644); err != nil {
			return fmt.Errorf("write unit: %w", err)
		}
	}
	if err := chownTree(s.StateDir, s.UID, s.GID); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if _, err := s.Systemctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	return nil
}

// SetMode writes the behaviour a ModeFile unit takes at its next start.
func (s *Sandbox) SetMode(name string, b Behaviour) error {
	p := filepath.Join(s.StateDir, name+".mode")
	if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
		return fmt.Errorf("set mode: %w", err)
	}
	return os.Chown(p, s.UID, s.GID)
}

// SlowStop returns n Up units named prefix-1..n with the given stop delay.
func SlowStop(prefix string, n int, stop time.Duration) []Spec {
	specs := make([]Spec, n)
	for i := range specs {
		specs[i] = Spec{Name: fmt.Sprintf("%s-%d", prefix, i+1), Behaviour: Up, StopDelay: stop}
	}
	return specs
}

// Names returns the unit names of specs, without .service.
func Names(specs []Spec) []string {
	names := make([]string, len(specs))
	for i, sp := range specs {
		names[i] = sp.Name
	}
	return names
}
