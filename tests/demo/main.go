// Command demo shows moonfrp-bulk at work: it starts a sandboxed systemd
// user manager with demo tunnels (three broken), runs a real bulk start
// and restart through the binary, and tears everything down. The tunnels
// are real frp (built once from the Go module proxy) when it can be
// built, else stand-ins, and it says which. Run it as root through
// `make demo`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

func main() {
	bin := flag.String("bin", "bin/moonfrp-bulk", "moonfrp-bulk binary to demonstrate")
	clients := flag.Int("clients", 48, "number of client tunnels (plus one server and one visitor)")
	flag.Parse()
	if err := run(*bin, *clients); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		if errors.Is(err, sandbox.ErrUnavailable) {
			fmt.Fprintln(os.Stderr, "demo: run it as root on a machine with systemd installed: sudo make demo")
		}
		os.Exit(1)
	}
}

func run(bin string, clients int) error {
	ctx := context.Background()
	fmt.Println("==> starting a sandboxed systemd user manager")
	sb, err := sandbox.Start(ctx)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("==> tearing the sandbox down")
		sb.Stop()
	}()
	dataDir := filepath.Join(sb.RuntimeDir, "moonfrp-data")
	fmt.Println("==> building the real frp (once; cached in " + sandbox.CacheDir() + ")")
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	specs, broken, err := realTunnels(bctx, sb, clients)
	cancel()
	if err != nil {
		fmt.Printf("==> real frp unavailable (%v); using stand-in tunnels that crash like frpc does\n", err)
		specs, broken = sandbox.Fleet(clients, 500*time.Millisecond), "moonfrp-client-7, -19 and -33 are broken"
		if err := sb.Install(ctx, specs...); err != nil {
			return err
		}
		if err := sandbox.WriteIndex(dataDir, sandbox.FleetIndex(clients)); err != nil {
			return err
		}
	} else if err := sandbox.WriteIndex(dataDir, sandbox.FleetIndexIn(clients, filepath.Join(sb.StateDir, "frp"))); err != nil {
		return err
	}
	// The sandbox user runs the binary; give it its own copy.
	own := filepath.Join(sb.BinDir(), "moonfrp-bulk")
	if err := copyFile(bin, own); err != nil {
		return fmt.Errorf("copy binary: %w (build it with make build)", err)
	}
	fmt.Printf("==> %d tunnels installed (%s)\n", len(specs), broken)

	steps := [][]string{
		{"--user", "start", "--filter=tag:env:prod", "--dry-run"},
		{"--user", "start", "--tunnel-deadline=5s"},
		{"--user", "restart", "--tunnel-deadline=5s"},
		{"--user", "list", "--filter=tunnel:down"},
		// The job log: again, exactly what failed, one at a time, with a
		// brake at the first failure.
		{"--user", "restart", "--filter=last:failed", "-j", "1", "--max-fail=1", "--tunnel-deadline=5s"},
	}
	for _, args := range steps {
		fmt.Printf("\n$ moonfrp-bulk %s\n", strings.Join(args, " "))
		cmd := sb.Command(ctx, own, args...)
		cmd.Env = append(cmd.Env, "MOONFRP_DATA_DIR="+dataDir, "TERM="+os.Getenv("TERM"))
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			fmt.Printf("(exit code %d)\n", ee.ExitCode())
		case err != nil:
			return fmt.Errorf("run moonfrp-bulk: %w", err)
		default:
			fmt.Println("(exit code 0)")
		}
	}
	return nil
}

// realTunnels installs one real frps and clients real frpc tunnels; three
// are broken the ways real tunnels break.
func realTunnels(ctx context.Context, sb *sandbox.Sandbox, clients int) ([]sandbox.Spec, string, error) {
	sc, err := sandbox.NewFRPScene(ctx, sb, clients, "")
	if err != nil {
		return nil, "", err
	}
	if err := sc.Server(""); err != nil {
		return nil, "", err
	}
	dead, err := sc.Port()
	if err != nil {
		return nil, "", err
	}
	var clash int
	for i := 1; i <= clients; i++ {
		var o sandbox.ClientOpts
		switch i {
		case 7:
			o.Token = "wrong-token"
		case 18:
			if clash, err = sc.Port(); err != nil {
				return nil, "", err
			}
			o.RemotePort = clash
		case 19:
			o.RemotePort = clash
		case 33:
			o.ServerPort = dead
		}
		if err := sc.Client(fmt.Sprint(i), o); err != nil {
			return nil, "", err
		}
	}
	if err := sc.Install(ctx); err != nil {
		return nil, "", err
	}
	return sc.Specs, "real frp " + sc.Version + ": moonfrp-client-7 has a wrong token, -18 and -19 ask for the same remote port, -33 dials a closed port", nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
