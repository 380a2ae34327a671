package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// SSHD is a throw-away OpenSSH server on a free loopback port: the way in
// to sandbox "hosts" for tests that need a real remote transport (Ansible).
// It lets in only the users it was started for, with one key of its own.
type SSHD struct {
	Port int
	// Key is the client's private key, for ssh -i.
	Key string

	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	once   sync.Once
}

// StartSSHD starts sshd for users, with a fresh host key and client key
// under a new directory in dir, and waits until it accepts connections.
func StartSSHD(ctx context.Context, dir string, users []string) (*SSHD, error) {
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		if sshd, err = exec.LookPath("/usr/sbin/sshd"); err != nil {
			return nil, fmt.Errorf("%w: sshd not installed (openssh-server)", ErrUnavailable)
		}
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		return nil, fmt.Errorf("%w: ssh-keygen not installed", ErrUnavailable)
	}
	work, err := os.MkdirTemp(dir, "sshd-")
	if err != nil {
		return nil, err
	}
	// sshd reads authorized_keys as the user logging in.
	if err := os.Chmod(work, 0o755); err != nil {
		return nil, err
	}
	// Its privilege separation directory; Debian's package makes it only
	// when its own service starts.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	s := &SSHD{dir: work, Key: filepath.Join(work, "client_ed25519"), exited: make(chan struct{})}
	for _, k := range []string{"host_ed25519", "client_ed25519"} {
		out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "moonfrp-bulk-test", "-f", filepath.Join(work, k)).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(s.Key + ".pub")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(work, "authorized_keys"), pub, 0o644); err != nil {
		return nil, err
	}
	ports, err := FreePorts(1)
	if err != nil {
		return nil, err
	}
	s.Port = ports[0]
	config := strings.Join([]string{
		"Port " + strconv.Itoa(s.Port),
		"ListenAddress 127.0.0.1",
		"HostKey " + filepath.Join(work, "host_ed25519"),
		"PidFile none",
		"UsePAM no",
		"StrictModes no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"AuthorizedKeysFile " + filepath.Join(work, "authorized_keys"),
		"AllowUsers " + strings.Join(users, " "),
		"PermitRootLogin no",
		"Subsystem sftp internal-sftp",
		"LogLevel ERROR",
		"",
	}, "\n")
	cfg := filepath.Join(work, "sshd_config")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(work, "sshd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// -D: in the foreground, a child of this process; -e: log to stderr.
	s.cmd = exec.Command(sshd, "-D", "-e", "-f", cfg)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	register(s)
	if err := s.waitListening(ctx, 10*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *SSHD) waitListening(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "sshd.log"))
			return fmt.Errorf("sshd exited at start: %s", strings.TrimSpace(string(log)))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
			// Nothing announces that the port is open.
		}
		if time.Now().After(deadline) {
			return errors.New("sshd did not listen within " + limit.String())
		}
	}
}

// Log returns what sshd logged, for a failing test.
func (s *SSHD) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "sshd.log"))
	return string(b)
}

// Stop kills sshd and the sessions it started, and removes its files.
func (s *SSHD) Stop() {
	s.once.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			// The sessions it forked run in sessions of their own: end
			// them first, deepest first, each level reaped by its parent
			// before the next goes (an orphan would be left to PID 1,
			// which here need not reap it).
			var levels [][]int
			for next := []int{s.cmd.Process.Pid}; ; {
				var kids []int
				for _, p := range next {
					kids = append(kids, childrenOf(p)...)
				}
				if len(kids) == 0 {
					break
				}
				levels = append(levels, kids)
				next = kids
			}
			for i := len(levels) - 1; i >= 0; i-- {
				for _, p := range levels[i] {
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
				deadline := time.Now().Add(2 * time.Second)
				for _, p := range levels[i] {
					for time.Now().Before(deadline) {
						if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); err != nil {
							break
						}
						time.Sleep(10 * time.Millisecond) // reaping has no event to wait on
					}
				}
			}
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
				<-s.exited
			}
		}
		os.RemoveAll(s.dir)
		unregister(s)
	})
}
