package exec

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/moonfrp/moonfrp-bulk/safefile"
	"github.com/moonfrp/moonfrp-bulk/sanitize"
	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// maxTailBytes bounds how much of a log is read for a failure's reason.
const maxTailBytes = 64 << 10

// maxTailLines is how many log lines a Result keeps.
const maxTailLines = 10

// maxUnitFileBytes bounds a read of a unit file or drop-in.
const maxUnitFileBytes = 4 << 20

// logPrefixRE matches frp's line prefix: "2024/05/01 10:00:00 [E]
// [service.go:295] ": a timestamp, a level and a source position.
var logPrefixRE = regexp.MustCompile(`^(\d{4}[-/]\d\d[-/]\d\d[ T][0-9:.,]+(Z|[+-]\d\d:?\d\d)?\s+)?(\[[A-Z]\]\s+)?(\[[^\]]*\.go:\d+\]\s+)?`)

// logFiles returns the files a unit writes its output to, from
// StandardOutput= and StandardError= with append:, file: or truncate: in
// its fragment and drop-ins (later ones override earlier ones). Unit
// files are read whole (bounded), so a very long line hides nothing.
func logFiles(fragment string, dropIns []string, unit string, opt safefile.Options) []string {
	var out, errp string
	for _, f := range append([]string{fragment}, dropIns...) {
		if f == "" {
			continue
		}
		data, err := safefile.ReadFile(f, maxUnitFileBytes, opt)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			key, val, ok := strings.Cut(strings.TrimSpace(line), "=")
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
		if p, ok := strings.CutPrefix(val, pre); ok {
			return expandSpecifiers(p, unit)
		}
	}
	return ""
}

// expandSpecifiers expands the systemd specifiers that name a unit in a
// path: %n (full name), %N (without suffix), %p (prefix before @), %i and
// %I (instance, escaped and unescaped), and %% (a literal %).
func expandSpecifiers(p, unit string) string {
	full := strings.TrimSuffix(unit, filepath.Ext(unit))
	prefix, instance, _ := strings.Cut(full, "@")
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+1 == len(p) {
			b.WriteByte(p[i])
			continue
		}
		i++
		switch p[i] {
		case 'n':
			b.WriteString(unit)
		case 'N':
			b.WriteString(full)
		case 'p':
			b.WriteString(prefix)
		case 'P':
			b.WriteString(unescape(prefix))
		case 'i':
			b.WriteString(instance)
		case 'I':
			b.WriteString(unescape(instance))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(p[i])
		}
	}
	return b.String()
}

// unescape undoes systemd's unit-name escaping: "-" is "/", "\xNN" a byte.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '-':
			b.WriteByte('/')
		case s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x':
			if n, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// readTail returns the meaningful lines written to path since offset:
// sanitised, blank lines dropped, at most maxTailLines of the last ones.
// A file that is refused (a symlink, not a regular file, a foreign owner)
// yields a note that says so instead of lines.
func readTail(path string, offset int64, opt safefile.Options) (lines []string, note string) {
	f, err := safefile.Open(path, opt)
	if err != nil {
		if errors.Is(err, safefile.ErrRefused) {
			return nil, "log " + sanitize.Line(err.Error())
		}
		return nil, ""
	}
	defer f.Close()
	data, err := f.ReadFrom(offset, maxTailBytes)
	if err != nil {
		return nil, ""
	}
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(sanitize.Line(l)); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > maxTailLines {
		lines = lines[len(lines)-maxTailLines:]
	}
	return lines, ""
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

// JournalReader returns a Config.Journal that reads a unit's journal
// through j (the same seam as systemctl, so unit tests can fake it), or nil
// when no journal runs here, so that nothing is spawned in vain.
func JournalReader(j systemctl.Journaler, user bool) func(ctx context.Context, unit string, since time.Time) []string {
	if j == nil || !j.HasJournal() {
		return nil
	}
	return func(ctx context.Context, unit string, since time.Time) []string {
		// Only what the unit's own processes wrote: -u would add systemd's
		// lines about the unit ("Failed with result ..."), which say less.
		field := "_SYSTEMD_UNIT="
		if user {
			field = "_SYSTEMD_USER_UNIT="
		}
		out, err := j.Journal(ctx, "--no-pager", "-o", "cat", "-n", strconv.Itoa(maxTailLines),
			"--since", "@"+strconv.FormatInt(since.Unix(), 10), field+unit)
		if err != nil || out.ExitCode != 0 {
			return nil
		}
		var lines []string
		for _, l := range strings.Split(string(out.Stdout), "\n") {
			if l = strings.TrimSpace(sanitize.Line(l)); l != "" && !strings.HasPrefix(l, "-- ") {
				lines = append(lines, l)
			}
		}
		return lines
	}
}

// fileSize returns the size of path, or -1 when it does not exist or is
// refused: the offset from which a later read starts.
func fileSize(path string, opt safefile.Options) int64 { return safefile.Size(path, opt) }
