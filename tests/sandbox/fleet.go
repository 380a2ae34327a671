package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Fleet is the demo's set of tunnels: one server, clients and a visitor,
// three of them broken in the ways real tunnels break.
func Fleet(clients int, stop time.Duration) []Spec {
	specs := []Spec{{Name: "moonfrp-server", Behaviour: Up, StopDelay: stop, Config: "/etc/frp/frps.toml"}}
	for i := 1; i <= clients; i++ {
		sp := Spec{Name: fmt.Sprintf("moonfrp-client-%d", i), Behaviour: Up, StopDelay: stop,
			Config: fmt.Sprintf("/etc/frp/frpc-%d.toml", i)}
		switch i {
		case 7:
			sp.Behaviour, sp.Message = Crash, "login to the server failed: authorization failed"
		case 19:
			sp.Behaviour = FailPre
		case 33:
			sp.Behaviour, sp.Message = Crash, "parse config file error: proxy [web] local_port is invalid"
		}
		specs = append(specs, sp)
	}
	specs = append(specs, Spec{Name: "moonfrp-visitor-1", Behaviour: Up, StopDelay: stop, Config: "/etc/frp/moonfrp-visitor-1.toml"})
	return specs
}

// IndexEntry is one config's metadata, as MoonFRP's moonfrp-index.sh
// writes it.
type IndexEntry struct {
	Path         string            `json:"path"`
	Type         string            `json:"type"`
	ServerAddr   string            `json:"server_addr"`
	ServerPort   int               `json:"server_port"`
	ProxyCount   int               `json:"proxy_count"`
	Tags         map[string]string `json:"tags"`
	LastModified int64             `json:"last_modified"`
	LastIndexed  int64             `json:"last_indexed"`
}

// WriteIndex writes MoonFRP config index files into dataDir/config-index,
// named by the first 16 hex digits of sha256(config path).
func WriteIndex(dataDir string, entries []IndexEntry) error {
	dir := filepath.Join(dataDir, "config-index")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("index dir: %w", err)
	}
	for _, e := range entries {
		sum := sha256.Sum256([]byte(e.Path))
		data, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("index entry: %w", err)
		}
		name := hex.EncodeToString(sum[:])[:16] + ".json"
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("index entry: %w", err)
		}
	}
	return nil
}

// FleetIndex tags the demo fleet: odd clients env:prod, even env:staging,
// every fifth region:eu. Client i's config is /etc/frp/frpc-i.toml.
func FleetIndex(clients int) []IndexEntry { return FleetIndexIn(clients, "/etc/frp") }

// FleetIndexIn is FleetIndex with the configs in dir.
func FleetIndexIn(clients int, dir string) []IndexEntry {
	now := time.Now().Unix()
	var entries []IndexEntry
	for i := 1; i <= clients; i++ {
		tags := map[string]string{"env": "staging"}
		if i%2 == 1 {
			tags["env"] = "prod"
		}
		if i%5 == 0 {
			tags["region"] = "eu"
		}
		entries = append(entries, IndexEntry{Path: filepath.Join(dir, fmt.Sprintf("frpc-%d.toml", i)), Type: "client",
			ServerAddr: "192.0.2.10", ServerPort: 7000, ProxyCount: 2, Tags: tags, LastModified: now, LastIndexed: now})
	}
	return entries
}
