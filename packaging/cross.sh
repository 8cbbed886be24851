#!/usr/bin/env bash
# Cross-compile check for Windows and macOS (what `make cross` runs). It
# builds what this Linux machine can build for the other systems and names
# what it cannot, package by package; docs/packaging.md records the results
# and the native build steps.
#
#   keydesk-registry  windows/amd64, darwin/amd64, darwin/arm64 (pure Go)
#   go-libfido2       windows/amd64 with mingw-w64 and the DLLs go-libfido2
#                     bundles (a probe program that lists FIDO devices)
#   keydesk           windows/amd64 with mingw-w64; every keydesk package in
#                     its import graph is built on its own, so a failure
#                     names the packages that are not yet portable
#   keydesk (macOS)   not attempted: it needs cgo against Apple's SDK
#                     (PC/SC.framework through github.com/ebfe/scard, Fyne's
#                     Cocoa/GL), which no Debian package provides
#
# Output goes to $DIST/cross (default dist/cross). Exits non-zero when
# anything that should build does not. Needs gcc-mingw-w64-x86-64
# (packaging/install-deps.sh --cross).
set -uo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
DIST=${DIST:-dist}
LDFLAGS=${LDFLAGS:-}
OUT=$DIST/cross
MINGW=x86_64-w64-mingw32-gcc
mkdir -p "$OUT"
rm -f "$OUT"/*.log
failed=()

build() { # name GOOS GOARCH CGO output package [env...]
  local name=$1 goos=$2 goarch=$3 cgo=$4 out=$5 pkg=$6
  shift 6
  if env GOOS="$goos" GOARCH="$goarch" CGO_ENABLED="$cgo" "$@" \
    "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$out" "$pkg" 2>"$OUT/$name.log"; then
    echo "ok    $name: $(file -b "$out" | cut -d, -f1)"
  else
    echo "FAIL  $name (log: $OUT/$name.log)"
    sed 's/^/        /' "$OUT/$name.log" | head -8
    failed+=("$name")
  fi
}

echo "== keydesk-registry (CGO_ENABLED=0)"
build registry-windows-amd64 windows amd64 0 "$OUT/keydesk-registry.exe" ./cmd/keydesk-registry
build registry-darwin-amd64 darwin amd64 0 "$OUT/keydesk-registry-darwin-amd64" ./cmd/keydesk-registry
build registry-darwin-arm64 darwin arm64 0 "$OUT/keydesk-registry-darwin-arm64" ./cmd/keydesk-registry

if ! command -v "$MINGW" >/dev/null 2>&1; then
  echo "cross: $MINGW is missing (packaging/install-deps.sh --cross)" >&2
  exit 1
fi
win=(CC="$MINGW")

echo "== go-libfido2 with its bundled Windows libraries (mingw-w64)"
probe=$OUT/probe
mkdir -p "$probe"
cat >"$probe/main.go" <<'GO'
// Command probe lists FIDO devices through go-libfido2; it is built, never run.
package main

import (
	"fmt"

	libfido2 "github.com/keys-pub/go-libfido2"
)

func main() {
	locs, err := libfido2.DeviceLocations()
	fmt.Println(len(locs), err)
}
GO
build libfido2-windows-amd64 windows amd64 1 "$OUT/libfido2-probe.exe" "./$probe" "${win[@]}"
if [ -f "$OUT/libfido2-probe.exe" ]; then
  echo "        imports: $(x86_64-w64-mingw32-objdump -p "$OUT/libfido2-probe.exe" | awk '/DLL Name/ {printf "%s ", $3}')"
fi

echo "== keydesk windows/amd64 (mingw-w64), package by package"
pkgs=$("$GO" list -deps ./cmd/keydesk ./cmd/keydesk-desk | sort -u | grep '^github.com/keydesk/keydesk/')
bad=()
for p in $pkgs; do
  if ! env GOOS=windows GOARCH=amd64 CGO_ENABLED=1 "${win[@]}" "$GO" build "$p" 2>"$OUT/pkg.log"; then
    bad+=("${p#github.com/keydesk/keydesk/}")
    { echo "## $p"; cat "$OUT/pkg.log"; } >>"$OUT/keydesk-windows-packages.log"
  fi
done
rm -f "$OUT/pkg.log"
echo "packages in keydesk's import graph: $(wc -w <<<"$pkgs"); not building for Windows: ${#bad[@]}${bad[*]:+ (${bad[*]})}"
build keydesk-windows-amd64 windows amd64 1 "$OUT/keydesk.exe" ./cmd/keydesk "${win[@]}"
build keydesk-desk-windows-amd64 windows amd64 1 "$OUT/keydesk-desk.exe" ./cmd/keydesk-desk "${win[@]}"

if [ ${#failed[@]} -gt 0 ]; then
  echo "cross: did not build: ${failed[*]}" >&2
  exit 1
fi
echo "cross: everything built"
