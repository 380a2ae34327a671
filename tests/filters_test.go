package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/report"
	"github.com/moonfrp/moonfrp-bulk/tests/sandbox"
)

// filterFleet: a server, six clients, a visitor, and a client whose name
// does not follow the config's name (it runs frpc-32.toml).
func filterFleet(t *testing.T) (*sandbox.Sandbox, string, []sandbox.Spec) {
	t.Helper()
	fast := 50 * time.Millisecond
	specs := []sandbox.Spec{
		{Name: "moonfrp-server", Behaviour: sandbox.Up, StopDelay: fast, Config: "/etc/frp/frps.toml"},
		{Name: "moonfrp-client-1", Behaviour: sandbox.Up, StopDelay: fast, Config: "/etc/frp/frpc-1.toml"},
		{Name: "moonfrp-client-2", Behaviour: sandbox.Up, StopDelay: fast, Config: "/etc/frp/frpc-2.toml"},
		{Name: "moonfrp-client-eu-3", Behaviour: sandbox.Up, StopDelay: fast, Config: "/etc/frp/frpc-eu-3.toml"},
		{Name: "moonfrp-client-eu-4", Behaviour: sandbox.Crash, Config: "/etc/frp/frpc-eu-4.toml"},
		{Name: "moonfrp-client-legacy", Behaviour: sandbox.Up, StopDelay: fast, Config: "/etc/frp/frpc-32.toml"},
		{Name: "moonfrp-frpc-32", Behaviour: sandbox.Up, StopDelay: fast, Config: "/etc/frp/other.toml"},
		{Name: "moonfrp-visitor-1", Behaviour: sandbox.Up, StopDelay: fast, Config: "/etc/frp/visitor-1.toml"},
	}
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	_, _ = sb.Systemctl(context.Background(), "stop", "moonfrp-client-2")

	dataDir := filepath.Join(sb.RuntimeDir, "data")
	now := time.Now().Unix()
	entry := func(path string, tags map[string]string) sandbox.IndexEntry {
		return sandbox.IndexEntry{Path: path, Type: "client", ServerAddr: "192.0.2.1", ServerPort: 7000, ProxyCount: 1, Tags: tags, LastModified: now, LastIndexed: now}
	}
	if err := sandbox.WriteIndex(dataDir, []sandbox.IndexEntry{
		entry("/etc/frp/frpc-1.toml", map[string]string{"env": "prod", "url": "http://a:8080"}),
		entry("/etc/frp/frpc-2.toml", map[string]string{"env": "prod"}),
		entry("/etc/frp/frpc-eu-3.toml", map[string]string{"env": "staging", "region": "eu"}),
		entry("/etc/frp/frpc-eu-4.toml", map[string]string{"env": "prod", "region": "eu"}),
		entry("/etc/frp/frpc-32.toml", map[string]string{"env": "prod", "owner": "legacy"}),
	}); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dataDir, "config-index", "0123456789abcdef.json")
	if err := os.WriteFile(corrupt, []byte(`{"path": "/etc/frp/broken.toml", "tags": {`), 0o644); err != nil {
		t.Fatal(err)
	}
	return sb, dataDir, specs
}

