package exec

import "golang.org/x/sys/unix"

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
