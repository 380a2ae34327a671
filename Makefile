# moonfrp-bulk: build, demo, test, bench. `make test` installs what it needs.
GO          ?= go
BIN         := bin/moonfrp-bulk
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOBIN       := $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(GOBIN)/staticcheck
STATICCHECK_VERSION := v0.8.2
# Debian packages the tests use: jq for the README recipes (and, with
# curl, the benchmark's dashboard polling), bats and
# shellcheck for the bash shim, tmux for the menu tests, debootstrap and
# systemd-container (systemd-nspawn) for the booted hosts of the
# production-path tests.
# Each is COMMAND:PACKAGE.
DEB_TOOLS   := jq:jq curl:curl bats:bats shellcheck:shellcheck tmux:tmux debootstrap:debootstrap systemd-nspawn:systemd-container
# The fleet tests' Ansible engine and the sshd its "hosts" are reached by;
# without recommends (they would pull in every Ansible collection).
DEB_TOOLS_BARE := ansible-playbook:ansible-core /usr/sbin/sshd:openssh-server file:file
# GoReleaser, pinned in tools/release, built once into a cache: `go
# install pkg@version` is refused here.
GORELEASER_VERSION := v2.15.1
TOOLS_CACHE ?= $(if $(filter 0,$(shell id -u)),/var/cache/moonfrp-bulk,$(HOME)/.cache/moonfrp-bulk)
GORELEASER  := $(TOOLS_CACHE)/goreleaser-$(GORELEASER_VERSION)

.PHONY: all build demo test deps vet staticcheck lint unit integration bench bench-quick release clean

all: build

# Static, as the release builds it, so that it also runs in the booted
# hosts of the tests and the benchmark.
build:
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) .

demo: build
	$(GO) run ./tests/demo -bin $(BIN)

test: deps vet staticcheck lint unit release integration

deps:
	@missing=""; for t in $(DEB_TOOLS); do command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; done; \
	bare=""; for t in $(DEB_TOOLS_BARE); do command -v $${t%%:*} >/dev/null 2>&1 || bare="$$bare $${t#*:}"; done; \
	if [ -n "$$missing$$bare" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "make: missing$$missing$$bare; install them (apt-get install$$missing$$bare) or run as root" >&2; exit 1; fi; \
		echo "installing$$missing$$bare"; \
		apt-get update -qq; \
		if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; fi; \
		if [ -n "$$bare" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$bare >/dev/null || exit 1; fi; \
	fi
	@test -x $(STATICCHECK) || { echo "installing staticcheck $(STATICCHECK_VERSION)"; $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); }

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

staticcheck:
	$(STATICCHECK) ./...

lint:
	shellcheck -x bash/*.sh tests/bash/*.sh tests/bash/*.bats tests/moonfrp/*.sh tests/moonfrp/moonfrp

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /tests)
	# The packages that share state between goroutines, under the race detector.
	$(GO) test -race -count=1 . ./exec ./discover ./systemctl ./lock ./report
	$(GO) test -run '^$$' -fuzz '^FuzzLine$$' -fuzztime 10s ./sanitize
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 10s ./frp

# The integration tests need root: they start real systemd user managers.
integration:
	$(GO) test -count=1 -p 1 -timeout 30m ./tests/...

bench: build
	@command -v gnuplot >/dev/null 2>&1 || { echo "installing gnuplot-nox"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null; }
	$(GO) run ./tests/bench -bin $(BIN)

bench-quick: build
	$(GO) run ./tests/bench -bin $(BIN) -quick

# Static binaries for linux amd64, arm64 and armv7, their tarballs, .debs
# and SHA256SUMS in dist/: a GoReleaser snapshot, offline (GOPROXY=off:
# the modules come from the cache that the build filled).
release: build $(GORELEASER)
	GOPROXY=off GOFLAGS=-mod=mod $(GORELEASER) release --snapshot --clean --skip=publish

$(GORELEASER):
	@echo "building GoReleaser $(GORELEASER_VERSION) into $(TOOLS_CACHE) (once)"
	@mkdir -p $(TOOLS_CACHE)
	cd tools/release && $(GO) build -o $(GORELEASER).tmp github.com/goreleaser/goreleaser/v2 && mv $(GORELEASER).tmp $(GORELEASER)

clean:
	rm -rf bin dist build
