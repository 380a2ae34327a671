package joblog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func record(unit string, ok bool) []byte {
	return []byte(fmt.Sprintf(`{"event":"job","time":"2026-12-06T05:00:00Z","operation":"restart","units":1,"results":[{"unit":%q,"ok":%v,"not_started":false}]}`, unit, ok))
}

func TestLastReturnsTheNewestRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := Last(dir); !errors.Is(err, ErrNoRuns) {
		t.Fatalf("Last before any run: %v, want ErrNoRuns", err)
	}
	for i := 0; i < 3; i++ {
		if err := Append(dir, record(fmt.Sprintf("u%d.service", i), i != 2)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Last(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != 1 || r.Results[0].Unit != "u2.service" || r.Results[0].OK {
		t.Errorf("last record %+v, want u2 failed", r)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
	st, err = os.Stat(filepath.Join(dir, FileName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("job log mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
}

// A record cut short by a crash mid-write is passed over, not read as
// garbage: the run before it is the last complete one.
func TestLastSkipsATornRecord(t *testing.T) {
	dir := t.TempDir()
	if err := Append(dir, record("whole.service", false)); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"operation":"restart","results":[{"unit":"torn`)
	f.Close()
	r, err := Last(dir)
	if err != nil || len(r.Results) != 1 || r.Results[0].Unit != "whole.service" {
		t.Errorf("Last = %+v, %v; want the whole record before the torn one", r, err)
	}
}

func TestAppendRotatesAtTheBound(t *testing.T) {
	dir := t.TempDir()
	big := []byte(`{"operation":"restart","pad":"` + strings.Repeat("x", MaxBytes) + `","results":[]}`)
	if err := Append(dir, big); err != nil {
		t.Fatal(err)
	}
	if err := Append(dir, record("after.service", true)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil || st.Size() > 1000 {
		t.Fatalf("job log after rotation: %v, %v; want only the new record", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+".1")); err != nil {
		t.Errorf("rotated log: %v", err)
	}
	if r, err := Last(dir); err != nil || r.Results[0].Unit != "after.service" {
		t.Errorf("Last after rotation = %+v, %v", r, err)
	}
}

func TestRefusesWhatOthersCouldPlant(t *testing.T) {
	tests := []struct {
		name  string
		plant func(t *testing.T, dir string)
		want  string
	}{
		{"log is a symlink", func(t *testing.T, dir string) {
			os.MkdirAll(dir, 0o700)
			target := filepath.Join(t.TempDir(), "victim")
			os.WriteFile(target, nil, 0o600)
			os.Symlink(target, filepath.Join(dir, FileName))
		}, "symlink"},
		{"log is a FIFO", func(t *testing.T, dir string) {
			os.MkdirAll(dir, 0o700)
			if err := mkfifo(filepath.Join(dir, FileName)); err != nil {
				t.Skip(err)
			}
		}, "not a regular file"},
		{"directory is a symlink", func(t *testing.T, dir string) {
			os.Symlink(t.TempDir(), dir)
		}, "symlink"},
		{"directory is writable by others", func(t *testing.T, dir string) {
			os.MkdirAll(dir, 0o700)
			os.Chmod(dir, 0o777)
		}, "writable by others"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			tt.plant(t, dir)
			err := Append(dir, record("u.service", true))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Append: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestAppendRejectsAMultiLineRecord(t *testing.T) {
	if err := Append(t.TempDir(), []byte("{}\n{}")); err == nil {
		t.Error("a record with a newline was appended")
	}
}

func TestDirFollowsXDGStateHome(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/x/state")
	if d, _ := Dir(true); d != "/x/state/moonfrp-bulk" {
		t.Errorf("Dir(user) = %q", d)
	}
	t.Setenv("XDG_STATE_HOME", "relative") // not absolute: ignored, as the spec says
	t.Setenv("HOME", "/home/op")
	if d, _ := Dir(true); d != "/home/op/.local/state/moonfrp-bulk" {
		t.Errorf("Dir(user) with a relative XDG_STATE_HOME = %q", d)
	}
	if d, _ := Dir(false); d != "/var/lib/moonfrp-bulk" {
		t.Errorf("Dir(system) = %q", d)
	}
}

func mkfifo(path string) error { return unix.Mkfifo(path, 0o600) }

// After a torn record, the next run's record starts on a line of its own
// and is the one Last reads.
func TestAppendAfterATornRecord(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(`{"operation":"restart","results":[{"unit":"to`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Append(dir, record("next.service", false)); err != nil {
		t.Fatal(err)
	}
	if r, err := Last(dir); err != nil || len(r.Results) != 1 || r.Results[0].Unit != "next.service" {
		t.Errorf("Last = %+v, %v; want the record written after the torn one", r, err)
	}
}

// Between a rotation and the next record, the run before is in the older
// file, and Last finds it there.
func TestLastReadsTheRotatedFileMeanwhile(t *testing.T) {
	dir := t.TempDir()
	if err := Append(dir, record("before.service", true)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, FileName), filepath.Join(dir, FileName+".1")); err != nil {
		t.Fatal(err)
	}
	if r, err := Last(dir); err != nil || r.Results[0].Unit != "before.service" {
		t.Errorf("Last mid-rotation = %+v, %v", r, err)
	}
}

// A line that is valid JSON but not a run's record (null, {}, a record
// without its results, or with fewer results than units) is passed over
// and counted, like a torn one: the record before it is the last run.
func TestRecentSkipsLinesThatAreNotRecords(t *testing.T) {
	dir := t.TempDir()
	if err := Append(dir, record("real.service", false)); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"null", "{}", `{"results":null}`, `{"event":"job","time":"x","operation":"start","units":2,"results":[{"unit":"a"}]}`, "[1,2]", "7"} {
		if err := Append(dir, []byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	recs, skipped, err := Recent(dir, 5)
	if err != nil || len(recs) != 1 || recs[0].Results[0].Unit != "real.service" || skipped != 6 {
		t.Errorf("Recent = %+v, %d skipped, %v; want the one real record and 6 lines passed over", recs, skipped, err)
	}
}
