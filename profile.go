//go:build profile

package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// A build with -tags profile writes a CPU profile of the whole run to
// $MOONFRP_BULK_CPUPROFILE, a file it creates (see BENCHMARKS.md, "Where
// the CPU goes"). A forced exit at the second interrupt writes none.
// Release builds have no such hook: a root tool must not write files
// where the environment says.
func init() {
	path := os.Getenv("MOONFRP_BULK_CPUPROFILE")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL, 0o600)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "moonfrp-bulk: cpu profile: %v\n", err)
	}
}

// stopProfile flushes the CPU profile before the process exits.
func stopProfile() { pprof.StopCPUProfile() }
