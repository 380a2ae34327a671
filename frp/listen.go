package frp

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrNotListening means no socket listens where a connection would go.
var ErrNotListening = errors.New("nothing listens there")

// errCannotTell means the process's descriptors could not be read (not
// ours to read).
var errCannotTell = errors.New("cannot tell whose socket it is")

// ErrNoProcess means the unit has no main process (any more): no socket
// can be its.
var ErrNoProcess = errors.New("the unit has no running main process")

// maxTreeProcs bounds the processes of a unit's tree whose descriptors
// are read: frp runs one process.
const maxTreeProcs = 64

// HeldBy reports whether every socket that would take a TCP connection to
// ip:port listens in process pid or one of its descendants. Linux hands a
// connection to a socket bound to exactly that address if there is one,
// else to one bound to the wildcard address of its family (or to [::],
// which takes IPv4 too unless it is IPv6-only), so those are the sockets
// that must belong to the process. Whether a [::] socket is IPv6-only
// cannot be seen in /proc: it is always counted, so another process's
// IPv6-only [::] socket keeps the credentials here (the safe way). It reads the listening sockets from
// /proc/net/tcp and tcp6 (this process's network namespace, where the
// connection would be made) and looks for their inodes among the tree's
// descriptors. The error is ErrNotListening when nothing would take the
// connection, and another error when the descriptors cannot be read.
func HeldBy(pid int, ip netip.Addr, port int) (bool, error) {
	exact, wild := map[string]bool{}, map[string]bool{}
	ip = ip.Unmap().WithZone("")
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		for _, s := range listeners(f, port) {
			switch {
			case s.addr == ip:
				exact[s.inode] = true
			case s.addr.IsUnspecified() && (s.addr.Is4() == ip.Is4() || s.addr.Is6()):
				wild[s.inode] = true
			}
		}
	}
	take := exact
	if len(take) == 0 {
		take = wild
	}
	if len(take) == 0 {
		return false, ErrNotListening
	}
	held, err := treeSockets(pid)
	if err != nil {
		return false, err
	}
	for inode := range take {
		if !held[inode] {
			return false, nil
		}
	}
	return true, nil
}

type listener struct {
	addr  netip.Addr
	inode string
}

// listeners returns the sockets of a /proc/net/tcp-style file that listen
// on port.
func listeners(file string, port int) []listener {
	fh, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer fh.Close()
	var out []listener
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseUint(hexPort, 16, 16); err != nil || int(p) != port {
			continue
		}
		if a, ok := procAddr(hexAddr); ok {
			out = append(out, listener{addr: a.Unmap(), inode: "socket:[" + f[9] + "]"})
		}
	}
	return out
}

// procAddr decodes an address as /proc/net/tcp writes it: each 32-bit
// word in the host's byte order.
func procAddr(h string) (netip.Addr, bool) {
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.Addr{}, false
	}
	for i := 0; i < len(b); i += 4 {
		binary.BigEndian.PutUint32(b[i:], binary.NativeEndian.Uint32(b[i:]))
	}
	a, ok := netip.AddrFromSlice(b)
	return a, ok
}

// treeSockets returns the socket inodes held by pid and its descendants.
func treeSockets(pid int) (map[string]bool, error) {
	if pid <= 0 {
		return nil, ErrNoProcess
	}
	held := map[string]bool{}
	queue := []int{pid}
	for n := 0; len(queue) > 0 && n < maxTreeProcs; n++ {
		p := queue[0]
		queue = queue[1:]
		dir := fmt.Sprintf("/proc/%d/fd", p)
		ents, err := os.ReadDir(dir)
		switch {
		case err != nil && p == pid && errors.Is(err, fs.ErrNotExist):
			return nil, ErrNoProcess
		case err != nil && p == pid:
			return nil, fmt.Errorf("%w: read descriptors of pid %d: %v", errCannotTell, pid, err)
		case err != nil:
			continue // a child that ended meanwhile
		}
		for _, e := range ents {
			if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(target, "socket:[") {
				held[target] = true
			}
		}
		queue = append(queue, children(p)...)
	}
	return held, nil
}

// children lists the child processes of pid, from every thread's
// children file.
func children(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var kids []int
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if k, err := strconv.Atoi(f); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids
}

// resolveTimeout bounds the lookup of a host name in a config.
const resolveTimeout = time.Second

// Addrs returns the addresses that a listening address of a config means
// to a client on this host: the wildcard addresses (and an empty one)
// mean loopback, a literal is itself, and a name is looked up (as frp
// would, through /etc/hosts first), every address it has.
func Addrs(ctx context.Context, addr string) ([]netip.Addr, error) {
	switch addr {
	case "", "0.0.0.0":
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}, nil
	case "::", "[::]":
		return []netip.Addr{netip.IPv6Loopback()}, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	as, err := net.DefaultResolver.LookupNetIP(ctx, "ip", addr)
	if err != nil || len(as) == 0 {
		return nil, fmt.Errorf("cannot resolve %q", addr)
	}
	for i := range as {
		as[i] = as[i].Unmap()
	}
	return as, nil
}

// Owned picks, of the addresses that addr means (see Addrs), the one at
// which the sockets listening on port belong to pid's process tree: the
// only address that a request carrying credentials may go to, or whose
// acceptance proves a server up. It fails with ErrNotListening while
// nothing listens at one of them yet (the process may be about to bind
// it), and with a reason, naming whose socket it is not, once every one
// is taken by another process.
func Owned(ctx context.Context, addr string, port, pid int) (netip.Addr, error) {
	as, err := Addrs(ctx, addr)
	if err != nil {
		return netip.Addr{}, err
	}
	free := false
	var lastErr error
	for _, a := range as {
		own, err := HeldBy(pid, a, port)
		switch {
		case err == nil && own:
			return a, nil
		case errors.Is(err, ErrNoProcess):
			return netip.Addr{}, err
		case errors.Is(err, ErrNotListening):
			free = true
		case err != nil:
			lastErr = err
		}
	}
	switch {
	case free:
		return netip.Addr{}, ErrNotListening
	case lastErr != nil:
		return netip.Addr{}, fmt.Errorf("%s: %w", hostPort(addr, port), lastErr)
	}
	return netip.Addr{}, fmt.Errorf("%s is held by another process, not the unit's (pid %d)", hostPort(addr, port), pid)
}

// ConnectedTo reports whether process pid (or a descendant) holds an
// established TCP connection to one of addrs at port: for frpc, whether
// its session is with the server its config names now.
func ConnectedTo(pid int, addrs []netip.Addr, port int) (bool, error) {
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		want[a.Unmap().WithZone("")] = true
	}
	inodes := map[string]bool{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 10 || f[3] != "01" { // 01: ESTABLISHED
				continue
			}
			hexAddr, hexPort, ok := strings.Cut(f[2], ":")
			if !ok {
				continue
			}
			p, err := strconv.ParseUint(hexPort, 16, 16)
			a, aok := procAddr(hexAddr)
			if err == nil && aok && int(p) == port && want[a.Unmap()] {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return false, nil
	}
	held, err := treeSockets(pid)
	if err != nil {
		return false, err
	}
	for inode := range inodes {
		if held[inode] {
			return true, nil
		}
	}
	return false, nil
}
