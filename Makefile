# keydesk — the two set-up commands are `make run` and `make test`.
# Each installs the system packages it needs, starts the services it needs
# (a private pcscd, PostgreSQL, a Secret Service) and stops them afterwards.

SHELL   := /bin/bash
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/keydesk/keydesk/internal/buildinfo.Version=$(VERSION) \
           -X github.com/keydesk/keydesk/internal/buildinfo.Commit=$(COMMIT)
BIN     := bin

.PHONY: all deps build run test bench fuzz vet clean package package-check cross

all: build

deps:
	@packaging/install-deps.sh --quiet

build: deps
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

## run: start keydesk with practice-mode virtual keys (Ctrl-C stops everything it started)
run: build
	$(BIN)/keydesk-sim run

## test: every test, on a fresh Debian/Ubuntu machine
test: deps
	$(GO) vet ./...
	packaging/with-services.sh $(GO) test -count=1 -timeout 45m ./...

## bench: benchmarks through the real stacks; figures go in docs/
bench: deps
	GO=$(GO) packaging/with-services.sh packaging/bench.sh

vet:
	$(GO) vet ./...

## package: the .debs and the fyne tarball in dist/ (packaging/build-packages.sh)
package: deps
	GO=$(GO) LDFLAGS="$(LDFLAGS)" packaging/build-packages.sh

## package-check: lintian, then install both .debs into a clean Debian 12 root
## (debootstrap; root and network needed; minutes on the first run)
package-check: package
	@packaging/install-deps.sh --packaging --quiet
	packaging/check-debs.sh

## cross: what cross-compiles here for Windows and macOS (packaging/cross.sh)
cross: deps
	@packaging/install-deps.sh --cross --quiet
	GO=$(GO) LDFLAGS="$(LDFLAGS)" packaging/cross.sh

clean:
	rm -rf $(BIN) dist