func TestFilters(t *testing.T) {
	sb, dataDir, _ := filterFleet(t)
	env := []string{"MOONFRP_DATA_DIR=" + dataDir}
	tests := []struct {
		name    string
		args    []string
		want    []string
		warning string
	}{
		{"tag with value", []string{"--filter=tag:env:prod"}, []string{"moonfrp-client-1", "moonfrp-client-2", "moonfrp-client-eu-4", "moonfrp-client-legacy"}, ""},
		{"tag key only", []string{"--filter=tag:region"}, []string{"moonfrp-client-eu-3", "moonfrp-client-eu-4"}, ""},
		{"tag value with a colon", []string{"--filter=tag:url:http://a:8080"}, []string{"moonfrp-client-1"}, ""},
		{"config run by a unit outside the convention", []string{"--filter=tag:owner:legacy"}, []string{"moonfrp-client-legacy"}, ""},
		{"status", []string{"--filter=status:inactive"}, []string{"moonfrp-client-2"}, ""},
		{"sub-state", []string{"--filter=status:auto-restart"}, []string{"moonfrp-client-eu-4"}, ""},
		{"glob", []string{"--filter=name:*-eu-*"}, []string{"moonfrp-client-eu-3", "moonfrp-client-eu-4"}, ""},
		{"substring", []string{"--filter=name:legacy"}, []string{"moonfrp-client-legacy"}, ""},
		{"type", []string{"--filter=type:visitor"}, []string{"moonfrp-visitor-1"}, ""},
		{"combined filters AND", []string{"--filter=tag:env:prod", "--filter=status:active"}, []string{"moonfrp-client-1", "moonfrp-client-legacy"}, ""},
		{"no match warns", []string{"--filter=tag:env:dev"}, nil, `filter "tag:env:dev" matches no service`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bulk(t, sb, env, append([]string{"list", "--names"}, tt.args...)...)
			wantCode(t, r, 0)
			got := strings.Fields(r.stdout)
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("selected %v, want %v", got, tt.want)
			}
			if tt.warning != "" {
				wantContains(t, "stderr", r.stderr, tt.warning)
			}
			if strings.Contains(strings.Join(tt.args, " "), "tag:") {
				wantContains(t, "stderr", r.stderr, "skipping corrupt config index file")
			}
		})
	}

	t.Run("units narrowed by a filter", func(t *testing.T) {
		r := bulk(t, sb, env, "restart", "--filter=tag:env:prod", "--settle=0", "moonfrp-client-1", "moonfrp-client-eu-3", "moonfrp-server")
		wantCode(t, r, 0)
		wantContains(t, "summary", r.stderr, "Bulk restart complete: 1 succeeded, 0 failed")
	})
}

func TestBadInputIsAClearErrorAndChangesNothing(t *testing.T) {
	sb, dataDir, specs := filterFleet(t)
	before := invocations(t, sb, specs)
	tests := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"restart", "--filter=foo:bar"}, nil, `invalid filter "foo:bar": unknown filter type "foo"; valid forms: tag:KEY, tag:KEY:VALUE, status:STATE, name:PATTERN, type:server|client|visitor`},
		{[]string{"restart", "--filter=tag:"}, nil, `invalid filter "tag:": empty tag key`},
		{[]string{"restart", "--filter=status:sleeping"}, nil, `unknown state "sleeping"`},
		{[]string{"restart", "-j", "ten"}, nil, `--max-parallel: must be a whole number from 1 to 1000, got "ten"`},
		{[]string{"restart", "-j", "0"}, nil, `--max-parallel: must be a whole number from 1 to 1000, got "0"`},
		{[]string{"restart"}, []string{"MOONFRP_MAX_PARALLEL=-3"}, `got "-3"`},
		{[]string{"restart", "moonfrp-client-1;reboot"}, nil, `invalid unit name "moonfrp-client-1;reboot"`},
		{[]string{"restart", "$(touch /tmp/pwned)"}, nil, `invalid unit name`},
		{[]string{"restart", "--filter=tag:env"}, []string{"MOONFRP_DATA_DIR=/nonexistent"}, "tag filter: config index not found at /nonexistent/config-index"},
		{[]string{"frobnicate"}, nil, `unexpected argument frobnicate`},
		{[]string{"restart", "--settle=-1s"}, nil, "must not be negative"},
	}
	for _, tt := range tests {
		r := bulk(t, sb, append([]string{"MOONFRP_DATA_DIR=" + dataDir}, tt.env...), tt.args...)
		if r.code != 2 {
			t.Errorf("%v: exit %d, want 2", tt.args, r.code)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "moonfrp-bulk: ") || !strings.Contains(lines[0], tt.want) {
			t.Errorf("%v: stderr %q, want one line with %q", tt.args, r.stderr, tt.want)
		}
		if strings.Contains(r.stderr, "goroutine") || r.stdout != "" {
			t.Errorf("%v: unexpected output: %q %q", tt.args, r.stdout, r.stderr)
		}
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Error("a unit name was run by a shell")
	}
	if after := invocations(t, sb, specs); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("bad input changed units:\n%v\n%v", before, after)
	}
}

