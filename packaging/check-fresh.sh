#!/usr/bin/env bash
# The README's promise, checked (what `make fresh-check` runs): on a fresh
# Debian 12 machine, a clean clone's `make test` installs every system
# package it needs and passes, and `make build` then builds every binary.
#
# "Fresh" is a debootstrap minbase root with only what a person needs to have
# cloned the repository and typed make: git, make, ca-certificates, and Go
# (copied from this machine's GOROOT, as the README asks for Go to be there
# already). Everything else comes from packaging/install-deps.sh inside the
# root. The clone is of HEAD (committed work only); Go modules come through
# the module proxy, and nothing is cached between runs but the debootstrap
# tarball (~/.cache/keydesk).
#
# Needs root (debootstrap, chroot, mount) and network access to
# deb.debian.org and the Go module proxy. It takes minutes: every package is
# downloaded and every test binary compiled from nothing.
#
#   packaging/check-fresh.sh [make targets...]   default: test build
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/keydesk
INCLUDE=git,make,ca-certificates
TARBALL=$CACHE/$SUITE-fresh-amd64.tar
GOROOT_HOST=$(${GO:-go} env GOROOT)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(test build)

say() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
fail() { echo "check-fresh: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot, mount); run: sudo $0"
command -v debootstrap >/dev/null || fail "debootstrap is missing (packaging/install-deps.sh --packaging)"

work=$(mktemp -d /var/tmp/keydesk-fresh.XXXXXX)
root=$work/root
mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
mnt() { # args... target
  mount "$@"
  mounts+=("${*: -1}")
}

say "debootstrap $SUITE minbase + $INCLUDE"
mkdir -p "$CACHE"
if [ ! -f "$TARBALL" ]; then
  debootstrap --variant=minbase --include="$INCLUDE" --make-tarball="$TARBALL.partial" \
    "$SUITE" "$work/make" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; fail "debootstrap --make-tarball"; }
  mv "$TARBALL.partial" "$TARBALL"
  rm -rf "$work/make"
fi
debootstrap --variant=minbase --include="$INCLUDE" --unpack-tarball="$TARBALL" \
  "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
echo "fresh root: Debian $(cat "$root/etc/debian_version"), $(chroot "$root" dpkg-query -W | wc -l) packages"

cp /etc/resolv.conf "$root/etc/resolv.conf"
mnt -t proc proc "$root/proc"
mnt --rbind /sys "$root/sys"
mnt --rbind /dev "$root/dev"
mkdir -p "$root/run/shm"
mnt -t tmpfs tmpfs "$root/run"
# A site's own trust anchors (say, for a TLS-inspecting proxy) are part of
# any machine there, fresh or not: carry this machine's local ones over.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
cp -a "$GOROOT_HOST" "$root/usr/local/go"
git clone -q --no-local "$PWD" "$root/root/keydesk"
echo "clone of $(git rev-parse --short HEAD) at /root/keydesk; Go: $("$root/usr/local/go/bin/go" version)"

in_root() {
  chroot "$root" env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

for t in "${targets[@]}"; do
  say "make $t in the clean clone"
  start=$(date +%s)
  in_root sh -c "cd /root/keydesk && make $t" >"$work/make-$t.log" 2>&1 ||
    { tail -60 "$work/make-$t.log"; fail "make $t"; }
  grep -E '^(install-deps|ok|FAIL|---|panic)' "$work/make-$t.log" | grep -v '^ok' || true
  echo "make $t: passed in $(($(date +%s) - start)) s; $(grep -c '^ok' "$work/make-$t.log") packages ok"
  [ "$t" != build ] || in_root sh -c 'cd /root/keydesk && ls bin && for b in bin/*; do "$b" --version; done'
done
say "check-fresh: make ${targets[*]} passed from a clean clone on a fresh Debian $SUITE root"
