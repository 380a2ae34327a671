//go:build tools

// Package frpbuild pins the real frp that the integration tests, the demo
// and the benchmark run. It is its own module, so that frp's dependencies
// never enter moonfrp-bulk's. Build it with tests/sandbox.FRP (or
// `make frp`); `go install pkg@version` is refused by the proxy here.
package frpbuild

import (
	_ "github.com/fatedier/frp/cmd/frpc"
	_ "github.com/fatedier/frp/cmd/frps"
)
