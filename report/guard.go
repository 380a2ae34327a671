package report

import (
	"errors"
	"io"
	"sync"
)

// ErrHungUp marks a terminal that hung up (SIGHUP: the ssh session that
// held it is gone).
var ErrHungUp = errors.New("the terminal hung up")

// guard is one output stream that may die under the run: a pipe whose
// reader left (EPIPE: `| head -1`), a full disk, a terminal that hung up.
// After the first failed write it writes nothing more and reports
// success, so that a run goes on to its end as if nobody were watching;
// Lost says what was lost.
type guard struct {
	w   io.Writer
	mu  sync.Mutex
	err error
}

func (g *guard) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return len(p), nil
	}
	if _, err := g.w.Write(p); err != nil {
		g.err = err
	}
	return len(p), nil
}

func (g *guard) lose(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.mu.Unlock()
}

func (g *guard) lost() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Guard puts Out and Err behind guards (see guard). System does it for
// the process's own streams.
func (s *Streams) Guard() {
	if _, ok := s.Out.(*guard); !ok {
		s.Out = &guard{w: s.Out}
	}
	if _, ok := s.Err.(*guard); !ok {
		s.Err = &guard{w: s.Err}
	}
}

// HangUp stops writing to the streams that are the terminal that hung
// up: whatever would reach it is lost.
func (s *Streams) HangUp() {
	if g, ok := s.Out.(*guard); ok && s.OutTTY {
		g.lose(ErrHungUp)
	}
	if g, ok := s.Err.(*guard); ok && s.ErrTTY {
		g.lose(ErrHungUp)
	}
}

// Lost returns why Out, and why Err, could not be written to (nil when
// it could, or is not guarded).
func (s *Streams) Lost() (out, err error) {
	if g, ok := s.Out.(*guard); ok {
		out = g.lost()
	}
	if g, ok := s.Err.(*guard); ok {
		err = g.lost()
	}
	return out, err
}
