package main

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// Task arguments become the command line that means the same, whether
// they come typed (a YAML task) or as strings (ad-hoc -a 'k=v').
func TestModuleArgv(t *testing.T) {
	tests := []struct {
		name    string
		args    string
		want    []string
		check   bool
		wantErr string
	}{
		{"typed", `{"operation":"restart","units":["moonfrp-client-1","moonfrp-client-2"],"filters":["tag:env:prod"],"max_parallel":20,"settle":"2s","user":true,"max_fail":"10%","canary":2}`,
			[]string{"--output=json", "--user", "restart", "--filter=tag:env:prod", "--max-parallel=20", "--settle=2s", "--max-fail=10%", "--canary=2", "--", "moonfrp-client-1", "moonfrp-client-2"}, false, ""},
		{"ad-hoc strings", `{"operation":"restart","units":"[\"a\"]","filters":"name:moonfrp-client-*,tag:env:prod","max_parallel":"20","user":"yes","_ansible_check_mode":"True"}`,
			[]string{"--output=json", "--user", "restart", "--filter=name:moonfrp-client-*", "--filter=tag:env:prod", "--max-parallel=20", "--dry-run", "--", "a"}, true, ""},
		{"check mode", `{"operation":"stop","_ansible_check_mode":true}`, []string{"--output=json", "stop", "--dry-run"}, true, ""},
		{"list", `{"operation":"list","filters":["tunnel:down"]}`, []string{"--output=json", "list", "--filter=tunnel:down"}, false, ""},
		{"list with units", `{"operation":"list","units":["a"]}`, nil, false, "operation=list takes only filters and user, not units"},
		{"bad operation", `{"operation":"kill"}`, nil, false, "value of operation must be one of: start, stop, restart, reload, list, got: kill"},
		{"bad bool", `{"operation":"start","user":"perhaps"}`, nil, false, "argument 'user' is of type string and we were unable to convert to bool"},
		{"bad list", `{"operation":"start","units":"[1,"}`, nil, false, "argument 'units' is not a valid list"},
		{"nested value", `{"operation":"start","settle":{"s":1}}`, nil, false, "argument 'settle' must be a single value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var params map[string]any
			dec := json.NewDecoder(strings.NewReader(tt.args))
			dec.UseNumber()
			if err := dec.Decode(&params); err != nil {
				t.Fatal(err)
			}
			got, check, err := moduleArgv(params)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) || check != tt.check {
				t.Errorf("argv %q, check %v, %v; want %q, check %v", got, check, err, tt.want, tt.check)
			}
		})
	}
}

// Module mode never triggers for a normal command line.
func TestAnsibleModuleDetection(t *testing.T) {
	dir := t.TempDir()
	ansible := dir + "/args"
	if err := writeFile(ansible, `{"operation":"list","_ansible_check_mode":false}`); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		argv []string
		want bool
	}{
		{[]string{"/tmp/x/AnsiballZ_moonfrp_bulk", ansible}, true},
		{[]string{"library/moonfrp_bulk", ansible}, true},
		{[]string{"moonfrp-bulk", ansible}, false},
		{[]string{"/usr/bin/moonfrp-bulk", "restart"}, false},
		{[]string{"moonfrp_bulk", ansible, "extra"}, false},
		{[]string{"moonfrp_bulk", "/nonexistent"}, false},
		{[]string{"moonfrp_bulk", "--help"}, false},
		// An existing path is the module's to judge (and refuse, as a
		// failed result): not a usage error Ansible could not read.
		{[]string{"moonfrp_bulk", dir}, true},
	} {
		if _, got := ansibleModule(tt.argv); got != tt.want {
			t.Errorf("ansibleModule(%q) = %v, want %v", tt.argv, got, tt.want)
		}
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// The summary event's not_started is a count, a result's a flag: the
// summary must still reach the result.
func TestCollectEventsKeepsTheSummary(t *testing.T) {
	out := strings.NewReader(`{"event":"start","units":2}
{"event":"result","unit":"a.service","ok":true,"not_started":false}
{"event":"result","unit":"b.service","ok":false,"not_started":true}
{"event":"summary","units":2,"succeeded":1,"failed":0,"not_started":1}
`)
	var res moduleResult
	collectEvents(&res, out)
	if len(res.Units) != 2 || res.Summary == nil || !res.Changed {
		t.Errorf("units %d, summary %s, changed %v: want both results, the summary, and changed", len(res.Units), res.Summary, res.Changed)
	}
}
