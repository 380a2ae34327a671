// Package exec carries out a plan (see discover.Plan): systemctl
// operations from a bounded pool, several units to a call where that
// pays (see sizer), phase by phase; then it proves each unit's outcome
// (an frp tunnel up, a server accepting, a unit active and settled) and
// explains a failure in one line, from the best source (frp's log, the
// unit's own output, systemd's state, systemctl's words). Each unit's
// outcome is a Result, handed to an Observer as it is decided. Where and
// how results are shown (a live line, plain lines, JSON) is package
// report's business, not this one's.
package exec

import (
	"context"
	"sync"

	"golang.org/x/sync/semaphore"
)

// ForEachGroup calls fn for groups of consecutive items [lo, hi), with at
// most limit items in flight at any instant: a group of k holds k of the
// limit's slots from before its goroutine starts until fn returns. size
// says how large the group that begins at item lo may be (capped by limit
// and by the items left); it may wait, and its context ends when
// launching stops. It stops
// launching once launch ends (or ctx), waits for the groups already
// running, and returns how many items were launched (always a prefix).
func ForEachGroup(ctx, launch context.Context, limit, n int, size func(ctx context.Context, lo int) int, fn func(lo, hi int)) int {
	if limit < 1 {
		limit = 1
	}
	sem := semaphore.NewWeighted(int64(limit))
	acquireCtx, cancel := context.WithCancel(launch)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	var wg sync.WaitGroup
	lo := 0
	for lo < n {
		k := min(max(1, size(acquireCtx, lo)), limit, n-lo)
		if acquireCtx.Err() != nil || sem.Acquire(acquireCtx, int64(k)) != nil {
			break
		}
		// Acquire may succeed on a context that ended meanwhile; check
		// again so an interrupt never launches one more operation.
		if acquireCtx.Err() != nil {
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
