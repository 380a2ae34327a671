// Package report decides what people and programs see: a live progress
// line on a terminal, plain lines in logs, JSON lines for jq. It is the only
// package that asks whether a stream is a terminal.
package report

import (
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/mattn/go-isatty"
	"golang.org/x/sys/unix"
)

// Streams owns the output streams and knows what they are.
type Streams struct {
	Out io.Writer // results: JSON lines, list, plan
	Err io.Writer // people: progress, summary, warnings
	// ErrTTY is true when Err is a terminal; it allows the live line.
	ErrTTY bool
	// OutTTY is true when Out is a terminal too: when it is not, and it
	// carries JSON for a program, the live line stays off, since both
	// would share the terminal and garble each other (gh's rule).
	OutTTY bool
	// OutFile is true when Out is a regular file or /dev/null: JSON going
	// there cannot reach the terminal, so the live line may stay.
	OutFile bool
	// NoColor turns colour off even on a terminal: NO_COLOR set and not
	// empty, or TERM=dumb. ForceColor (CLICOLOR_FORCE set and not "0")
	// turns it on even where Err is not a terminal.
	NoColor    bool
	ForceColor bool
	// Dumb is TERM=dumb: a terminal that cannot redraw a line in place.
	Dumb bool
	// Quiet keeps only failures, warnings and the summary (-q).
	Quiet bool
	// Width is the terminal width in columns, 0 when unknown: as read at
	// start, or as set by a test. Cols reads it afresh.
	Width int
	// Reflows is true for a terminal known to re-wrap lines when its
	// window narrows (tmux, VTE, kitty, iTerm2, WezTerm, VS Code):
	// a redraw then clears the rows the old line now covers. Others
	// (xterm, the Linux console, screen) cut the line instead, and the
	// rows above it are not the line's to clear.
	Reflows bool
	// errFD is Err's descriptor, for Cols, when hasFD (Err is the
	// process's terminal).
	errFD uintptr
	hasFD bool
}

// System returns the process's streams, with terminals detected once.
func System() *Streams {
	s := &Streams{Out: os.Stdout, Err: os.Stderr}
	fd := os.Stderr.Fd()
	s.ErrTTY = isatty.IsTerminal(fd) || isatty.IsCygwinTerminal(fd)
	ofd := os.Stdout.Fd()
	s.OutTTY = isatty.IsTerminal(ofd) || isatty.IsCygwinTerminal(ofd)
	s.OutFile = !s.OutTTY && isFileOrNull(int(ofd))
	s.Dumb = os.Getenv("TERM") == "dumb"
	s.Reflows = reflowingTerminal()
	s.NoColor = os.Getenv("NO_COLOR") != "" || s.Dumb
	if v, ok := os.LookupEnv("CLICOLOR_FORCE"); ok && v != "" && v != "0" {
		s.ForceColor = true
	}
	if s.ErrTTY {
		s.errFD, s.hasFD = fd, true
		s.Width = termWidth(fd)
	}
	if s.Width == 0 {
		s.Width, _ = strconv.Atoi(os.Getenv("COLUMNS"))
	}
	s.Guard()
	return s
}

// Color reports whether escape codes for colour may be written to Err.
func (s *Streams) Color() bool { return s.ForceColor || (s.ErrTTY && !s.NoColor) }

// Live reports whether a live progress line may be drawn on Err for a run
// in mode: Err is a terminal that can redraw a line, and Out is not
// carrying JSON to a program behind that same terminal.
func (s *Streams) Live(mode Mode) bool {
	return mode != Text && s.ErrTTY && !s.Dumb && !s.Quiet && (mode != JSON || s.OutTTY || s.OutFile)
}

// Lines reports whether a run in mode prints a plain progress line per
// unit on Err (when it draws no live line). Not when JSON goes through a
// pipe to a program that shares Err's terminal (`-o json | jq`): the JSON
// already carries each result, and the two would interleave on screen.
func (s *Streams) Lines(mode Mode) bool {
	return !s.Quiet && !s.Shared(mode)
}

// Shared reports whether Err is a terminal that a program reading the
// JSON on Out writes to as well (`-o json | jq` at a prompt). Its output
// comes in pieces, at times of its choosing: any line of ours may land in
// the middle of one of its lines. Then Err carries only warnings and
// errors; the summary is the last JSON event.
func (s *Streams) Shared(mode Mode) bool {
	return mode == JSON && s.ErrTTY && !s.OutTTY && !s.OutFile
}

// reflowingTerminal guesses, from what terminals put in the environment,
// whether this one re-wraps lines on resize.
func reflowingTerminal() bool {
	term := os.Getenv("TERM")
	switch {
	case os.Getenv("TMUX") != "", strings.HasPrefix(term, "tmux"), os.Getenv("VTE_VERSION") != "", term == "xterm-kitty":
		return true
	}
	switch os.Getenv("TERM_PROGRAM") {
	case "iTerm.app", "WezTerm", "vscode", "tmux":
		return true
	}
	return false
}

// isFileOrNull reports whether fd is a regular file or /dev/null.
func isFileOrNull(fd int) bool {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return false
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		return true
	}
	var null unix.Stat_t
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Stat("/dev/null", &null) == nil && st.Rdev == null.Rdev
}

// Cols is Err's width in columns now (the window may have been resized
// since the start), else Width.
func (s *Streams) Cols() int {
	if s.hasFD {
		if w := termWidth(s.errFD); w > 0 {
			return w
		}
	}
	return s.Width
}

func termWidth(fd uintptr) int {
	ws, err := unix.IoctlGetWinsize(int(fd), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}

func (s *Streams) paint(code, text string) string {
	if !s.Color() {
		return text
	}
	return "\x1b[" + code + "m" + text + "\x1b[0m"
}

func (s *Streams) red(t string) string   { return s.paint("31", t) }
func (s *Streams) green(t string) string { return s.paint("32", t) }
func (s *Streams) bold(t string) string  { return s.paint("1", t) }
