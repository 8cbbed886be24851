#!/usr/bin/env bash
# Cross-builds for Windows and macOS (what `make cross` runs).
#
#   dist/windows-amd64/   keydesk.exe, keydesk-cli.exe and keydesk-desk.exe (cgo with mingw-w64: Fyne's GLFW,
#                         libfido2 from the DLLs go-libfido2 bundles, PC/SC
#                         through winscard.dll), keydesk-registry.exe (pure
#                         Go), keydesk-rp.exe, and the DLLs keydesk.exe loads
#                         that Windows does not ship
#   dist/cross/           keydesk-registry for darwin/amd64 and darwin/arm64
#                         (pure Go); keydesk itself needs Apple's SDK
#
# Everything comes from this machine: Debian's mingw-w64, the Go modules and
# what they ship. The host's pkg-config must not answer for Windows (it
# would hand mingw Linux include paths), so it is pointed at an empty
# directory. Exits non-zero when anything does not build. Needs
# gcc-mingw-w64-x86-64 (packaging/install-deps.sh --cross).
set -uo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
DIST=${DIST:-dist}
LDFLAGS=${LDFLAGS:-}
OUT=$DIST/cross
WIN=$DIST/windows-amd64
MINGW=x86_64-w64-mingw32-gcc
mkdir -p "$OUT" "$WIN"
rm -f "$OUT"/*.log
failed=()

build() { # name GOOS GOARCH CGO output package [env...]
  local name=$1 goos=$2 goarch=$3 cgo=$4 out=$5 pkg=$6
  shift 6
  if env GOOS="$goos" GOARCH="$goarch" CGO_ENABLED="$cgo" "$@" \
    "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$out" "$pkg" 2>"$OUT/$name.log"; then
    echo "ok    $name: $(file -b "$out" | cut -d, -f1), $(du -h "$out" | cut -f1)"
  else
    echo "FAIL  $name (log: $OUT/$name.log)"
    sed 's/^/        /' "$OUT/$name.log" | head -8
    failed+=("$name")
  fi
}

echo "== pure Go (CGO_ENABLED=0)"
build registry-windows-amd64 windows amd64 0 "$WIN/keydesk-registry.exe" ./cmd/keydesk-registry
build registry-darwin-amd64 darwin amd64 0 "$OUT/keydesk-registry-darwin-amd64" ./cmd/keydesk-registry
build registry-darwin-arm64 darwin arm64 0 "$OUT/keydesk-registry-darwin-arm64" ./cmd/keydesk-registry

if ! command -v "$MINGW" >/dev/null 2>&1; then
  echo "cross: $MINGW is missing (packaging/install-deps.sh --cross)" >&2
  exit 1
fi
fido=$("$GO" list -m -f '{{.Dir}}' github.com/keys-pub/go-libfido2)/windows
empty=$(mktemp -d)
trap 'rm -rf "$empty"' EXIT
# fidoc includes go-libfido2's Windows headers and links its import
# library; go-libfido2 adds the same for itself.
win=(CC="$MINGW" PKG_CONFIG_LIBDIR="$empty" PKG_CONFIG_PATH=
  CGO_CFLAGS="-O2 -I$fido/include" CGO_LDFLAGS="-L$fido/lib -lfido2")

echo "== windows/amd64 with cgo (mingw-w64)"
build keydesk-windows-amd64 windows amd64 1 "$WIN/keydesk.exe" ./cmd/keydesk "${win[@]}"
build keydesk-cli-windows-amd64 windows amd64 1 "$WIN/keydesk-cli.exe" ./cmd/keydesk-cli "${win[@]}"
build keydesk-desk-windows-amd64 windows amd64 1 "$WIN/keydesk-desk.exe" ./cmd/keydesk-desk "${win[@]}"
build rp-windows-amd64 windows amd64 1 "$WIN/keydesk-rp.exe" ./cmd/keydesk-rp "${win[@]}"
if [ -f "$WIN/keydesk.exe" ]; then
  cp "$fido/lib/fido2.dll" "$fido/lib/cbor.dll" "$fido/lib/crypto-45.dll" "$WIN/"
fi
for exe in keydesk.exe keydesk-cli.exe keydesk-desk.exe; do
  [ -f "$WIN/$exe" ] || continue
  imports=$(x86_64-w64-mingw32-objdump -p "$WIN/$exe" | awk '/DLL Name/ {print $3}' | sort -u)
  echo "        $exe imports: $(echo $imports)"
  # Every DLL it imports is either shipped beside it or part of Windows.
  for dll in $imports; do
    case ${dll,,} in
    fido2.dll) ;;
    kernel32.dll | user32.dll | gdi32.dll | advapi32.dll | shell32.dll | ole32.dll | opengl32.dll | \
      winscard.dll | ws2_32.dll | winmm.dll | msvcrt.dll | crypt32.dll | bcrypt.dll | ntdll.dll | \
      dwmapi.dll | imm32.dll | setupapi.dll | hid.dll | iphlpapi.dll | secur32.dll | userenv.dll | \
      dnsapi.dll | netapi32.dll | powrprof.dll | shcore.dll | comctl32.dll | oleaut32.dll | \
      api-ms-win-*) ;;
    *)
      echo "FAIL  $exe imports $dll, which neither Windows nor dist/windows-amd64 provides"
      failed+=("dll-$dll")
      ;;
    esac
  done
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "cross: did not build: ${failed[*]}" >&2
  exit 1
fi
echo "cross: everything built; $WIN holds:"
ls -l "$WIN" | awk 'NR > 1 {printf "        %10d  %s\n", $5, $9}'
