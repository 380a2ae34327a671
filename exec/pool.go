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

// ForEachGroup calls fn for groups of consecutive items [lo, hi), with at
// most limit items in flight at any instant: a group of k holds k of the
// limit's slots from before its goroutine starts until fn returns. size
// says how large the next group may be (capped by limit and by the items
// left); it may wait, and its context ends when launching stops. It stops
// launching once drain or halt is closed (either may be nil) or ctx is
// done, waits for the groups already running, and returns how many items
// were launched (always a prefix).
func ForEachGroup(ctx context.Context, drain, halt <-chan struct{}, limit, n int, size func(context.Context) int, fn func(lo, hi int)) int {
	if limit < 1 {
		limit = 1
	}
	sem := semaphore.NewWeighted(int64(limit))
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
	var wg sync.WaitGroup
	lo := 0
	for lo < n {
		k := min(max(1, size(acquireCtx)), limit, n-lo)
		if stopped() || sem.Acquire(acquireCtx, int64(k)) != nil {
			break
		}
		// Acquire may succeed on a context that ended meanwhile; check
		// again so an interrupt never launches one more operation.
		if stopped() {
			sem.Release(int64(k))
			break
		}
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			defer sem.Release(int64(hi - lo))
			fn(lo, hi)
		}(lo, lo+k)
		lo += k
	}
	wg.Wait()
	return lo
}

// ForEach calls fn for each item, with at most limit calls running at any
// instant. A slot is taken before the goroutine is spawned and handed back
// the moment fn returns, so no goroutine queues and no polling is involved.
// ForEach stops launching once drain or halt is closed (either may be
// nil) or ctx is done, waits for the calls already running, and returns
// how many items were launched (always a prefix of items).
func ForEach(ctx context.Context, drain, halt <-chan struct{}, limit int, items []string, fn func(i int, item string)) int {
	one := func(context.Context) int { return 1 }
	return ForEachGroup(ctx, drain, halt, limit, len(items), one, func(lo, _ int) { fn(lo, items[lo]) })
}
