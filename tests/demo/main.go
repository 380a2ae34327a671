// Command demo shows moonfrp-bulk at work: it starts a sandboxed systemd
// user manager with 50 demo tunnels (three broken), runs a real bulk
// restart through the binary, and tears everything down. Run it as root
// through `make demo`.
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
	specs := sandbox.Fleet(clients, 500*time.Millisecond)
	if err := sb.Install(ctx, specs...); err != nil {
		return err
	}
	dataDir := filepath.Join(sb.RuntimeDir, "moonfrp-data")
	if err := sandbox.WriteIndex(dataDir, sandbox.FleetIndex(clients)); err != nil {
		return err
	}
	// The sandbox user runs the binary; give it its own copy.
	own := filepath.Join(sb.BinDir(), "moonfrp-bulk")
	if err := copyFile(bin, own); err != nil {
		return fmt.Errorf("copy binary: %w (build it with make build)", err)
	}
	fmt.Printf("==> %d tunnels installed (moonfrp-client-7, -19 and -33 are broken); starting them\n", len(specs))
	names := sandbox.Names(specs)
	_, _ = sb.Systemctl(ctx, append([]string{"start", "--no-block"}, names...)...)

	steps := [][]string{
		{"--user", "restart", "--filter=tag:env:prod", "--dry-run"},
		{"--user", "restart", "--timeout=10s"},
		{"--user", "list", "--filter=status:auto-restart"},
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
