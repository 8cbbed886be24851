#!/usr/bin/env bash
# The cheap portability check `make test` runs first: `go vet` and `go build`
# of every package for windows/amd64 and darwin/arm64 with CGO_ENABLED=0, so
# a Linux-only call is caught on Linux. No C cross-compiler, no Wine.
#
# Packages that reach cgo-only code by design are left out there, and
# named: the Fyne GL driver (github.com/go-gl/gl), go-libfido2 and fidoc, and
# on macOS PC/SC (github.com/ebfe/scard and piv-go link PCSC.framework
# through cgo; on Windows they call winscard.dll without cgo). Then, with
# mingw-w64 (packaging/install-deps.sh --cross, which `make test` runs),
# every package is vetted for windows/amd64 with cgo, as `make cross`
# builds them: about 7 minutes the first time, moments once Go's cache
# holds the results. macOS's cgo packages need Apple's SDK and are not
# vetted here.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
cgo_only='^(github.com/go-gl/gl/|github.com/keys-pub/go-libfido2$|github.com/keydesk/keydesk/device/fidokey/fidoc$)'
for target in windows/amd64 darwin/arm64; do
  export GOOS=${target%/*} GOARCH=${target#*/} CGO_ENABLED=0
  re=$cgo_only
  [ "$GOOS" = darwin ] && re="$cgo_only|^(github.com/ebfe/scard|github.com/go-piv/piv-go/v2/piv)\$"
  pure=() skipped=()
  # Each package with its dependencies and its tests' (vet checks tests
  # too), listed with cgo on so the cgo-only packages show.
  declare -A cgo=()
  while read -r pkg; do cgo[$pkg]=1; done < <(
    CGO_ENABLED=1 "$GO" list -e -test -deps -f '{{.ImportPath}} {{join .Deps " "}}' ./... |
      awk -v re="$re" '{ for (i = 2; i <= NF; i++) if ($i ~ re) { print $1; next } }')
  for pkg in $(CGO_ENABLED=1 "$GO" list -e ./...); do
    if [ -n "${cgo[$pkg]:-}" ] || [ -n "${cgo[$pkg.test]:-}" ] || [ -n "${cgo[${pkg}_test]:-}" ]; then
      skipped+=("${pkg#github.com/keydesk/keydesk/}")
    else
      pure+=("$pkg")
    fi
  done
  "$GO" vet "${pure[@]}"
  # go build refuses packages that hold only tests.
  "$GO" build $("$GO" list -e -f '{{if .GoFiles}}{{.ImportPath}}{{end}}' "${pure[@]}")
  echo "cross-vet $target: ${#pure[@]} packages vetted and built; needing cgo (make cross): ${skipped[*]}"
done

# Every package for Windows with cgo, through mingw-w64 and the libfido2
# headers go-libfido2 ships (packaging/cross.sh sets up the same).
MINGW=${MINGW:-x86_64-w64-mingw32-gcc}
if ! command -v "$MINGW" >/dev/null 2>&1; then
  echo "cross-vet windows/amd64 with cgo: $MINGW is missing (packaging/install-deps.sh --cross)" >&2
  exit 1
fi
fido=$(CGO_ENABLED=1 GOOS= GOARCH= "$GO" list -m -f '{{.Dir}}' github.com/keys-pub/go-libfido2)/windows
empty=$(mktemp -d)
trap 'rm -rf "$empty"' EXIT
env GOOS=windows GOARCH=amd64 CGO_ENABLED=1 CC="$MINGW" PKG_CONFIG_LIBDIR="$empty" PKG_CONFIG_PATH= \
  CGO_CFLAGS="-O2 -I$fido/include" CGO_LDFLAGS="-L$fido/lib -lfido2" "$GO" vet ./...
echo "cross-vet windows/amd64 with cgo: $(GOOS= GOARCH= CGO_ENABLED=1 "$GO" list ./... | wc -l) packages vetted"