// invocations returns each unit's state, NRestarts and InvocationID: any
// start or restart changes it.
func invocations(t *testing.T, sb *sandbox.Sandbox, specs []sandbox.Spec) []string {
	t.Helper()
	args := []string{"show", "-p", "Id,ActiveState,SubState,NRestarts,InvocationID", "--"}
	for _, sp := range specs {
		if sp.Behaviour == sandbox.Crash {
			continue // its own crash loop changes these
		}
		args = append(args, sp.Name)
	}
	out, err := sb.Systemctl(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(out, "\n\n")
}

func TestDryRunShowsThePlanAndChangesNothing(t *testing.T) {
	sb, dataDir, specs := filterFleet(t)
	env := []string{"MOONFRP_DATA_DIR=" + dataDir}
	before := invocations(t, sb, specs)

	r := bulk(t, sb, env, "stop", "--dry-run", "--filter=tag:env:prod", "-j", "7", "--timeout=30s")
	wantCode(t, r, 0)
	want := "Dry run: would stop 4 service(s) on the user manager, up to 7 at a time\n" +
		"Filters: tag:env:prod\n" +
		"Timeout: 30s per unit; verification: on (frp tunnels proven within 10s; other units settle 1s)\n" +
		"Phase 1 of 1 (all units, 4 unit(s), in parallel):\n" +
		"  moonfrp-client-1\n  moonfrp-client-2\n  moonfrp-client-eu-4\n  moonfrp-client-legacy\n"
	if r.stdout != want {
		t.Errorf("dry-run output\n%s\nwant\n%s", r.stdout, want)
	}

	r = bulk(t, sb, env, "stop", "--dry-run", "-o", "json")
	wantCode(t, r, 0)
	evs := parseEvents(t, r.stdout)
	if len(evs) != 1 || evs[0]["event"] != "plan" {
		t.Fatalf("JSON dry run: %v", evs)
	}
	phases := evs[0]["phases"].([]any)
	if len(phases) != 2 || phases[1].([]any)[0] != "moonfrp-server.service" {
		t.Errorf("stop plan must put the server last: %v", phases)
	}

	if after := invocations(t, sb, specs); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("dry run changed units:\nbefore %v\nafter  %v", before, after)
	}
}

