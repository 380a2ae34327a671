package exec

import (
	"context"
	"sync"
	"time"

	"github.com/moonfrp/moonfrp-bulk/systemctl"
)

// stateWindow is how long a state read waits for others to share its
// systemctl call. Units finish their operations at different instants; a
// read that waits this long serves every unit that asks meanwhile, so a
// run makes about one `systemctl show` per window instead of one per unit.
const stateWindow = 50 * time.Millisecond

// While operations are still being launched, every show competes with
// them: each one is a systemctl process (about 40 ms of CPU here) and a
// connection on the manager's one thread, on a machine whose CPUs the
// operations already keep busy. So reads wait longer then, by what they
// are for:
//   - busyWindow for reads that someone is waiting on: a failed
//     operation's explanation (failures show as they happen), a tunnel's
//     crash check (its proof is timed);
//   - lazyWindow for verdicts on units whose operation succeeded. A unit
//     must then stay up, without a restart, from its operation's end (on
//     systemd's own clock) until the read: at least the settle window,
//     and up to lazyWindow more while operations are launched. Waiting
//     makes the check no laxer, and costs the operator only the moment
//     the verdict shows.
//
// Measured on 500 instant units at -j 10 (BENCHMARKS.md): a 250 ms window
// made 62 shows during the run; 2 s makes about ten. maxBatch bounds one
// show (about 1 ms of the manager's time per unit).
const (
	busyWindow = 250 * time.Millisecond
	lazyWindow = 2 * time.Second
	maxBatch   = 200
)

// states coalesces reads of unit state into batched `systemctl show`
// calls. A read waits at most its window (see above) while operations are
// still launched, stateWindow after, and none at all once every unit still
// being verified is waiting for a read and no operation can add more.
type states struct {
	ctx context.Context
	r   systemctl.Runner

	mu      sync.Mutex
	pending []stateReq
	timer   *time.Timer
	due     time.Time // when the pending reads go, at the latest
	active  int       // units being verified
	closed  bool      // no more units will come
	// prompt and lazy are the windows while operations are launched.
	prompt, lazy time.Duration
}

type stateReq struct {
	unit  string
	reply chan stateAns
}

type stateAns struct {
	p   systemctl.Properties
	err error
}

// newStates coalesces reads; prompt and lazy are the windows of the two
// kinds of read while operations are still launched.
func newStates(ctx context.Context, r systemctl.Runner, prompt, lazy time.Duration) *states {
	return &states{ctx: ctx, r: r, prompt: prompt, lazy: lazy}
}

// join and leave count the units being verified.
func (s *states) join() {
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
}

func (s *states) leave() {
	s.mu.Lock()
	s.active--
	s.flushIfAllWaiting()
	s.mu.Unlock()
}

// close says that no more units will join.
func (s *states) close() {
	s.mu.Lock()
	s.closed = true
	if len(s.pending) > 0 {
		// Reads waiting for company while operations were launched
		// need wait no longer than any read from now on.
		s.flushWithin(stateWindow)
	}
	s.flushIfAllWaiting()
	s.mu.Unlock()
}

// read returns unit's state properties (stateProps). A prompt read is
// one that something is waiting on (see busyWindow).
func (s *states) read(unit string, prompt bool) (systemctl.Properties, error) {
	ch := make(chan stateAns, 1)
	s.mu.Lock()
	s.pending = append(s.pending, stateReq{unit, ch})
	window := stateWindow
	if !s.closed {
		window = max(s.lazy, stateWindow)
		if prompt {
			window = max(s.prompt, stateWindow)
		}
	}
	s.flushWithin(window)
	if len(s.pending) >= maxBatch {
		s.flushLocked()
	}
	s.flushIfAllWaiting()
	s.mu.Unlock()
	select {
	case a := <-ch:
		return a.p, a.err
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

// flushWithin makes the pending reads go within window at the latest.
// Callers hold s.mu.
func (s *states) flushWithin(window time.Duration) {
	due := time.Now().Add(window)
	if s.timer != nil && !due.Before(s.due) {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.due = due
	s.timer = time.AfterFunc(window, func() {
		s.mu.Lock()
		if !time.Now().Before(s.due) {
			s.flushLocked()
		}
		s.mu.Unlock()
	})
}

// flushIfAllWaiting flushes at once when nobody else can join the batch.
// Callers hold s.mu.
func (s *states) flushIfAllWaiting() {
	if s.closed && len(s.pending) > 0 && len(s.pending) >= s.active {
		s.flushLocked()
	}
}

// flushLocked sends the pending reads off in one call, outside the lock.
func (s *states) flushLocked() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	batch := s.pending
	s.pending = nil
	if len(batch) == 0 {
		return
	}
	go func() {
		names := make([]string, len(batch))
		for i, q := range batch {
			names[i] = q.unit
		}
		props, err := showUnits(s.ctx, s.r, stateProps, names)
		for i, q := range batch {
			if err != nil {
				q.reply <- stateAns{err: err}
				continue
			}
			q.reply <- stateAns{p: props[i]}
		}
	}()
}

// showUnits is systemctl.Show.
func showUnits(ctx context.Context, r systemctl.Runner, props string, names []string) ([]systemctl.Properties, error) {
	return systemctl.Show(ctx, r, props, names)
}
