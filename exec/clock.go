package exec

import (
	"syscall"
	"unsafe"
)

// monotonicMicros reads CLOCK_MONOTONIC in microseconds: the clock behind
// systemd's *TimestampMonotonic properties, so the two can be compared.
// Go's own monotonic reading has an unspecified origin.
func monotonicMicros() uint64 {
	const clockMonotonic = 1
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}
