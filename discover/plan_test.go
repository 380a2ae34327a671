package discover

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestNewPlan(t *testing.T) {
	units := []Unit{{Name: "moonfrp-client-1.service"}, {Name: "edge-frps.service"}, {Name: "moonfrp-server.service"}, {Name: "moonfrp-visitor-1.service"}}
	facts := map[string]Facts{
		"edge-frps.service":      {FRPBinary: "frps", FRPConfig: "/etc/frp/edge.toml"},
		"moonfrp-server.service": {FRPBinary: "frpc", FRPConfig: "/etc/frp/odd.toml"}, // named server: a server
	}
	type phase struct {
		name  string
		units []string
	}
	cases := []struct {
		op   string
		want []phase
	}{
		{"start", []phase{{"server, first", []string{"edge-frps.service", "moonfrp-server.service"}},
			{"clients and visitors, after the server", []string{"moonfrp-client-1.service", "moonfrp-visitor-1.service"}}}},
		{"restart", []phase{{"server, first", []string{"edge-frps.service", "moonfrp-server.service"}},
			{"clients and visitors, after the server", []string{"moonfrp-client-1.service", "moonfrp-visitor-1.service"}}}},
		{"stop", []phase{{"clients and visitors, before the server", []string{"moonfrp-client-1.service", "moonfrp-visitor-1.service"}},
			{"server, last", []string{"edge-frps.service", "moonfrp-server.service"}}}},
		{"reload", []phase{{"all units", []string{"moonfrp-client-1.service", "edge-frps.service", "moonfrp-server.service", "moonfrp-visitor-1.service"}}}},
	}
	for _, c := range cases {
		t.Run(c.op, func(t *testing.T) {
			p := NewPlan(c.op, units, facts)
			var got []phase
			for i, ph := range p.Phases {
				if ph.Number != i+1 {
					t.Errorf("phase %d numbered %d", i+1, ph.Number)
				}
				got = append(got, phase{ph.Name, ph.Units})
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v\nwant %v", got, c.want)
			}
		})
	}
	// Without facts, the name decides; an empty server phase is dropped.
	if p := NewPlan("stop", []Unit{{Name: "moonfrp-server.service"}, {Name: "moonfrp-client-1.service"}}, nil); len(p.Phases) != 2 || p.Phases[1].Units[0] != "moonfrp-server.service" {
		t.Errorf("by name: %+v", p.Phases)
	}
	if p := NewPlan("stop", []Unit{{Name: "moonfrp-client-1.service"}}, nil); len(p.Phases) != 1 || p.Phases[0].Name != "all units" {
		t.Errorf("one phase: %+v", p.Phases)
	}
}

