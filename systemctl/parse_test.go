package systemctl

import (
	"context"
	"reflect"
	"testing"
)

func TestParseListUnits(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []UnitState
	}{
		{"plain", "moonfrp-client-1.service loaded active running MoonFRP client 1\n",
			[]UnitState{{"moonfrp-client-1.service", "loaded", "active", "running"}}},
		{"bullet for failed units is not a name",
			"● moonfrp-client-2.service loaded failed failed MoonFRP\n  moonfrp-server.service loaded active running frps\n",
			[]UnitState{{"moonfrp-client-2.service", "loaded", "failed", "failed"}, {"moonfrp-server.service", "loaded", "active", "running"}}},
		{"not-found unit", "moonfrp-gone.service not-found inactive dead moonfrp-gone.service\n",
			[]UnitState{{"moonfrp-gone.service", "not-found", "inactive", "dead"}}},
		{"blank and short lines", "\n\nfoo bar\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseListUnits([]byte(tt.in)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

type scripted struct{ out Output }

func (s scripted) Run(context.Context, ...string) (Output, error) { return s.out, nil }

// Blocks are matched by position, so an alias named on the command line
// gets its target's block; when systemctl skips a name, by Id.
func TestShow(t *testing.T) {
	cases := []struct {
		name  string
		out   string
		names []string
		want  []string // Id of each block
	}{
		{"alias by position", "Id=moonfrp-client-1.service\nActiveState=active\n\nId=b.service\n\n",
			[]string{"tunnel-one.service", "b.service"}, []string{"moonfrp-client-1.service", "b.service"}},
		{"skipped name by Id", "Id=b.service\nActiveState=active\n\n",
			[]string{"a.service", "b.service"}, []string{"a.service", "b.service"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Show(context.Background(), scripted{Output{Stdout: []byte(c.out)}}, "Id", c.names)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, p := range got {
				ids = append(ids, p["Id"])
			}
			if !reflect.DeepEqual(ids, c.want) {
				t.Errorf("ids %v, want %v", ids, c.want)
			}
		})
	}
}

func TestParseShow(t *testing.T) {
	in := "Id=a.service\nActiveState=active\nExecStart={ path=/x ; argv[]=/x -c /etc/a=b.toml ; }\n\nId=b.service\nActiveState=failed\n\n"
	got := ParseShow([]byte(in))
	if len(got) != 2 {
		t.Fatalf("got %d blocks, want 2: %v", len(got), got)
	}
	if got[0]["ExecStart"] != "{ path=/x ; argv[]=/x -c /etc/a=b.toml ; }" {
		t.Errorf("a value holding '=' was cut: %q", got[0]["ExecStart"])
	}
	if got[1]["Id"] != "b.service" || got[1]["ActiveState"] != "failed" {
		t.Errorf("second block %v", got[1])
	}
}

func TestExecArgv(t *testing.T) {
	prop := "{ path=/opt/frp/frpc ; argv[]=/opt/frp/frpc -c /etc/frp/frpc-32.toml ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }"
	want := [][]string{{"/opt/frp/frpc", "-c", "/etc/frp/frpc-32.toml"}}
	if got := ExecArgv(prop); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := ExecArgv(""); got != nil {
		t.Errorf("empty property gave %q", got)
	}
}

func TestParseListJobs(t *testing.T) {
	got := ParseListJobs([]byte("62 moonfrp-client-h.service start running\n63 moonfrp-client-x.service restart waiting\n"))
	want := []Job{{"62", "moonfrp-client-h.service", "start"}, {"63", "moonfrp-client-x.service", "restart"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func FuzzParseShow(f *testing.F) {
	f.Add([]byte("Id=a\n\nId=b\nX=y=z\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, blk := range ParseShow(b) {
			if len(blk) == 0 {
				t.Fatal("empty block returned")
			}
		}
	})
}
