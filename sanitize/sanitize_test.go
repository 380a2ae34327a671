package sanitize

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLine(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"plain", "login to server failed: EOF", "login to server failed: EOF"},
		{"tab kept", "a\tb", "a\tb"},
		{"colour", "\x1b[1;31m[E]\x1b[0m boom", "[E] boom"},
		{"osc title BEL", "x\x1b]0;pwned\x07y", "xy"},
		{"osc ST", "x\x1b]52;c;aGVsbG8=\x1b\\y", "xy"},
		{"osc ST then later BEL keeps text", "a\x1b]8;;http://e\x1b\\link\x1b]8;;\x1b\\ b\x07c", "alink bc"},
		{"osc unterminated", "a\x1b]0;title", "a"},
		{"reset", "a\x1bcb", "ab"},
		{"charset", "a\x1b(0b", "ab"},
		{"dcs", "a\x1bPq#0;2;0;0;0\x1b\\b", "ab"},
		{"apc", "a\x1b_hidden\x1b\\b", "ab"},
		{"c1 csi rune", "a\u009b31mb", "ab"},
		{"c1 osc rune", "a\u009d0;t\u009cb", "ab"},
		{"raw 0x9b byte", "a\x9b31mb", "a\ufffd31mb"},
		{"backspace and nul", "ab\b\x00c", "abc"},
		{"newline to space", "a\nb\r\nc", "a b c"},
		{"invalid utf8", "a\xffb", "a\ufffdb"},
		{"bidi override", "a\u202eb", "ab"},
		{"unicode kept", "ترافیک ok ✓", "ترافیک ok ✓"},
		{"del", "a\x7fb", "ab"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Line(c.in); got != c.want {
				t.Errorf("Line(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestTextKeepsNewlines(t *testing.T) {
	if got := Text("a\r\nb\rc\x1b[2Jd\n"); got != "a\nb\ncd\n" {
		t.Errorf("Text = %q", got)
	}
}

func checkClean(t *testing.T, in, out string, keepNL bool) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("output of %q is not valid UTF-8: %q", in, out)
	}
	for _, r := range out {
		bad := (r < 0x20 && r != '\t' && !(keepNL && r == '\n')) || r == 0x7f || (r >= 0x80 && r <= 0x9f) || isBidi(r)
		if bad {
			t.Fatalf("output of %q holds control %U: %q", in, r, out)
		}
	}
	if strings.ContainsRune(out, 0x1b) {
		t.Fatalf("output of %q holds ESC", in)
	}
}

func FuzzLine(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1b[31mred", "\x1b]0;t\x07", "\x1b]52;c;x\x1b\\", "\u009b1m", "\x9b\xff", "\x1bP\x1b\\", "a\rb\nc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkClean(t, in, Line(in), false)
		checkClean(t, in, Text(in), true)
		if Line(Line(in)) != Line(in) {
			t.Fatalf("Line is not idempotent on %q", in)
		}
	})
}
