package exec

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moonfrp/moonfrp-bulk/safefile"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

func TestKeyLine(t *testing.T) {
	tests := []struct {
		tail []string
		want string
	}{
		{[]string{"2024/05/01 10:00:00 [I] [service.go:301] start", "2024/05/01 10:00:01 [E] [service.go:295] login to the server failed: EOF"},
			"login to the server failed: EOF"},
		{[]string{"2025-01-02T03:04:05Z [W] [proxy.go:1] error dialing", "bye"}, "error dialing"},
		{[]string{"just a line"}, "just a line"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := keyLine(tt.tail); got != tt.want {
			t.Errorf("keyLine(%q) = %q, want %q", tt.tail, got, tt.want)
		}
	}
}

func TestReadTailOnlyNewLinesWithoutColour(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(p, []byte("old failure\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	off := fileSize(p, safefile.Options{})
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("\x1b[1;31m[E] new failure\x1b[0m\n\n   \nlast \x1b]0;title\x07\n")
	f.Close()
	if got, _ := readTail(p, off, safefile.Options{}); !reflect.DeepEqual(got, []string{"[E] new failure", "last"}) {
		t.Errorf("readTail = %q", got)
	}
	// A log rotated since the offset is read from its start.
	os.WriteFile(p, []byte("fresh\n"), 0o644)
	if got, _ := readTail(p, off+100, safefile.Options{}); !reflect.DeepEqual(got, []string{"fresh"}) {
		t.Errorf("after truncation readTail = %q", got)
	}
}

// A log that is a FIFO, a device or a symlink is never read: a FIFO would
// block, /dev/zero would never end, and a link may point at a root-only
// file. Each refusal is named.
func TestReadTailRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.log")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("root:$6$hash\n"), 0o600)
	link := filepath.Join(dir, "link.log")
	os.Symlink(secret, link)
	cases := []struct{ path, note string }{
		{fifo, "is a FIFO, not a regular file"},
		{"/dev/zero", "is a character device"},
		{link, "is a symlink"},
	}
	for _, c := range cases {
		done := make(chan struct{})
		var lines []string
		var note string
		go func() {
			lines, note = readTail(c.path, 0, safefile.Options{})
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: readTail blocked", c.path)
		}
		if len(lines) != 0 || !strings.Contains(note, c.note) {
			t.Errorf("%s: lines %q note %q, want none and %q", c.path, lines, note, c.note)
		}
	}
}

func TestLogFiles(t *testing.T) {
	dir := t.TempDir()
	frag := filepath.Join(dir, "u.service")
	drop := filepath.Join(dir, "override.conf")
	long := "# " + strings.Repeat("x", 100<<10) + "\n"
	os.WriteFile(frag, []byte("[Service]\n"+long+"StandardOutput=append:/var/log/frp/%n.log\nStandardError=append:/var/log/frp/%n.log\n"), 0o644)
	os.WriteFile(drop, []byte("[Service]\nStandardError=file:/tmp/%i/err-%p.log\n"), 0o644)
	got := logFiles(frag, []string{drop}, "moonfrp-client@eu.service", safefile.Options{})
	want := []string{"/var/log/frp/moonfrp-client@eu.service.log", "/tmp/eu/err-moonfrp-client.log"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("logFiles = %q, want %q", got, want)
	}
	if got := logFiles(filepath.Join(dir, "missing"), nil, "x", safefile.Options{}); got != nil {
		t.Errorf("missing fragment gave %q", got)
	}
}

func TestExpandSpecifiers(t *testing.T) {
	cases := []struct{ in, unit, want string }{
		{"/l/%n.log", "a@b.service", "/l/a@b.service.log"},
		{"/l/%N.log", "a@b.service", "/l/a@b.log"},
		{"/l/%p-%i.log", "moonfrp-client@x.service", "/l/moonfrp-client-x.log"},
		{"/l/%I.log", "u@srv-a\\x2db.service", "/l/srv/a-b.log"},
		{"/l/100%%.log", "u.service", "/l/100%.log"},
	}
	for _, c := range cases {
		if got := expandSpecifiers(c.in, c.unit); got != c.want {
			t.Errorf("expandSpecifiers(%q, %q) = %q, want %q", c.in, c.unit, got, c.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		name     string
		op       string
		p        systemctl.Properties
		restarts int
		want     string
	}{
		{"up", "start", systemctl.Properties{"ActiveState": "active", "SubState": "running"}, 0, ""},
		{"auto-restart", "restart", systemctl.Properties{"ActiveState": "activating", "SubState": "auto-restart", "Result": "exit-code", "ExecMainCode": "1", "ExecMainStatus": "1", "NRestarts": "3"}, 0,
			"exited with status 1 right after restart (auto-restart loop, 3 restarts)"},
		{"killed", "start", systemctl.Properties{"ActiveState": "failed", "SubState": "failed", "Result": "signal", "ExecMainCode": "2", "ExecMainStatus": "9"}, 0,
			"killed by signal SIGKILL"},
		{"start limit", "start", systemctl.Properties{"ActiveState": "failed", "Result": "start-limit-hit"}, 0,
			"start limit hit: it restarted too often (start-limit-hit)"},
		{"restarted in window", "start", systemctl.Properties{"ActiveState": "active", "SubState": "running", "NRestarts": "1"}, 1,
			"restarted 1 time right after start"},
		{"crash looping", "start", systemctl.Properties{"ActiveState": "activating", "SubState": "auto-restart", "NRestarts": "1"}, 1,
			"stopped right after start (auto-restart loop, 1 restart)"},
		{"exited cleanly", "start", systemctl.Properties{"ActiveState": "inactive", "SubState": "dead", "Result": "success"}, 0,
			"exited right after start and stayed down"},
		{"stop ok", "stop", systemctl.Properties{"ActiveState": "failed"}, 0, ""},
		{"stop left running", "stop", systemctl.Properties{"ActiveState": "active", "SubState": "running"}, 0, "still active (running) after stop"},
		{"not found", "start", systemctl.Properties{"LoadState": "not-found"}, 0, "unit not found"},
	}
	for _, tt := range tests {
		if got := describe(tt.op, tt.p, tt.restarts); got != tt.want {
			t.Errorf("%s: describe = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// A reason describes the operation that ran: a reload's failure is its
// ExecReload's, never the ExecStartPre failure of some earlier start.
func TestResultWordsBelongToTheOperation(t *testing.T) {
	oldPre := "{ path=/bin/false ; argv[]=/bin/false ; ignore_errors=no ; code=exited ; status=1 }"
	reload := "{ path=/bin/kill ; argv[]=/bin/kill -HUP $MAINPID ; ignore_errors=no ; code=exited ; status=2 }"
	tests := []struct {
		name string
		op   string
		p    systemctl.Properties
		want string
	}{
		{"reload failed", "reload", systemctl.Properties{"Result": "exit-code", "ExecStartPre": oldPre, "ExecReload": reload, "ReloadResult": "exit-code"},
			"ExecReload /bin/kill exited with status 2"},
		{"reload failed, no command status", "reload", systemctl.Properties{"ReloadResult": "timeout"}, "reload failed (timeout)"},
		{"reload fine, old start failure", "reload", systemctl.Properties{"Result": "exit-code", "ExecStartPre": oldPre, "ReloadResult": "success"}, "exit-code"},
		{"start's own ExecStartPre", "start", systemctl.Properties{"Result": "exit-code", "ExecStartPre": oldPre}, "ExecStartPre /bin/false exited with status 1"},
	}
	for _, tt := range tests {
		if got := resultWords(tt.op, tt.p); got != tt.want {
			t.Errorf("%s: resultWords = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestCleanStderr(t *testing.T) {
	in := "Job for a.service failed because the control process exited with error code.\nSee \"systemctl status a.service\" and \"journalctl -xeu a.service\" for details.\n"
	if got := cleanStderr(in); got != "Job for a.service failed because the control process exited with error code." {
		t.Errorf("cleanStderr = %q", got)
	}
}
