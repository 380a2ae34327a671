package integrate

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const services = `# shellcheck shell=bash
get_moonfrp_services() { :; }
start_all_services() { :; }
stop_all_services() { :; }
restart_all_services() { :; }
setup_all_services() { :; }
bulk_service_operation() { :; }
bulk_start_services() { :; }
bulk_stop_services() { :; }
bulk_restart_services() { :; }
bulk_reload_services() { :; }
bulk_operation_filtered() { :; }
get_services_by_tag() { :; }
`

// fakeBin is a binary file where only its owner (the test's user) can write.
func fakeBin(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "moonfrp-bulk")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func tree(t *testing.T, svc string) (dir string) {
	t.Helper()
	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, "moonfrp.sh"), []byte("#!/bin/bash\nsource \"$SCRIPT_DIR/moonfrp-services.sh\"\n"), 0o755)
	os.WriteFile(filepath.Join(dir, ServicesFile), []byte(svc), 0o640)
	return dir
}

// Apply is idempotent and Undo gives the file back byte for byte, with or
// without a final newline, with CRLF lines, and with its mode kept.
func TestApplyUndoRoundTrip(t *testing.T) {
	for name, svc := range map[string]string{
		"plain":         services,
		"no final nl":   strings.TrimSuffix(services, "\n"),
		"crlf":          strings.ReplaceAll(services, "\n", "\r\n"),
		"empty last ln": services + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := tree(t, svc)
			if _, err := Find(dir); err != nil {
				t.Fatal(err)
			}
			o := Options{Dir: dir, ShimDir: filepath.Join(t.TempDir(), "share"), Shim: []byte("# shim\n"), Bin: fakeBin(t)}
			ch, err := Apply(o)
			if err != nil || ch.Done != "added" {
				t.Fatalf("apply: %+v %v", ch, err)
			}
			ch, err = Apply(o)
			if err != nil || ch.Done != "unchanged" {
				t.Fatalf("second apply: %+v %v", ch, err)
			}
			got, _ := os.ReadFile(filepath.Join(dir, ServicesFile))
			if n := bytes.Count(got, []byte(beginMarker)); n != 1 || !bytes.HasSuffix(got, []byte(endMarker+"\n")) {
				t.Fatalf("%d blocks, or not at the end:\n%s", n, got)
			}
			st, _ := os.Stat(filepath.Join(dir, ServicesFile))
			if st.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want 0640 kept", st.Mode())
			}
			// Undo finds the shim from the block, whatever ShimDir says now.
			if _, err := Undo(Options{Dir: dir, ShimDir: "/elsewhere", Shim: o.Shim}); err != nil {
				t.Fatal(err)
			}
			back, _ := os.ReadFile(filepath.Join(dir, ServicesFile))
			if string(back) != svc {
				t.Errorf("after undo:\n%q\nwant\n%q", back, svc)
			}
			if _, err := os.Stat(filepath.Join(o.ShimDir, ShimName)); !os.IsNotExist(err) {
				t.Errorf("shim left after undo: %v", err)
			}
		})
	}
}

func TestFindRefusesWhatIsNotMoonFRP(t *testing.T) {
	dir := tree(t, "echo not moonfrp\n")
	if _, err := Find(dir); err == nil || !strings.Contains(err.Error(), "defines no start_all_services()") {
		t.Errorf("got %v", err)
	}
	real := tree(t, services)
	link := filepath.Join(t.TempDir(), "x")
	os.MkdirAll(link, 0o755)
	os.WriteFile(filepath.Join(link, "moonfrp.sh"), []byte("source \"$SCRIPT_DIR/moonfrp-services.sh\"\n"), 0o755)
	os.Symlink(filepath.Join(real, ServicesFile), filepath.Join(link, ServicesFile))
	if _, err := Find(link); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("a symlinked module: %v", err)
	}
}

func TestBlockRefusesPathsThatNeedQuoting(t *testing.T) {
	dir := tree(t, services)
	for _, bad := range []string{"/tmp/a'b", "/tmp/$(x)", "relative/dir", "/tmp/a\nb"} {
		if _, err := Apply(Options{Dir: dir, ShimDir: bad, Shim: []byte("x"), Bin: "/bin/true"}); err == nil {
			t.Errorf("shim dir %q accepted", bad)
		}
	}
}

