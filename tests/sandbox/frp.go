package sandbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FRPVersions are the frp releases that the tunnel tests run against,
// each pinned by its own module in tests/frpbuild/<version>: the oldest
// that the tests cover, MoonFRP's installer's default, and the newest that
// the Go module proxy serves. MOONFRP_BULK_FRP_VERSIONS (comma-separated)
// narrows them for a local run.
var FRPVersions = []string{"v0.61.0", FRPDefault, "v0.71.0"}

// FRPDefault is the frp that MoonFRP's install.sh installs, and the one
// the demo, the benchmark and single-version tests run.
const FRPDefault = "v0.65.0"

// TestedFRPVersions returns FRPVersions, or the ones that
// MOONFRP_BULK_FRP_VERSIONS names.
func TestedFRPVersions() []string {
	env := os.Getenv("MOONFRP_BULK_FRP_VERSIONS")
	if env == "" {
		return FRPVersions
	}
	var vs []string
	for _, v := range strings.Split(env, ",") {
		if v = strings.TrimSpace(v); v != "" {
			vs = append(vs, v)
		}
	}
	return vs
}

// CacheDir holds what the tests build once and keep: the real frp
// binaries. MOONFRP_BULK_CACHE overrides it.
func CacheDir() string {
	if d := os.Getenv("MOONFRP_BULK_CACHE"); d != "" {
		return d
	}
	return "/var/cache/moonfrp-bulk"
}

// FRP returns a directory holding the real frpc and frps of FRPDefault.
func FRP(ctx context.Context) (string, error) { return FRPOf(ctx, FRPDefault) }

// FRPOf returns a directory holding the real frpc and frps of version,
// building them from its module in tests/frpbuild (go.mod and go.sum pin
// every input) the first time. The directory is readable by every user,
// so that sandbox units can run them. Concurrent callers wait for one
// build. Newer frp modules carry no built dashboard, so every version is
// built with -tags noweb (older ones have no such tag, and ignore it);
// the admin API and the dashboard's API still work.
func FRPOf(ctx context.Context, version string) (string, error) {
	dir := filepath.Join(CacheDir(), "frp-"+version)
	if haveFRP(dir) {
		return dir, nil
	}
	_, self, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(self), "..", "frpbuild", version)
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err != nil {
		return "", fmt.Errorf("frp %s is not pinned in tests/frpbuild: %w", version, err)
	}
	if err := os.MkdirAll(CacheDir(), 0o755); err != nil {
		return "", fmt.Errorf("frp cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(CacheDir(), ".frp-build.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("frp cache lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("frp cache lock: %w", err)
	}
	if haveFRP(dir) {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(CacheDir(), ".frp-build-")
	if err != nil {
		return "", fmt.Errorf("frp build dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, bin := range []string{"frpc", "frps"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", "noweb", "-trimpath", "-ldflags", "-s -w",
			"-o", filepath.Join(tmp, bin), "github.com/fatedier/frp/cmd/"+bin)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s %s from the Go module proxy: %w: %s", bin, version, err, out)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("frp cache: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("frp cache: %w", err)
	}
	return dir, nil
}

func haveFRP(dir string) bool {
	for _, bin := range []string{"frpc", "frps"} {
		st, err := os.Stat(filepath.Join(dir, bin))
		if err != nil || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// FreePorts returns n TCP ports that were free a moment ago on every
// address, all different. Other processes share this machine, so tests
// never use fixed ports. They are picked outside the kernel's ephemeral
// range (ip_local_port_range), below it where there is room, where no
// outgoing connection takes a local port by itself: a port from that
// range, free when picked, could be an frpc's or a dashboard client's
// local end by the time frps binds a remote port on it ("port
// unavailable").
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	lo, hi := 10000, 65536
	if low, high := ephemeralRange(); low-lo >= 10*n {
		hi = low
	} else if 65535-high >= 10*n {
		lo = high + 1
	} // else (1024-65535): no room outside it, any port
	ports := make([]int, 0, n)
	seen := map[int]bool{}
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n+1000 {
			return nil, fmt.Errorf("free port: found %d of %d in %d-%d", len(ports), n, lo, hi-1)
		}
		p := lo + rand.IntN(hi-lo)
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue // taken
		}
		ls = append(ls, l)
		ports = append(ports, p)
	}
	return ports, nil
}

// ephemeralRange is the kernel's ephemeral port range (32768-60999 when
// it cannot be read).
func ephemeralRange() (int, int) {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768, 60999
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 32768, 60999
	}
	low, err1 := strconv.Atoi(f[0])
	high, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || low < 1 || high < low || high > 65535 {
		return 32768, 60999
	}
	return low, high
}

// WaitAccepts waits until something accepts on 127.0.0.1:port.
func WaitAccepts(ctx context.Context, port int) error {
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
			// A port opening sends no event that a test could wait on.
		}
	}
}
