package exec

import (
	"context"
	"time"

	"golang.org/x/sys/unix"
)

// sleep waits d, or until ctx ends: false then.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// monotonicMicros reads CLOCK_MONOTONIC in microseconds: the clock behind
// systemd's *TimestampMonotonic properties, so the two can be compared.
// Go's own monotonic reading has an unspecified origin.
func monotonicMicros() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}
