//go:build tools

// Package release pins GoReleaser, which `make release` builds from the Go
// module proxy into a cache (go install pkg@version is refused here).
package release

import _ "github.com/goreleaser/goreleaser/v2"