func TestSelect(t *testing.T) {
	unitDir := t.TempDir()
	os.WriteFile(filepath.Join(unitDir, "moonfrp-client-1.service"), []byte("[Service]\n"), 0o644)
	os.Symlink(filepath.Join(unitDir, "moonfrp-client-1.service"), filepath.Join(unitDir, "moonfrp-client-alias.service"))
	f := &fakeSystemctl{
		listUnits: "moonfrp-client-1.service loaded active running x\nmoonfrp-client-2.service loaded failed failed x\n" +
			"moonfrp-client-3.service loaded activating auto-restart x\nmoonfrp-server.service loaded active running x\n",
		unitPath: unitDir,
		show:     func(units []string) string { return "" },
	}
	cases := []struct {
		name      string
		args      []string
		filters   []string
		want      []string
		err       error
		warning   string
		discovers bool
	}{
		{"everything", nil, nil, []string{"moonfrp-client-1.service", "moonfrp-client-2.service", "moonfrp-client-3.service", "moonfrp-server.service"}, nil, "", true},
		{"named, in the order given, once", []string{"moonfrp-server", "moonfrp-client-1", "moonfrp-server.service"}, nil,
			[]string{"moonfrp-server.service", "moonfrp-client-1.service"}, nil, "", false},
		{"a unit systemd does not list is kept", []string{"moonfrp-client-9"}, nil, []string{"moonfrp-client-9.service"}, nil, "", false},
		{"an alias is its unit, once", []string{"moonfrp-client-1", "moonfrp-client-alias"}, nil, []string{"moonfrp-client-1.service"}, nil,
			"moonfrp-client-alias is an alias of moonfrp-client-1", false},
		{"an alias alone is its unit", []string{"moonfrp-client-alias"}, nil, []string{"moonfrp-client-1.service"}, nil, "", false},
		{"glob", []string{"moonfrp-client-*"}, nil, []string{"moonfrp-client-1.service", "moonfrp-client-2.service", "moonfrp-client-3.service"}, nil, "", true},
		{"glob matching nothing", []string{"nope-*"}, nil, nil, nil, `"nope-*" matches no MoonFRP service`, true},
		{"filter", nil, []string{"status:failed"}, []string{"moonfrp-client-2.service"}, nil, "", true},
		{"status:down", nil, []string{"status:down"}, []string{"moonfrp-client-2.service", "moonfrp-client-3.service"}, nil, "", true},
		{"filter matching nothing", nil, []string{"type:visitor"}, nil, nil, `filter "type:visitor" matches no service`, true},
		{"bad filter", nil, []string{"colour:blue"}, nil, ErrUsage, "", false},
		{"bad name", []string{"a;b"}, nil, nil, ErrUsage, "", false},
		{"tag without an index", nil, []string{"tag:env"}, nil, ErrUsage, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.calls = nil
			sel, err := Select(context.Background(), f, c.args, c.filters, Options{DataDir: t.TempDir()})
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if err != nil {
				return
			}
			var got []string
			for _, u := range sel.Units {
				got = append(got, u.Name)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("units %v, want %v", got, c.want)
			}
			if c.warning != "" && !strings.Contains(strings.Join(sel.Warnings, "\n"), c.warning) {
				t.Errorf("warnings %q, want %q", sel.Warnings, c.warning)
			}
			discovered := false
			for _, call := range f.calls {
				discovered = discovered || call[0] == "list-units"
			}
			if discovered != c.discovers {
				t.Errorf("discovery ran: %v, want %v (%v)", discovered, c.discovers, f.calls)
			}
		})
	}
}

// On restart, the clients that log in to a server of the same plan, on
// this host, are held; a client of a remote server or another port, and
// a unit that does not run frp, are not.
func TestPlanHoldsTheClientsOfARestartedServer(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	facts := map[string]Facts{
		"moonfrp-server.service":   {FRPBinary: "frps", FRPConfig: write("frps.toml", "bindAddr = \"0.0.0.0\"\nbindPort = 7000\n")},
		"moonfrp-client-1.service": {FRPBinary: "frpc", FRPConfig: write("c1.toml", "serverAddr = \"127.0.0.1\"\nserverPort = 7000\n[[proxies]]\nname = \"a\"\n")},
		"moonfrp-client-2.service": {FRPBinary: "frpc", FRPConfig: write("c2.toml", "serverAddr = \"frp.example.com\"\nserverPort = 7000\n[[proxies]]\nname = \"a\"\n")},
		"moonfrp-client-3.service": {FRPBinary: "frpc", FRPConfig: write("c3.toml", "serverAddr = \"localhost\"\nserverPort = 7001\n[[proxies]]\nname = \"a\"\n")},
		"moonfrp-client-4.service": {},
	}
	var units []Unit
	for _, n := range []string{"moonfrp-server.service", "moonfrp-client-1.service", "moonfrp-client-2.service", "moonfrp-client-3.service", "moonfrp-client-4.service"} {
		units = append(units, Unit{Name: n})
	}
	p := NewPlan("restart", units, facts)
	if len(p.Phases) != 3 || !p.Phases[1].Held || strings.Join(p.Phases[1].Units, " ") != "moonfrp-client-1.service" ||
		len(p.Phases[2].Units) != 3 || p.Phases[2].Held {
		t.Errorf("phases %+v", p.Phases)
	}
	if p := NewPlan("start", units, facts); len(p.Phases) != 2 || p.Phases[1].Held {
		t.Errorf("start holds no client: %+v", p.Phases)
	}
}
