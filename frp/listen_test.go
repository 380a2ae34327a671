package frp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
)

func listen(t *testing.T, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// A socket is the process's when the connection would reach it: bound to
// exactly the address, or else to its family's wildcard.
func TestHeldBy(t *testing.T) {
	self := os.Getpid()
	exact := listen(t, "127.0.0.1:0")
	wild := listen(t, "0.0.0.0:0")
	v6 := listen(t, "[::1]:0")
	cases := []struct {
		name string
		pid  int
		ip   string
		port int
		own  bool
		err  error
	}{
		{"exact address", self, "127.0.0.1", exact, true, nil},
		{"wildcard takes loopback", self, "127.0.0.1", wild, true, nil},
		{"another loopback address, no wildcard", self, "127.0.0.2", exact, false, ErrNotListening},
		{"IPv6 socket does not take IPv4", self, "127.0.0.1", v6, false, ErrNotListening},
		{"IPv4 socket does not take IPv6", self, "::1", exact, false, ErrNotListening},
		{"IPv6 exact", self, "::1", v6, true, nil},
	}
	cases = append(cases, struct {
		name string
		pid  int
		ip   string
		port int
		own  bool
		err  error
	}{"another process's socket", otherProcess(t), "127.0.0.1", exact, false, nil})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			own, err := HeldBy(c.pid, netip.MustParseAddr(c.ip), c.port)
			if own != c.own || !errors.Is(err, c.err) {
				t.Errorf("HeldBy = %v, %v; want %v, %v", own, err, c.own, c.err)
			}
		})
	}
}

func TestProcAddr(t *testing.T) {
	for h, want := range map[string]string{
		"0100007F":                         "127.0.0.1",
		"00000000":                         "0.0.0.0",
		"00000000000000000000000001000000": "::1",
		"0000000000000000FFFF00000100007F": "::ffff:127.0.0.1",
	} {
		a, ok := procAddr(h)
		if !ok || a.String() != want {
			t.Errorf("procAddr(%s) = %v %v, want %s", h, a, ok, want)
		}
	}
	if _, ok := procAddr("zz"); ok {
		t.Error("procAddr took garbage")
	}
}

// The address a request goes to is the one whose socket is the unit's:
// "localhost" means 127.0.0.1 and ::1, and only the one that the process
// listens on is picked.
func TestOwnedPicksTheProcesssAddress(t *testing.T) {
	as, err := Addrs(context.Background(), "localhost")
	if err != nil || len(as) == 0 {
		t.Skipf("localhost does not resolve here: %v", err)
	}
	port := listen(t, "127.0.0.1:0")
	at, err := Owned(context.Background(), "localhost", port, os.Getpid())
	if err != nil || at != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("Owned(localhost) = %v, %v; want 127.0.0.1", at, err)
	}
	if _, err := Owned(context.Background(), "127.0.0.1", port+0, 0); err == nil {
		t.Error("a unit without a main process owns a socket")
	}
	if _, err := Owned(context.Background(), "localhost", port, otherProcess(t)); err == nil || errors.Is(err, ErrNotListening) {
		t.Errorf("another process's socket: %v, want a refusal", err)
	}
}

// otherProcess starts a process that holds no socket, and returns its pid.
func otherProcess(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}
