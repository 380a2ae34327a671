package exec

import (
	"bufio"
	"context"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// maxTailBytes bounds how much of a log is read for a failure's reason.
const maxTailBytes = 64 << 10

// maxTailLines is how many log lines a Result keeps.
const maxTailLines = 10

var (
	ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07`)
	// frpc and frps prefix lines with a timestamp, a level and a source
	// position: "2024/05/01 10:00:00 [E] [service.go:295] login failed".
	logPrefixRE = regexp.MustCompile(`^(\d{4}[-/]\d\d[-/]\d\d[ T][0-9:.,]+(Z|[+-]\d\d:?\d\d)?\s+)?(\[[A-Z]\]\s+)?(\[[^\]]*\.go:\d+\]\s+)?`)
)

// StripANSI removes terminal escape sequences.
func StripANSI(s string) string { return ansiRE.ReplaceAllString(s, "") }

// logFiles returns the files a unit writes its output to, from
// StandardOutput= and StandardError= with append:, file: or truncate: in
// its fragment and drop-ins (later ones override earlier ones).
func logFiles(fragment string, dropIns []string, unit string) []string {
	var out, errp string
	for _, f := range append([]string{fragment}, dropIns...) {
		if f == "" {
			continue
		}
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			key, val, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			key, val = strings.TrimSpace(key), strings.TrimSpace(val)
			switch key {
			case "StandardOutput":
				out = fileTarget(val, unit)
			case "StandardError":
				errp = fileTarget(val, unit)
			}
		}
		fh.Close()
	}
	var files []string
	for _, p := range []string{out, errp} {
		if p != "" && (len(files) == 0 || files[0] != p) {
			files = append(files, p)
		}
	}
	return files
}

func fileTarget(val, unit string) string {
	for _, pre := range []string{"append:", "file:", "truncate:"} {
		if strings.HasPrefix(val, pre) {
			p := strings.TrimPrefix(val, pre)
			p = strings.ReplaceAll(p, "%n", unit)
			p = strings.ReplaceAll(p, "%N", strings.TrimSuffix(unit, filepath.Ext(unit)))
			return p
		}
	}
	return ""
}

// fileSize returns the size of path, or -1 when it does not exist.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return st.Size()
}

// readTail returns the meaningful lines written to path since offset: ANSI
// codes stripped, blank lines dropped, at most maxTailLines of the last ones.
func readTail(path string, offset int64) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	if offset < 0 || offset > st.Size() {
		offset = 0 // created or truncated since the operation began
	}
	if st.Size()-offset > maxTailBytes {
		offset = st.Size() - maxTailBytes
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(StripANSI(strings.TrimRight(l, "\r")))
		if l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > maxTailLines {
		lines = lines[len(lines)-maxTailLines:]
	}
	return lines
}

var errorWords = []string{"error", "fail", "refused", "denied", "invalid", "cannot", "can't", "unable", "fatal", "panic", "no such", "not found", "timeout", "timed out"}

// keyLine picks the most telling line of a log tail: the last one that
// reads like an error, else the last one, with frp's prefix removed.
func keyLine(tail []string) string {
	pick := ""
	for i := len(tail) - 1; i >= 0 && pick == ""; i-- {
		low := strings.ToLower(tail[i])
		for _, w := range errorWords {
			if strings.Contains(low, w) {
				pick = tail[i]
				break
			}
		}
	}
	if pick == "" && len(tail) > 0 {
		pick = tail[len(tail)-1]
	}
	return strings.TrimSpace(logPrefixRE.ReplaceAllString(pick, ""))
}

// JournalReader returns a Config.Journal that asks journalctl, or nil when
// no journal runs here (no journald socket), so that nothing is spawned in
// vain. user selects the user's journal, as systemctl --user does.
func JournalReader(user bool) func(ctx context.Context, unit string, since time.Time) []string {
	if _, err := os.Stat("/run/systemd/journal/socket"); err != nil {
		return nil
	}
	path, err := osexec.LookPath("journalctl")
	if err != nil {
		return nil
	}
	return func(ctx context.Context, unit string, since time.Time) []string {
		args := []string{"--no-pager", "-o", "cat", "-n", strconv.Itoa(maxTailLines),
			"--since", "@" + strconv.FormatInt(since.Unix(), 10), "-u", unit}
		if user {
			args = append([]string{"--user"}, args...)
		}
		out, err := osexec.CommandContext(ctx, path, args...).Output()
		if err != nil {
			return nil
		}
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSpace(StripANSI(l)); l != "" && !strings.HasPrefix(l, "-- ") {
				lines = append(lines, l)
			}
		}
		return lines
	}
}