// Root's MoonFRP must not run a binary that another user can replace.
func TestApplyRefusesABinaryOthersCanWrite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the check applies to root")
	}
	dir := tree(t, services)
	home := t.TempDir()
	os.Chmod(home, 0o777)
	bin := filepath.Join(home, "moonfrp-bulk")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	_, err := Apply(Options{Dir: dir, ShimDir: filepath.Join(t.TempDir(), "share"), Shim: []byte("x"), Bin: bin})
	if err == nil || !strings.Contains(err.Error(), "not root's alone") {
		t.Errorf("a binary in a world-writable directory: %v", err)
	}
}

// A MoonFRP whose service functions moonfrp-bulk does not know (a new
// bulk_* function, or one of its own renamed) is refused with one line
// that names them, and its files are left byte for byte.
func TestApplyRefusesUnknownServiceFunctions(t *testing.T) {
	for name, c := range map[string]struct{ svc, want string }{
		"new":     {services + "bulk_frobnicate_services() { :; }\n", "defines bulk_frobnicate_services()"},
		"renamed": {strings.Replace(services, "bulk_reload_services", "bulk_reload_all", 1), "defines bulk_reload_all() and no longer defines bulk_reload_services()"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := tree(t, c.svc)
			shimDir := filepath.Join(t.TempDir(), "share")
			_, err := Apply(Options{Dir: dir, ShimDir: shimDir, Shim: []byte("shim"), Bin: fakeBin(t)})
			if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Apply: %v; want one line with %q", err, c.want)
			}
			if got, _ := os.ReadFile(filepath.Join(dir, ServicesFile)); string(got) != c.svc {
				t.Error("moonfrp-services.sh changed")
			}
			if _, err := os.Stat(shimDir); err == nil {
				t.Error("the shim was installed")
			}
		})
	}
}

// A MoonFRP file or directory that another user could have written is
// refused, by Find, Apply and Check alike, with what to fix; it is left
// as it was (and its owner too), and Check sources nothing it refuses.
func TestHostileOwnershipIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	opts := func(dir string) Options {
		return Options{Dir: dir, ShimDir: filepath.Join(t.TempDir(), "share"), Shim: []byte("shim"), Bin: fakeBin(t)}
	}
	t.Run("services file of another user", func(t *testing.T) {
		dir := tree(t, services)
		svc := filepath.Join(dir, ServicesFile)
		if err := os.Chown(svc, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err := Apply(opts(dir))
		if err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") || !strings.Contains(err.Error(), "chown 0") {
			t.Fatalf("Apply: %v", err)
		}
		var st unix.Stat_t
		if data, _ := os.ReadFile(svc); string(data) != services || unix.Stat(svc, &st) != nil || st.Uid != 65534 {
			t.Error("the refused file was changed")
		}
	})
	t.Run("world-writable services file", func(t *testing.T) {
		dir := tree(t, services)
		os.Chmod(filepath.Join(dir, ServicesFile), 0o666)
		if _, err := Apply(opts(dir)); err == nil || !strings.Contains(err.Error(), "mode 0666") {
			t.Fatalf("Apply: %v", err)
		}
	})
	t.Run("world-writable directory", func(t *testing.T) {
		dir := tree(t, services)
		os.Chmod(dir, 0o777)
		if _, err := Find(dir); err == nil || errors.Is(err, ErrNotMoonFRP) || !strings.Contains(err.Error(), "mode 0777") {
			t.Fatalf("Find: %v", err)
		}
	})
	t.Run("a module of another user is never sourced", func(t *testing.T) {
		dir := tree(t, services)
		marker := filepath.Join(t.TempDir(), "sourced")
		os.WriteFile(filepath.Join(dir, "moonfrp.sh"), []byte("#!/bin/bash\nsource \"$SCRIPT_DIR/moonfrp-services.sh\"\nsource \"$SCRIPT_DIR/moonfrp-ui.sh\"\n"), 0o755)
		ui := filepath.Join(dir, "moonfrp-ui.sh")
		os.WriteFile(ui, []byte("touch "+marker+"\n"), 0o644)
		os.Chown(ui, 65534, 65534)
		if _, err := Check(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "moonfrp-ui.sh belongs to uid 65534") {
			t.Fatalf("Check: %v", err)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("Check sourced a module it refuses")
		}
	})
}
