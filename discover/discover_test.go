package discover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/moonfrp/moonfrp-bulk/joblog"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// fakeSystemctl answers list-units, list-unit-files and show from fixed
// text, and records every call.
type fakeSystemctl struct {
	mu        sync.Mutex
	calls     [][]string
	listUnits string
	unitPath  string
	show      func(units []string) string
}

func (f *fakeSystemctl) Run(_ context.Context, args ...string) (systemctl.Output, error) {
	f.mu.Lock()
	f.calls = append(f.calls, args)
	f.mu.Unlock()
	switch args[0] {
	case "list-units":
		return systemctl.Output{Stdout: []byte(f.listUnits)}, nil
	case "show":
		if args[len(args)-1] == "UnitPath" {
			return systemctl.Output{Stdout: []byte("UnitPath=" + f.unitPath + "\n")}, nil
		}
		var units []string
		for i, a := range args {
			if a == "--" {
				units = args[i+1:]
			}
		}
		return systemctl.Output{Stdout: []byte(f.show(units))}, nil
	}
	return systemctl.Output{ExitCode: 1}, nil
}

func TestAll(t *testing.T) {
	etc, run := t.TempDir(), t.TempDir()
	for _, f := range []string{"moonfrp-client@.service", "moonfrp-client-2.service", "moonfrp-visitor-1.service", "other.service", "moonfrp-client-1.timer",
		"moonfrp-bulk-integrate.service"} {
		if err := os.WriteFile(filepath.Join(etc, f), []byte("[Service]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(os.DevNull, filepath.Join(run, "moonfrp-client-9.service")); err != nil {
		t.Fatal(err)
	}
	// An alias of client-2: the same unit, listed once.
	if err := os.Symlink(filepath.Join(etc, "moonfrp-client-2.service"), filepath.Join(run, "moonfrp-client-two.service")); err != nil {
		t.Fatal(err)
	}
	// Shadowed by the file in the first directory of the path.
	if err := os.Symlink(os.DevNull, filepath.Join(run, "moonfrp-visitor-1.service")); err != nil {
		t.Fatal(err)
	}
	f := &fakeSystemctl{
		listUnits: "● moonfrp-client-2.service loaded failed failed c2\n" +
			"moonfrp-client-10.service loaded active running c10\n" +
			"moonfrp-client@a.service loaded active running inst\n" +
			"moonfrp-server.service loaded activating auto-restart s\n" +
			"moonfrp-bulk-integrate.service loaded inactive dead watch\n", // moonfrp-bulk's own: never a tunnel
		unitPath: etc + " /nonexistent " + run,
	}
	units, err := All(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	want := []Unit{
		{"moonfrp-client-2.service", "loaded", "failed", "failed"},
		{"moonfrp-client-9.service", "masked", "inactive", "dead"},
		{"moonfrp-client-10.service", "loaded", "active", "running"},
		{"moonfrp-client@a.service", "loaded", "active", "running"},
		{"moonfrp-server.service", "loaded", "activating", "auto-restart"},
		{"moonfrp-visitor-1.service", NotLoaded, "inactive", "dead"},
	}
	if !reflect.DeepEqual(units, want) {
		t.Errorf("got\n%+v\nwant\n%+v", units, want)
	}
	if len(f.calls) != 2 {
		t.Errorf("%d systemctl calls, want 2", len(f.calls))
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{"moonfrp-client-1", "moonfrp-client-1.service", false},
		{"moonfrp-client-1.service", "moonfrp-client-1.service", false},
		{"moonfrp-client@x", "moonfrp-client@x.service", false},
		{"moonfrp-client-*", "moonfrp-client-*.service", false},
		{"moonfrp-client-1; rm -rf /", "", true},
		{"$(reboot)", "", true},
		{"a b", "", true},
		{"--help", "", true},
		{"", "", true},
		{strings.Repeat("a", 300), "", true},
		{strings.Repeat("a", 247), strings.Repeat("a", 247) + ".service", false}, // 255 with .service
		{strings.Repeat("a", 248), "", true},                                     // 256 with .service
		{"moonfrp-client-[", "", true},                                           // a malformed glob
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q, bad=%v", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestNaturalLess(t *testing.T) {
	names := []string{"moonfrp-client-10", "moonfrp-client-2", "moonfrp-client-1", "moonfrp-server", "moonfrp-client-02x"}
	units := make([]Unit, len(names))
	for i, n := range names {
		units[i] = Unit{Name: n}
	}
	Sort(units)
	var got []string
	for _, u := range units {
		got = append(got, u.Name)
	}
	want := []string{"moonfrp-client-1", "moonfrp-client-2", "moonfrp-client-02x", "moonfrp-client-10", "moonfrp-server"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		in      string
		want    Filter
		wantErr string
	}{
		{in: "tag:env", want: Filter{Kind: "tag", Key: "env", Raw: "tag:env"}},
		{in: "tag:env:prod", want: Filter{Kind: "tag", Key: "env", Value: "prod", HasValue: true, Raw: "tag:env:prod"}},
		{in: "tag:url:http://x:8080", want: Filter{Kind: "tag", Key: "url", Value: "http://x:8080", HasValue: true, Raw: "tag:url:http://x:8080"}},
		{in: "status:failed", want: Filter{Kind: "status", Value: "failed", Raw: "status:failed"}},
		{in: "status:running", want: Filter{Kind: "status", Value: "running", Raw: "status:running"}},
		{in: "name:*-eu-*", want: Filter{Kind: "name", Value: "*-eu-*", Raw: "name:*-eu-*"}},
		{in: "type:visitor", want: Filter{Kind: "type", Value: "visitor", Raw: "type:visitor"}},
		{in: "foo:bar", wantErr: `unknown filter type "foo"`},
		{in: "tag:", wantErr: "empty tag key"},
		{in: "tag:env:", wantErr: "empty tag value"},
		{in: "status:sleeping", wantErr: `unknown state "sleeping"`},
		{in: "name:", wantErr: "empty name pattern"},
		{in: "name:[", wantErr: "malformed glob"},
		{in: "type:proxy", wantErr: `unknown type "proxy"`},
		{in: "last:failed", want: Filter{Kind: "last", Value: "failed", Raw: "last:failed"}},
		{in: "last:not-started", want: Filter{Kind: "last", Value: "not-started", Raw: "last:not-started"}},
		{in: "last:ok", wantErr: `unknown outcome "ok"`},
		{in: "prod", wantErr: "missing ':'"},
	}
	for _, tt := range tests {
		got, err := ParseFilter(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), ValidForms) {
				t.Errorf("ParseFilter(%q) error %v, want one with %q and the valid forms", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseFilter(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestMatchName(t *testing.T) {
	tests := []struct {
		pattern, unit string
		want          bool
	}{
		{"*-eu-*", "moonfrp-client-eu-1.service", true},
		{"*-eu-*", "moonfrp-client-us-1.service", false},
		{"moonfrp-client-?", "moonfrp-client-1.service", true},
		{"moonfrp-client-[12]", "moonfrp-client-3.service", false},
		{"client", "moonfrp-client-3.service", true},
		{"service", "moonfrp-client-3.service", false},
	}
	for _, tt := range tests {
		if got := MatchName(tt.pattern, tt.unit); got != tt.want {
			t.Errorf("MatchName(%q, %q) = %v", tt.pattern, tt.unit, got)
		}
	}
}

func writeIndex(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	idx := filepath.Join(dir, "config-index")
	if err := os.MkdirAll(idx, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(idx, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadIndex(t *testing.T) {
	dir := writeIndex(t, map[string]string{
		"a.json":   `{"path": "/etc/frp/frpc-1.toml", "type": "client", "tags": {"env": "prod", "port": 7000}}`,
		"b.json":   `{"path": "/etc/frp/frpc-2.toml", "tags": {}`,
		"c.json":   `{"path": "/etc/frp/frpc-3.toml", "type": "client"}`,
		"note.txt": "ignored",
	})
	idx, err := LoadIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Entries) != 1 || idx.Entries[0].Tags["env"] != "prod" || idx.Entries[0].Tags["port"] != "7000" {
		t.Errorf("entries %+v", idx.Entries)
	}
	if len(idx.Warnings) != 2 {
		t.Errorf("warnings %q, want one for the corrupt file and one for the file without tags", idx.Warnings)
	}
	if _, err := LoadIndex(filepath.Join(dir, "nope")); !errors.Is(err, ErrNoIndex) {
		t.Errorf("missing index: %v, want ErrNoIndex", err)
	}
}

// showExecStart answers `show -p Id,ExecStart` for units whose config is
// given in configs (unit -> config path).
func showExecStart(configs map[string]string) func([]string) string {
	return func(units []string) string {
		var b strings.Builder
		for _, u := range units {
			fmt.Fprintf(&b, "Id=%s\n", u)
			if c, ok := configs[u]; ok {
				fmt.Fprintf(&b, "ExecStart={ path=/opt/frp/frpc ; argv[]=/opt/frp/frpc -c %s ; ignore_errors=no ; }\n", c)
			}
			b.WriteString("\n")
		}
		return b.String()
	}
}

func TestApplyTagsMapConfigsToUnitsByExecStart(t *testing.T) {
	dir := writeIndex(t, map[string]string{
		"1.json": `{"path": "/etc/frp/frpc-32.toml", "tags": {"env": "prod", "url": "http://x:80"}}`,
		"2.json": `{"path": "/etc/frp/frpc-eu.toml", "tags": {"env": "staging"}}`,
		"3.json": `{"path": "/etc/frp/orphan.toml", "tags": {"env": "prod"}}`,
	})
	units := []Unit{
		{Name: "moonfrp-client-32.service"},      // runs frpc-32.toml: not the bash guess
		{Name: "moonfrp-frpc-eu.service"},        // no ExecStart config: found by convention
		{Name: "moonfrp-frpc-32.service"},        // the bash guess for frpc-32.toml, but another unit runs it
		{Name: "moonfrp-visitor-orphan.service"}, // runs nothing tagged
	}
	f := &fakeSystemctl{show: showExecStart(map[string]string{
		"moonfrp-client-32.service":      "/etc/frp/frpc-32.toml",
		"moonfrp-frpc-32.service":        "/etc/frp/other.toml",
		"moonfrp-visitor-orphan.service": "/etc/frp/visitor.toml",
	})}
	tests := []struct {
		filters []string
		want    []string
	}{
		{[]string{"tag:env:prod"}, []string{"moonfrp-client-32.service"}},
		{[]string{"tag:env"}, []string{"moonfrp-client-32.service", "moonfrp-frpc-eu.service"}},
		{[]string{"tag:url:http://x:80"}, []string{"moonfrp-client-32.service"}},
		{[]string{"tag:env", "name:eu"}, []string{"moonfrp-frpc-eu.service"}},
		{[]string{"tag:env:dev"}, nil},
	}
	for _, tt := range tests {
		var filters []Filter
		for _, e := range tt.filters {
			fl, err := ParseFilter(e)
			if err != nil {
				t.Fatal(err)
			}
			filters = append(filters, fl)
		}
		sel, err := Apply(context.Background(), f, units, filters, Options{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, u := range sel.Units {
			got = append(got, u.Name)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%v selected %v, want %v", tt.filters, got, tt.want)
		}
		if len(tt.want) == 0 && sel.Empty == "" {
			t.Errorf("%v matched nothing but Empty is not set", tt.filters)
		}
	}
}

func TestApplyMissingIndexIsAnErrorOnlyForTagFilters(t *testing.T) {
	f := &fakeSystemctl{show: showExecStart(nil)}
	units := []Unit{{Name: "moonfrp-client-1.service", Active: "active", Sub: "running"}}
	status, _ := ParseFilter("status:active")
	if _, err := Apply(context.Background(), f, units, []Filter{status}, Options{DataDir: "/nonexistent"}); err != nil {
		t.Errorf("status filter without an index: %v", err)
	}
	tag, _ := ParseFilter("tag:env")
	if _, err := Apply(context.Background(), f, units, []Filter{tag}, Options{DataDir: "/nonexistent"}); !errors.Is(err, ErrNoIndex) {
		t.Errorf("tag filter without an index: %v, want ErrNoIndex", err)
	}
}

func TestApplyLastSelectsFromThePreviousRun(t *testing.T) {
	dir := t.TempDir()
	units := []Unit{{Name: "moonfrp-client-1.service"}, {Name: "moonfrp-client-2.service"},
		{Name: "moonfrp-client-3.service"}, {Name: "moonfrp-client-4.service"}}
	f := &fakeSystemctl{show: showExecStart(nil)}
	last, _ := ParseFilter("last:failed")
	if _, err := Apply(context.Background(), f, units, []Filter{last}, Options{StateDir: dir}); !errors.Is(err, ErrUsage) || !errors.Is(err, joblog.ErrNoRuns) {
		t.Errorf("last: with no run recorded: %v, want a usage error saying no run was recorded", err)
	}
	// client-1 ok, client-2 failed, client-3 not started; client-4 was
	// not in that run at all.
	rec := `{"event":"job","time":"2026-12-06T05:00:00Z","operation":"restart","units":3,"results":[{"unit":"moonfrp-client-1.service","ok":true},{"unit":"moonfrp-client-2.service","ok":false},` +
		`{"unit":"moonfrp-client-3.service","ok":false,"not_started":true}]}`
	if err := joblog.Append(dir, []byte(rec)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		expr string
		want []string
	}{
		{"last:failed", []string{"moonfrp-client-2.service"}},
		{"last:not-started", []string{"moonfrp-client-3.service"}},
		{"last:unfinished", []string{"moonfrp-client-2.service", "moonfrp-client-3.service"}},
	} {
		fl, _ := ParseFilter(tt.expr)
		sel, err := Apply(context.Background(), f, units, []Filter{fl}, Options{StateDir: dir})
		var got []string
		for _, u := range sel.Units {
			got = append(got, u.Name)
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s selected %v (%v), want %v", tt.expr, got, err, tt.want)
		}
	}
}

// Filtering 500 units costs a constant number of systemctl calls: two for
// discovery, none for status/name/type, one for tags.
func TestFilterCallsDoNotGrowWithUnits(t *testing.T) {
	var lu strings.Builder
	configs := map[string]string{}
	files := map[string]string{}
	for i := 1; i <= 500; i++ {
		state := "active running"
		if i%7 == 0 {
			state = "failed failed"
		}
		fmt.Fprintf(&lu, "moonfrp-client-%d.service loaded %s c\n", i, state)
		configs[fmt.Sprintf("moonfrp-client-%d.service", i)] = fmt.Sprintf("/etc/frp/frpc-%d.toml", i)
		files[fmt.Sprintf("%d.json", i)] = fmt.Sprintf(`{"path": "/etc/frp/frpc-%d.toml", "tags": {"env": "prod"}}`, i)
	}
	dir := writeIndex(t, files)
	f := &fakeSystemctl{listUnits: lu.String(), show: showExecStart(configs)}
	units, err := All(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	var filters []Filter
	for _, e := range []string{"status:failed", "type:client", "name:moonfrp-client-*", "tag:env:prod"} {
		fl, _ := ParseFilter(e)
		filters = append(filters, fl)
	}
	sel, err := Apply(context.Background(), f, units, filters, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.Units) != 500/7 {
		t.Errorf("selected %d units, want %d", len(sel.Units), 500/7)
	}
	if len(f.calls) != 3 {
		t.Errorf("%d systemctl calls for 500 units, want 3 (2 discovery + 1 show)", len(f.calls))
	}
}
