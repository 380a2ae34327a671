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

// busyWindow is the wait while operations are still being launched. Then
// every show competes with them for the manager's one thread, and a read
// that waits longer costs nothing: the settle window that follows is
// measured from the operation's end on systemd's own clock, not from the
// read.
const busyWindow = 250 * time.Millisecond

// states coalesces reads of unit state into batched `systemctl show`
// calls. A read waits at most the busy window while operations are still
// launched, stateWindow after, and none at all once every unit still being
// verified is waiting for a read and no operation can add more.
type states struct {
	ctx context.Context
	r   systemctl.Runner

	mu      sync.Mutex
	pending []stateReq
	timer   *time.Timer
	active  int  // units being verified
	closed  bool // no more units will come
	// busy is the window while operations are launched (see busyWindow).
	busy time.Duration
}

type stateReq struct {
	unit  string
	reply chan stateAns
}

type stateAns struct {
	p   systemctl.Properties
	err error
}

// newStates coalesces reads; busy is the window while operations are
// still launched (stateWindow where a verdict holds up the next launch).
func newStates(ctx context.Context, r systemctl.Runner, busy time.Duration) *states {
	return &states{ctx: ctx, r: r, busy: busy}
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
	s.flushIfAllWaiting()
	s.mu.Unlock()
}

// read returns unit's state properties (stateProps).
func (s *states) read(unit string) (systemctl.Properties, error) {
	ch := make(chan stateAns, 1)
	s.mu.Lock()
	s.pending = append(s.pending, stateReq{unit, ch})
	if s.timer == nil {
		window := stateWindow
		if !s.closed {
			window = max(s.busy, stateWindow)
		}
		s.timer = time.AfterFunc(window, func() {
			s.mu.Lock()
			s.flushLocked()
			s.mu.Unlock()
		})
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
