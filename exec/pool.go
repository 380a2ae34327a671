// Package exec carries out a plan (see discover.Plan): one systemctl
// operation per unit from a bounded pool of goroutines, phase by phase;
// then it proves each unit's outcome (an frp tunnel up, a server
// accepting, a unit active and settled) and explains a failure in one
// line, from the best source (frp's log, the unit's own output, systemd's
// state, systemctl's words). Each unit's outcome is a Result, handed to an
// Observer as it is decided. Where and how results are shown (a live line,
// plain lines, JSON) is package report's business, not this one's.
package exec

import (
	"context"
	"sync"

	"golang.org/x/sync/semaphore"
)

// ForEach calls fn for each item, with at most limit calls running at any
// instant. A slot is taken before the goroutine is spawned and handed back
// the moment fn returns, so no goroutine queues and no polling is involved.
// ForEach stops launching once drain or halt is closed (either may be
// nil) or ctx is done, waits for the calls already running, and returns
// how many items were launched (always a prefix of items).
func ForEach(ctx context.Context, drain, halt <-chan struct{}, limit int, items []string, fn func(i int, item string)) int {
	if limit < 1 {
		limit = 1
	}
	sem := semaphore.NewWeighted(int64(limit))
	// acquireCtx ends when either ctx ends or drain closes, so a blocked
	// Acquire wakes for an interrupt.
	acquireCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-drain:
			cancel()
		case <-halt:
			cancel()
		case <-acquireCtx.Done():
		}
	}()
	var wg sync.WaitGroup
	launched := 0
	stopped := func() bool {
		select {
		case <-drain:
			return true
		case <-halt:
			return true
		default:
			return acquireCtx.Err() != nil
		}
	}
	for i, item := range items {
		if stopped() || sem.Acquire(acquireCtx, 1) != nil {
			break
		}
		// Acquire may succeed on a context that ended meanwhile; check
		// again so an interrupt never launches one more operation.
		if stopped() {
			sem.Release(1)
			break
		}
		launched++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sem.Release(1)
			fn(i, item)
		}()
	}
	wg.Wait()
	return launched
}
