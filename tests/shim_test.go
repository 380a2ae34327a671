package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// copyInto copies files into dir, readable by the sandbox user.
func copyInto(t *testing.T, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestShim runs tests/bash/shim.bats, as the sandbox user, against a real
// systemd user manager with a server and five clients, three tagged
// env:prod in a MoonFRP config index.
func TestShim(t *testing.T) {
	if _, err := exec.LookPath("bats"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bats is not installed (make deps installs it)")
		}
		t.Skip("bats is not installed")
	}
	specs := append([]sandbox.Spec{{Name: "moonfrp-server", Behaviour: sandbox.Up, StopDelay: 100 * time.Millisecond, Config: "/etc/frp/frps.toml"}},
		sandbox.SlowStop("moonfrp-client", 5, 100*time.Millisecond)...)
	for i := range specs[1:] {
		specs[i+1].Config = filepath.Join("/etc/frp", "frpc-"+string(rune('1'+i))+".toml")
	}
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	dataDir := filepath.Join(sb.RuntimeDir, "data")
	if err := sandbox.WriteIndex(dataDir, sandbox.FleetIndex(5)); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(sb.RuntimeDir, "shim")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	copyInto(t, work, "../bash/moonfrp-bulk.sh", "bash/moonfrp-services.sh", "bash/shim.bats", binary)

	args := []string{"--print-output-on-failure"}
	if f := os.Getenv("BATS_FILTER"); f != "" {
		args = append(args, "--filter", f) // to run one scenario while working on it
	}
	cmd := sb.Command(context.Background(), "bats", append(args, filepath.Join(work, "shim.bats"))...)
	cmd.Env = append(cmd.Env,
		"SHIM="+filepath.Join(work, "moonfrp-bulk.sh"),
		"SERVICES_SH="+filepath.Join(work, "moonfrp-services.sh"),
		"MOONFRP_BULK_BIN="+filepath.Join(work, "moonfrp-bulk"),
		"MOONFRP_BULK_ARGS=--user",
		"MOONFRP_DATA_DIR="+dataDir,
		"TMPDIR="+sb.RuntimeDir,
	)
	out, err := cmd.CombinedOutput()
	t.Logf("bats:\n%s", out)
	if err != nil {
		t.Fatalf("bats failed: %v", err)
	}
}
