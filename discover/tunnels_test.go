package discover

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/moonfrp/moonfrp-bulk/frp"
)

// Tunnels records the units it needs not ask while its looks at running
// tunnels record theirs: every unit gets its answer, and with -race no
// write goes unguarded.
func TestTunnelsAnswersEveryUnit(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "frpc.toml")
	// An admin API nobody listens on: each look ends at once, not online.
	if err := os.WriteFile(cfg, []byte("serverAddr = \"127.0.0.1\"\nserverPort = 7000\nwebServer.addr = \"127.0.0.1\"\nwebServer.port = 1\n\n[[proxies]]\nname = \"p\"\ntype = \"tcp\"\nlocalPort = 22\nremotePort = 6000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var units []Unit
	facts := map[string]Facts{}
	for i := 0; i < 40; i++ {
		name := fmt.Sprintf("moonfrp-client-%d.service", i)
		units = append(units, Unit{Name: name, Active: "active", Sub: "running"})
		if i%2 == 0 {
			facts[name] = Facts{FRPBinary: "frpc", FRPConfig: cfg, MainPID: os.Getpid()}
		}
	}
	out := Tunnels(context.Background(), units, facts, frp.NewAPI())
	for i, u := range units {
		got, ok := out[u.Name]
		switch {
		case !ok:
			t.Errorf("%s has no answer", u.Name)
		case i%2 == 1 && got.State != frp.NotFRP:
			t.Errorf("%s runs no frp, and is %v", u.Name, got.State)
		case i%2 == 0 && (got.State == frp.NotFRP || got.State == frp.Online):
			t.Errorf("%s, whose admin API nobody serves, is %v (%s)", u.Name, got.State, got.Why)
		}
	}
}
