# keydesk — the two set-up commands are `make run` and `make test`.
# Each installs the system packages it needs, starts the services it needs
# (a private pcscd, PostgreSQL, a Secret Service) and stops them afterwards.

SHELL   := /bin/bash
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
# --version prints "PROGRAM VERSION (commit COMMIT)": VERSION is the release
# tag (v1.2.3 gives 1.2.3, with -N-gHASH after it), "dev" before the first
# tag; COMMIT gains -dirty when the tree has uncommitted changes. `make
# package` stamps the Debian package version instead.
VERSION ?= $(or $(patsubst v%,%,$(shell git describe --tags --match 'v[0-9]*' 2>/dev/null)),dev)
COMMIT  ?= $(or $(shell git rev-parse --short=7 HEAD 2>/dev/null),unknown)$(shell git rev-parse -q HEAD >/dev/null 2>&1 && { git diff --quiet HEAD -- || echo -dirty; })
LDFLAGS := -X github.com/keydesk/keydesk/internal/buildinfo.Version=$(VERSION) \
           -X github.com/keydesk/keydesk/internal/buildinfo.Commit=$(COMMIT)
BIN     := bin
# Fyne's colour emoji font (4 MB, parsed again for every text style) stays
# out of keydesk: 14 MB less resident memory in the desktop app
# (docs/desktop-app.md). Exported, so tests, benchmarks and packages build
# what `make build` builds.
export GOFLAGS += -tags=no_emoji

.PHONY: all deps build run test test-race bench bench-cli bench-desktop bench-registry drill fuzz vet cross-vet clean package package-check fresh-check cross cross-check msi

all: build

deps:
	@packaging/install-deps.sh --quiet

build: deps
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

## run: start the desktop app; with no YubiKey attached it runs on two
## practice-mode virtual keys (marked VIRTUAL) and an embedded registry
run: build
	KEYDESK_PRACTICE=auto $(BIN)/keydesk

## test: every test, on a fresh Debian/Ubuntu machine, then the desktop
## app's tests again under the race detector (test-race)
test: deps
	@packaging/install-deps.sh --cross --quiet
	$(GO) vet ./...
	GO=$(GO) packaging/cross-vet.sh
	packaging/with-services.sh $(GO) test -count=1 -timeout 45m ./...
	$(TEST_RACE)

## test-race: the desktop app's tests (./app/ui/...) under the race
## detector. Fyne's headless test driver runs fyne.Do's function at once on
## the calling goroutine, so a widget touched from background work without
## the UI lock (uikit.Do) fails here with a DATA RACE (docs/desktop-app.md)
test-race: deps
	$(TEST_RACE)

# The race build of Fyne and the rest comes first, on its own: on a cold
# cache it would otherwise compile beside the first packages' tests and
# starve their timing checks (a change shown on Keys within 1 s).
TEST_RACE = $(GO) build -race ./app/ui/... && packaging/with-services.sh $(GO) test -count=1 -race -timeout 20m ./app/ui/...

## bench: benchmarks through the real stacks; figures go in docs/
bench: deps
	GO=$(GO) packaging/with-services.sh packaging/bench.sh

## bench-cli: only the command-line comparisons of `make bench` (keydesk
## beside ykman, yubico-piv-tool and fido2-token); the document goes to a
## temporary directory, printed at the end (BENCH_ONLY=cli, packaging/bench.sh)
bench-cli: deps
	GO=$(GO) BENCH_ONLY=cli BENCH_COMMAND="make bench-cli" packaging/with-services.sh packaging/bench.sh

## bench-desktop: only the desktop app's figures (first frame, memory after
## start and after the full round; BENCH_ONLY=desktop in packaging/bench.sh);
## the document goes to a temporary directory, printed at the end
bench-desktop: deps
	BENCH_ONLY=desktop BENCH_COMMAND="make bench-desktop" GO=$(GO) packaging/with-services.sh packaging/bench.sh

## bench-registry: only the registry's store, API and validity-replica benchmarks
## (docs/registry.md, docs/relying-party.md)
bench-registry: deps
	packaging/with-services.sh $(GO) test -run '^$$' -bench . -benchtime 2s -timeout 60m ./registry/store/sqlstore ./registry/server ./registry/validity

## drill: the migration drill (docs/relying-party.md) at DRILL_USERS users
## (default 200, at least 20); prints its figures; DRILL_DOC=1 also writes
## them to docs/drill.md
DRILL_USERS ?= 200
drill: deps
	GO=$(GO) DRILL_USERS=$(DRILL_USERS) packaging/with-services.sh packaging/drill.sh

vet:
	$(GO) vet ./...

## cross-vet: go vet and go build for windows/amd64 and darwin/arm64 without
## cgo (part of `make test`; packaging/cross-vet.sh)
cross-vet: deps
	@packaging/install-deps.sh --cross --quiet
	GO=$(GO) packaging/cross-vet.sh

## package: the .debs and the fyne tarball in dist/ (packaging/build-packages.sh)
package: deps
	GO=$(GO) LDFLAGS="$(LDFLAGS)" packaging/build-packages.sh

## package-check: lintian, then install both .debs into a clean Debian 12 root
## (debootstrap; root and network needed; minutes on the first run)
package-check: package
	@packaging/install-deps.sh --packaging --quiet
	packaging/check-debs.sh

## fresh-check: `make test` and `make build` from a clean clone of HEAD in a
## fresh Debian 12 root (debootstrap; root and network; tens of minutes)
fresh-check:
	@packaging/install-deps.sh --packaging --quiet
	GO=$(GO) packaging/check-fresh.sh

## cross: what cross-compiles here for Windows and macOS (packaging/cross.sh)
cross: deps
	@packaging/install-deps.sh --cross --quiet
	GO=$(GO) LDFLAGS="$(LDFLAGS)" packaging/cross.sh

## cross-check: the Windows build under Wine: the CLI against the registry on
## loopback, the desktop app under Xvfb, the MSI (packaging/cross-check.sh;
## not part of `make test`)
cross-check: msi
	packaging/cross-check.sh

## msi: dist/keydesk-VERSION-x64.msi from dist/windows-amd64 with wixl
## (packaging/build-msi.sh, packaging/windows/keydesk.wxs)
msi: cross
	@packaging/install-deps.sh --wine --quiet
	VERSION=$(VERSION) packaging/build-msi.sh

clean:
	rm -rf $(BIN) dist
