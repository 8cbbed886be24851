#!/usr/bin/env bash
# Installs the system packages keydesk needs to build, run and test, and
# nothing else. Safe to run again: it installs only what is missing.
#
#   packaging/install-deps.sh              everything to build, run and test
#   packaging/install-deps.sh --packaging  only what `make package-check` adds
#   packaging/install-deps.sh --cross      only what `make cross` adds
#   packaging/install-deps.sh --wine       only what `make cross-check` adds
#   --quiet (with any of them)             print only what it installs
#
# On Debian and Ubuntu it uses apt-get (through sudo when not root). Elsewhere
# it names what to install, group by group, and exits non-zero; once those are
# installed, KEYDESK_SKIP_DEPS=1 skips this script.
set -euo pipefail

quiet=0
set_=main
for a in "$@"; do
  case $a in
    --quiet) quiet=1 ;;
    --packaging) set_=packaging ;;
    --cross) set_=cross ;;
    --wine) set_=wine ;;
    *) echo "install-deps: unknown option $a" >&2; exit 2 ;;
  esac
done

# One list per set, grouped by what needs it: each group is a comment saying
# what needs it, then its Debian package names. The message for systems
# without apt-get is made from these groups, so a new package goes in the
# group it belongs to (or a new commented group), never on its own. The
# packaging and cross sets are separate so that `make test` on a clean
# machine never pays for them.
case $set_ in
packaging) pkgs=(
  # make package-check: package linting, desktop metadata validators, the
  # clean Debian root and the unit checker
  lintian desktop-file-utils appstream debootstrap systemd curl
  # make package: binutils (objcopy, objdump) and xz for the fyne tarball
  binutils xz-utils
  # assets/render.sh: PNG icons from the SVG
  librsvg2-bin
) ;;
cross) pkgs=(
  # make cross: the C cross-compiler for keydesk's cgo on Windows
  gcc-mingw-w64-x86-64
) ;;
wine) pkgs=(
  # make cross-check: Debian's 64-bit Wine runs the Windows binaries; the
  # virtual display, screenshots and image comparison for the desktop app
  wine64 xvfb xdotool imagemagick
  # make cross-check: the stand-in bcryptprimitives.dll is built with mingw
  gcc-mingw-w64-x86-64
  # make msi: wixl builds the MSI, msiinfo reads it back
  wixl msitools
) ;;
main) pkgs=(
  # build: Go fetches modules over HTTPS (the system's CA certificates)
  ca-certificates
  # build: cgo for piv-go (PC/SC) and go-libfido2, Fyne's GL and X11 headers
  # (gcc only recommends the C library's headers, which cgo always needs)
  gcc libc6-dev pkg-config libpcsclite-dev libfido2-dev
  libgl1-mesa-dev libx11-dev libxcursor-dev libxrandr-dev libxinerama-dev libxi-dev libxxf86vm-dev
  # run: the smart-card daemon and the driver the virtual key plugs into
  pcscd vsmartcard-vpcd util-linux
  # test referees: tools nobody here wrote, driven against virtual keys
  yubikey-manager yubico-piv-tool opensc fido2-tools openssl libsecret-tools
  # test services: PostgreSQL, a Secret Service, a virtual display
  postgresql gnome-keyring dbus dbus-x11 xvfb
  # the audit tamper tests edit the registry's database with its own shells
  sqlite3 postgresql-client
  # the desktop app's smoke test: xwd screenshots the virtual display;
  # its start-up benchmark visits every screen with xdotool
  x11-apps xdotool
  # shell completion tests: bash's completion library, and fish
  bash-completion fish
) ;;
esac

[ -z "${KEYDESK_SKIP_DEPS:-}" ] || exit 0

# groups prints this set's list as it is written above: what needs them, then
# the Debian package names.
groups() {
  awk -v set="$set_" '
    $0 ~ "^" set "\\) pkgs=\\(" { on = 1; next }
    on && /^\) ;;/ { exit }
    on && /^ *#/ { sub(/^ *# ?/, ""); if (names) print "      " names; names = ""; print "  " $0; next }
    on { sub(/^ */, ""); names = names (names ? " " : "") $0 }
    END { if (names) print "      " names }
  ' "$0"
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  {
    echo "install-deps: no apt-get here, so nothing was installed. keydesk needs, besides Go 1.26 or"
    echo "newer, what these Debian packages provide (most systems use similar names):"
    groups
    echo "Install their equivalents, then run make again with KEYDESK_SKIP_DEPS=1."
  } >&2
  exit 1
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  echo "install-deps: Go 1.26 or newer is needed (https://go.dev/dl/, or your distribution's golang package if new enough)" >&2
  exit 1
fi

if [ ${#missing[@]} -eq 0 ]; then
  [ $quiet -eq 1 ] || echo "install-deps: all system packages present ($set_ set)"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "install-deps: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends keeps a desk machine lean; policy-rc.d keeps
# package scripts from starting system services (keydesk starts its own).
tmp_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  tmp_policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$tmp_policy" >/dev/null
  $sudo chmod +x "$tmp_policy"
fi
trap '[ -n "$tmp_policy" ] && $sudo rm -f "$tmp_policy"' EXIT
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
