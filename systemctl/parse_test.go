package systemctl

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
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

// echoShow answers a show with one block per name after "--", and counts
// the calls and the most names any call carried.
type echoShow struct {
	mu         sync.Mutex
	calls, big int
	fail       string // a name whose call fails
}

func (e *echoShow) Run(_ context.Context, args ...string) (Output, error) {
	var names []string
	for i, a := range args {
		if a == "--" {
			names = args[i+1:]
		}
	}
	e.mu.Lock()
	e.calls++
	e.big = max(e.big, len(names))
	e.mu.Unlock()
	var b strings.Builder
	for _, n := range names {
		if n == e.fail {
			return Output{ExitCode: 1}, errors.New("connection reset")
		}
		fmt.Fprintf(&b, "Id=%s\nActiveState=active\n\n", n)
	}
	return Output{Stdout: []byte(b.String())}, nil
}

// Many names are split over a few calls side by side, and every name
// still gets its own block, in order; a failed call fails the show.
func TestShowSplitsManyNames(t *testing.T) {
	names := func(n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf("u-%d.service", i)
		}
		return s
	}
	cases := []struct {
		units, calls, biggest int
	}{
		{1, 1, 1},
		{showChunk*2 - 1, 1, showChunk*2 - 1},
		{showChunk * 2, 2, showChunk},
		{1000, showCalls, 334},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.units), func(t *testing.T) {
			r := &echoShow{}
			in := names(c.units)
			got, err := Show(context.Background(), r, "Id", in)
			if err != nil {
				t.Fatal(err)
			}
			if r.calls != c.calls || r.big != c.biggest {
				t.Errorf("%d calls of at most %d names, want %d of at most %d", r.calls, r.big, c.calls, c.biggest)
			}
			if len(got) != len(in) {
				t.Fatalf("%d blocks for %d names", len(got), len(in))
			}
			for i, p := range got {
				if p["Id"] != in[i] {
					t.Fatalf("block %d is %q, want %q", i, p["Id"], in[i])
				}
			}
		})
	}
	in := names(500)
	if _, err := Show(context.Background(), &echoShow{fail: in[420]}, "Id", in); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("a failed call gave %v, want its error", err)
	}
}
