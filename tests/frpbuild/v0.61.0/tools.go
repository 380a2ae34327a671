//go:build tools

// Package frpbuild pins frp v0.61.0, one of the releases that the integration
// tests, the demo and the benchmark run (see tests/sandbox.FRPVersions).
// It is its own module, so that frp's dependencies never enter
// moonfrp-bulk's. Build it with tests/sandbox.FRPOf; `go install
// pkg@version` is refused by the proxy here.
package frpbuild

import (
	_ "github.com/fatedier/frp/cmd/frpc"
	_ "github.com/fatedier/frp/cmd/frps"
)
