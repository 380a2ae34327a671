package safefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, []byte("0123456789"), 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(regular, link)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "foreign")
	os.WriteFile(foreign, []byte("x"), 0o644)
	root := os.Geteuid() == 0
	if root {
		os.Chown(foreign, 65534, 65534)
	}
	cases := []struct {
		name, path string
		opt        Options
		refused    string // "" when it opens
		missing    bool
	}{
		{"regular", regular, Options{}, "", false},
		{"symlink", link, Options{}, "is a symlink", false},
		{"fifo", fifo, Options{}, "is a FIFO", false},
		{"device", "/dev/zero", Options{}, "is a character device", false},
		{"directory", dir, Options{}, "is a directory", false},
		{"missing", filepath.Join(dir, "nope"), Options{}, "", true},
	}
	if root {
		cases = append(cases,
			struct {
				name, path string
				opt        Options
				refused    string
				missing    bool
			}{"foreign owner", foreign, Options{}, "owned by uid 65534", false},
			struct {
				name, path string
				opt        Options
				refused    string
				missing    bool
			}{"unit user's own", foreign, Options{Owners: []int{65534}}, "", false},
			struct {
				name, path string
				opt        Options
				refused    string
				missing    bool
			}{"root's file named by a user's", regular, Options{Owners: []int{65534}, NotRoot: true}, "is root's", false},
		)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan struct{})
			var f *File
			var err error
			go func() {
				f, err = Open(c.path, c.opt)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Open blocked")
			}
			switch {
			case c.missing:
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("err %v, want not-exist", err)
				}
			case c.refused != "":
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.refused) {
					t.Errorf("err %v, want a refusal saying %q", err, c.refused)
				}
			default:
				if err != nil {
					t.Fatalf("err %v", err)
				}
				f.Close()
			}
		})
	}
}

// ReadFrom reads at most limit bytes, the last ones, and from the start
// when the offset lies beyond the end (the file was truncated).
func TestReadFrom(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("0123456789"), 0o644)
	cases := []struct {
		offset, limit int64
		want          string
	}{
		{0, 100, "0123456789"},
		{4, 100, "456789"},
		{0, 3, "789"},
		{50, 100, "0123456789"},
	}
	for _, c := range cases {
		f, err := Open(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.ReadFrom(c.offset, c.limit)
		f.Close()
		if err != nil || string(got) != c.want {
			t.Errorf("ReadFrom(%d, %d) = %q, %v; want %q", c.offset, c.limit, got, err, c.want)
		}
	}
}
