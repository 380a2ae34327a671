// Package report decides what people and programs see: a live progress
// line on a terminal, plain lines in logs, JSON lines for jq. It is the only
// package that asks whether a stream is a terminal.
package report

import (
	"io"
	"os"
	"strconv"

	"github.com/mattn/go-isatty"
	"golang.org/x/sys/unix"
)

// Streams owns the output streams and knows what they are.
type Streams struct {
	Out io.Writer // results: JSON lines, list, plan
	Err io.Writer // people: progress, summary, warnings
	// ErrTTY is true when Err is a terminal; it allows the live line.
	ErrTTY bool
	// NoColor turns colour off even on a terminal (NO_COLOR).
	NoColor bool
	// Width is the terminal width in columns, 0 when unknown.
	Width int
}

// System returns the process's streams, with terminals detected once.
func System() *Streams {
	s := &Streams{Out: os.Stdout, Err: os.Stderr}
	fd := os.Stderr.Fd()
	s.ErrTTY = isatty.IsTerminal(fd) || isatty.IsCygwinTerminal(fd)
	_, s.NoColor = os.LookupEnv("NO_COLOR")
	if s.ErrTTY {
		s.Width = termWidth(fd)
	}
	if s.Width == 0 {
		s.Width, _ = strconv.Atoi(os.Getenv("COLUMNS"))
	}
	return s
}

// Color reports whether escape codes for colour may be written to Err.
func (s *Streams) Color() bool { return s.ErrTTY && !s.NoColor }

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
