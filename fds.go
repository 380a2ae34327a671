package main

import (
	"fmt"
	"syscall"
)

// fdReserve is what an invocation may hold whatever its -j, at the most
// that runs side by side, with some room: the Go runtime's own and the
// lock and job-log files (16); the verifier's frp looks (16, each a
// socket, a log file and a /proc read) and as many idle connections kept
// for the next look (64 in all); its batched state reads and the stamp
// read (a few systemctl calls, 32); and the failed units' logs read at
// once (8, each a journalctl, 64). Discovery, before the run, holds less.
const fdReserve = 16 + 64 + 32 + 64

// fdPerSlot is the most one slot of -j holds at once: a systemctl (or
// frpc verify) call being started holds /dev/null, two pipes, the exec
// status pipe and a pidfd; a tunnel look holds fewer.
const fdPerSlot = 8

// errFewDescriptors is the one-line answer when not even one slot fits;
// its caller adds nothing but the exit code.
type errFewDescriptors struct{ limit, need uint64 }

func (e errFewDescriptors) Error() string {
	return fmt.Sprintf("out of file descriptors (limit %d, and moonfrp-bulk needs at least %d); raise it (ulimit -n, or LimitNOFILE= for a service) and run again", e.limit, e.need)
}

// fdBudget is how many units may be in flight at once under a descriptor
// limit when j were asked for: j when the limit allows it, fewer when it
// does not, and an error when not even one fits. Starting within the
// limit matters beyond a clear message: a Go process that runs out of
// descriptors before its poller exists dies in the runtime, with no
// summary and no job-log record.
func fdBudget(limit uint64, j int) (int, error) {
	if limit < fdReserve+fdPerSlot {
		return 0, errFewDescriptors{limit, fdReserve + fdPerSlot}
	}
	if fit := (limit - fdReserve) / fdPerSlot; fit < uint64(j) {
		return int(fit), nil
	}
	return j, nil
}

// fdFloor says whether this process may start at all: not when not even
// one slot fits its descriptor limit.
func fdFloor() error {
	lim, ok := fdLimit()
	if !ok {
		return nil
	}
	_, err := fdBudget(lim, 1)
	return err
}

// fdLimit is this process's descriptor limit. The Go runtime has already
// raised the soft limit to the hard one, so this is the most it can have.
func fdLimit() (uint64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, false
	}
	return lim.Cur, true
}