func TestJSONLines(t *testing.T) {
	sb, dataDir, _ := filterFleet(t)
	r := bulk(t, sb, []string{"MOONFRP_DATA_DIR=" + dataDir, "MOONFRP_LOG_FORMAT=json"}, "restart", "--filter=name:moonfrp-client-eu")
	wantCode(t, r, 1)
	evs := parseEvents(t, r.stdout)
	if len(evs) != 4 {
		t.Fatalf("%d events, want start, 2 results, summary:\n%s", len(evs), r.stdout)
	}
	for _, ev := range evs {
		if ev["schema_version"] != float64(report.SchemaVersion) {
			t.Errorf("schema_version: %v", ev)
		}
		if ts, _ := ev["time"].(string); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`).MatchString(ts) {
			t.Errorf("time %q is not RFC 3339 UTC", ts)
		}
	}
	start, summary := evs[0], evs[3]
	if start["event"] != "start" || start["operation"] != "restart" || start["units"] != float64(2) || start["max_parallel"] != float64(10) {
		t.Errorf("start event %v", start)
	}
	if summary["event"] != "summary" || summary["succeeded"] != float64(1) || summary["failed"] != float64(1) || summary["not_started"] != float64(0) {
		t.Errorf("summary event %v", summary)
	}
	var bad map[string]any
	for _, ev := range evs[1:3] {
		if ev["unit"] == "moonfrp-client-eu-4.service" {
			bad = ev
		}
	}
	if bad == nil || bad["ok"] != false || bad["result"] != "exit-code" || !strings.HasPrefix(bad["state"].(string), "activating/") {
		t.Fatalf("failed unit's event %v", bad)
	}
	tail, _ := json.Marshal(bad["log_tail"])
	if !strings.Contains(string(tail), "login to the server failed") || strings.Contains(string(tail), `\u001b`) {
		t.Errorf("log_tail %s: want the log line, without colour codes", tail)
	}
	if _, ok := bad["duration_ms"].(float64); !ok {
		t.Errorf("duration_ms missing: %v", bad)
	}

	r = bulk(t, sb, []string{"MOONFRP_DATA_DIR=" + dataDir}, "list", "-o", "json", "--filter=name:legacy")
	evs = parseEvents(t, r.stdout)
	if len(evs) != 1 || evs[0]["unit"] != "moonfrp-client-legacy.service" || evs[0]["name"] != "moonfrp-client-legacy" ||
		evs[0]["type"] != "client" || evs[0]["active"] != "active" || evs[0]["tags"].(map[string]any)["owner"] != "legacy" {
		t.Errorf("list -o json: %v", evs)
	}
}

// readmeRecipes returns the sh blocks of the README's recipes section.
func readmeRecipes(t *testing.T) []string {
	t.Helper()
	s := readme(t)
	i := strings.Index(s, "### Recipes for scripts")
	if i < 0 {
		t.Fatal("README has no recipes section")
	}
	s = s[i:]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	var recipes []string
	for _, block := range shBlocks(s) {
		recipes = append(recipes, strings.TrimSpace(block))
	}
	return recipes
}

func TestReadmeRecipesWithJq(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatal("jq is not installed (make deps installs it)")
	}
	recipes := readmeRecipes(t)
	if len(recipes) != 3 {
		t.Fatalf("%d recipes in the README, want 3: %q", len(recipes), recipes)
	}
	specs := failingFleet(12, map[int]sandbox.Behaviour{3: sandbox.Crash, 9: sandbox.FailPre})
	sb := newSandbox(t, specs...)
	startAll(t, sb, specs)
	binDir := filepath.Dir(binary)
	run := func(recipe string) string {
		cmd := sb.Command(context.Background(), "bash", "-c", recipe)
		cmd.Env = append(cmd.Env, "PATH="+binDir+":"+os.Getenv("PATH"), "MOONFRP_BULK_USER=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("recipe %q: %v\n%s", recipe, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// Results stream in completion order.
	failed := strings.Split(run(recipes[0]), "\n")
	sort.Strings(failed)
	if strings.Join(failed, " ") != "moonfrp-client-3.service moonfrp-client-9.service" {
		t.Errorf("failed units recipe printed %q", failed)
	}
	lines := strings.Split(run(recipes[1]), "\n")
	if len(lines) != 5 {
		t.Errorf("slowest-five recipe printed %d lines: %q", len(lines), lines)
	}
	for _, l := range lines {
		if !regexp.MustCompile(`^\d+ms moonfrp-client-\d+\.service$`).MatchString(l) {
			t.Errorf("slowest-five line %q", l)
		}
	}
	var counts map[string]int
	if err := json.Unmarshal([]byte(run(recipes[2])), &counts); err != nil {
		t.Fatalf("counts recipe: %v", err)
	}
	if counts["active"] != 10 || counts["active"]+counts["activating"]+counts["failed"] != 12 {
		t.Errorf("counts by state %v, want 10 active of 12", counts)
	}
}

func TestColourOnlyOnATerminalAndNeverWithNoColor(t *testing.T) {
	specs := []sandbox.Spec{{Name: "moonfrp-client-1", Behaviour: sandbox.Up, StopDelay: 10 * time.Millisecond}}
	sb := newSandbox(t, specs...)
	out, _ := runInPTY(t, bulkCmd(sb, []string{"TERM=xterm"}, "restart", "--settle=0"))
	if !strings.Contains(out, "\x1b[32m1\x1b[0m succeeded") {
		t.Errorf("no colour on a terminal: %q", out)
	}
	out, _ = runInPTY(t, bulkCmd(sb, []string{"TERM=xterm", "NO_COLOR=1"}, "restart", "--settle=0"))
	if strings.Contains(out, "\x1b[32m") || !strings.Contains(out, "Bulk restart complete: 1 succeeded, 0 failed") {
		t.Errorf("NO_COLOR ignored: %q", out)
	}
	r := bulk(t, sb, nil, "restart", "--settle=0")
	if strings.Contains(r.stderr, "\x1b[") {
		t.Errorf("escape codes when stderr is not a terminal: %q", r.stderr)
	}
}
