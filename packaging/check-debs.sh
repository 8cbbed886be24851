#!/usr/bin/env bash
# Checks the packages `make package` built in dist/ (what `make package-check`
# runs after building them):
#   1. lintian on both .debs: no errors or warnings beyond the overrides in
#      packaging/lintian/ (their reasons are there and in docs/packaging.md);
#   2. contents, Depends and conffiles of each .deb (a man page for every
#      program in /usr/bin); the desktop entry and the
#      AppStream metadata as installed, through their validators;
#   3. a clean Debian 12 root made with debootstrap: both .debs installed with
#      apt-get (dependencies from deb.debian.org), `--version` of both
#      binaries, `systemd-analyze verify` on the installed unit, alone and
#      with the example drop-in docs/deploy.md uses,
#      `keydesk-registry serve` answering GET /v1/health, then a purge.
# Needs root (debootstrap, chroot, mount), network access to deb.debian.org
# and packaging/install-deps.sh --packaging. The debootstrap tarball is cached
# in ~/.cache/keydesk, so only the first run downloads the base system.
set -euo pipefail
cd "$(dirname "$0")/.."

DIST=${DIST:-dist}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/keydesk
TARBALL=$CACHE/$SUITE-amd64.tar

say() { printf '\n== %s\n' "$*"; }
fail() { echo "check-debs: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot, mount); run: sudo $0"

one() {
  local m=("$DIST"/$1)
  [ ${#m[@]} -eq 1 ] && [ -f "${m[0]}" ] || fail "expected exactly one $DIST/$1 (run make package)"
  echo "${m[0]}"
}
kd=$(one 'keydesk_*_amd64.deb')
kr=$(one 'keydesk-registry_*_amd64.deb')
tarball=$(one 'keydesk_*_linux_amd64.tar.xz')
version=$(dpkg-deb -f "$kd" Version)

say "lintian $(lintian --version | awk '{print $2}')"
lintian --fail-on error,warning --pedantic --display-info "$kd" "$kr"
echo "lintian: no errors or warnings"

say "package contents"
contains() { # deb path...
  local deb=$1; shift
  local list; list=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\.||')
  for p in "$@"; do
    grep -qxF "$p" <<<"$list" || fail "$(basename "$deb") lacks $p"
  done
}
icons=()
for n in 16 22 24 32 48 64 128 256 512; do
  icons+=("/usr/share/icons/hicolor/${n}x${n}/apps/io.keydesk.Keydesk.png")
done
contains "$kd" /usr/bin/keydesk /usr/bin/keydesk-cli /usr/bin/keydesk-desk /usr/share/applications/keydesk.desktop \
  /usr/share/metainfo/io.keydesk.Keydesk.metainfo.xml \
  /usr/share/icons/hicolor/scalable/apps/io.keydesk.Keydesk.svg "${icons[@]}" \
  /usr/lib/udev/rules.d/70-keydesk.rules /usr/share/man/man1/keydesk.1.gz /usr/share/man/man1/keydesk-piv-status.1.gz \
  /usr/share/man/man1/keydesk-cli.1.gz /usr/share/man/man1/keydesk-desk.1.gz \
  /usr/share/bash-completion/completions/keydesk /usr/share/zsh/vendor-completions/_keydesk \
  /usr/share/fish/vendor_completions.d/keydesk.fish /usr/share/keydesk/completions/keydesk.ps1 \
  /usr/share/doc/keydesk/copyright /usr/share/doc/keydesk/changelog.Debian.gz
contains "$kr" /usr/bin/keydesk-registry /usr/lib/systemd/system/keydesk-registry.service \
  /etc/keydesk-registry/registry.conf /usr/share/man/man1/keydesk-registry.1.gz \
  /usr/share/doc/keydesk-registry/deploy.md /usr/share/doc/keydesk-registry/examples/postgres-tls.conf \
  /usr/share/doc/keydesk-registry/copyright /usr/share/doc/keydesk-registry/changelog.Debian.gz
# Every program in /usr/bin has its page (lintian's no-manual-page says the
# same; this names the program and the page it looked for).
for deb in "$kd" "$kr"; do
  list=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\.||')
  for b in $(grep '^/usr/bin/.' <<<"$list"); do
    grep -qxF "/usr/share/man/man1/$(basename "$b").1.gz" <<<"$list" || fail "$(basename "$deb") installs $b without /usr/share/man/man1/$(basename "$b").1.gz"
  done
done
echo "every program in /usr/bin has a man page"
depends=$(dpkg-deb -f "$kd" Depends)
for d in pcscd libpcsclite1 libfido2-1 libgl1 libx11-6 libxcursor1 libxrandr2 libxinerama1 libxi6 libxxf86vm1 libc6; do
  grep -qE "(^|, )$d( |,|$)" <<<"$depends" || fail "keydesk Depends lacks $d: $depends"
done
echo "keydesk Depends: $depends"
# The udev tests, against the rules file inside this .deb.
KEYDESK_DEB=$(realpath "$kd") "${GO:-go}" test -count=1 -run 'TestUdevRules' ./packaging/linux
conffiles=$(dpkg-deb --ctrl-tarfile "$kr" | tar -xOf - ./conffiles)
[ "$conffiles" = /etc/keydesk-registry/registry.conf ] || fail "keydesk-registry conffiles: $conffiles"
echo "keydesk-registry conffiles: $conffiles"
tarlist=$(tar -tJf "$tarball")
grep -qx 'keydesk/usr/local/bin/keydesk' <<<"$tarlist" || fail "$tarball lacks usr/local/bin/keydesk"
grep -qx 'keydesk/Makefile' <<<"$tarlist" || fail "$tarball lacks its Makefile"
echo "$(basename "$tarball"): usr/local/bin/keydesk and Makefile present"

work=$(mktemp -d /var/tmp/keydesk-check.XXXXXX)
root=$work/root
cleanup() {
  if [ -n "${srv_pid:-}" ]; then kill "$srv_pid" 2>/dev/null || true; fi
  mountpoint -q "$root/proc" && umount "$root/proc"
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

dpkg-deb -x "$kd" "$work/kd"
desktop-file-validate "$work/kd/usr/share/applications/keydesk.desktop"
echo "desktop-file-validate: clean"
appstreamcli validate --no-net "$work/kd/usr/share/metainfo/io.keydesk.Keydesk.metainfo.xml"

say "debootstrap $SUITE"
mkdir -p "$CACHE"
if [ ! -f "$TARBALL" ]; then
  echo "making $TARBALL (first run only)"
  debootstrap --variant=minbase --include=systemd,man-db,curl,ca-certificates \
    --make-tarball="$TARBALL.partial" "$SUITE" "$work/make" "$MIRROR"
  mv "$TARBALL.partial" "$TARBALL"
  rm -rf "$work/make"
fi
debootstrap --variant=minbase --include=systemd,man-db,curl,ca-certificates \
  --unpack-tarball="$TARBALL" "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
  { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
echo "clean root: $(cat "$root/etc/debian_version"), $(chroot "$root" dpkg-query -W | wc -l) packages"

say "apt-get install the two .debs in the clean root"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
# Package scripts must not start services (pcscd) in the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
cp "$kd" "$kr" "$root/tmp/"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$kd")" "/tmp/$(basename "$kr")" >"$work/apt.log" 2>&1 ||
  { tail -30 "$work/apt.log"; fail "apt-get install"; }
in_root dpkg-query -W keydesk keydesk-registry pcscd libfido2-1 libpcsclite1 libgl1

say "--version in the clean root"
for b in keydesk keydesk-registry; do
  out=$(in_root "$b" --version)
  echo "$b --version: $out"
  grep -qE "^$b [^ ]+ \(commit [0-9a-f]{7,}|^$b [^ ]+ \(commit unknown\)" <<<"$out" || fail "$b --version: $out"
done

say "systemd-analyze verify (systemd $(in_root systemctl --version | awk 'NR==1{print $2}'), in the clean root)"
in_root systemd-analyze verify /usr/lib/systemd/system/keydesk-registry.service
echo "systemd-analyze verify: clean"
# The drop-in docs/deploy.md installs for PostgreSQL and a real certificate.
dropins=$root/etc/systemd/system/keydesk-registry.service.d
mkdir -p "$dropins"
cp "$root/usr/share/doc/keydesk-registry/examples/postgres-tls.conf" "$dropins/"
# First show that verify reads this directory: a drop-in naming a missing
# program must fail it.
printf '[Service]\nExecStartPre=/nonexistent/keydesk-probe\n' >"$dropins/zz-probe.conf"
if in_root systemd-analyze verify keydesk-registry.service >"$work/probe.log" 2>&1; then
  cat "$work/probe.log"; fail "systemd-analyze verify ignored a drop-in in $dropins"
fi
grep -q keydesk-probe "$work/probe.log" || { cat "$work/probe.log"; fail "verify failed for another reason"; }
rm "$dropins/zz-probe.conf"
in_root systemd-analyze verify keydesk-registry.service
rm -r "$dropins"
echo "systemd-analyze verify with the example drop-in (postgres-tls.conf): clean"
in_root systemd-analyze security --offline=yes /usr/lib/systemd/system/keydesk-registry.service | tail -1

say "keydesk-registry serve: smoke start and GET /v1/health"
# The registry's state goes where StateDirectory= puts it under systemd.
coproc SRV { exec chroot "$root" env -i PATH=/usr/bin:/bin STATE_DIRECTORY=/var/lib/keydesk-registry \
  keydesk-registry serve --listen 127.0.0.1:0 2>&1; }
srv_pid=$SRV_PID
read -r -t 60 line <&"${SRV[0]}" || fail "keydesk-registry serve printed nothing"
echo "$line"
url=${line#keydesk-registry listening on }
[ "$url" != "$line" ] || fail "unexpected first line: $line"
health=$(in_root curl -sS --fail --cacert /var/lib/keydesk-registry/tls-cert.pem "$url/v1/health")
echo "GET /v1/health: $health"
# As docs/deploy.md's kdr function runs it: registry.conf's settings in the
# environment, an empty KEYDESK_REGISTRY_DB meaning SQLite in the state dir.
tok=$(in_root sh -c 'set -a; . /etc/keydesk-registry/registry.conf; set +a
  STATE_DIRECTORY=/var/lib/keydesk-registry exec /usr/bin/keydesk-registry "$@" --db "$KEYDESK_REGISTRY_DB"' kdr \
  token create --role admin --name check)
[[ $tok == kdr_* ]] || fail "token create printed: $tok"
code=$(in_root curl -sS -o /dev/null -w '%{http_code}' --cacert /var/lib/keydesk-registry/tls-cert.pem \
  -H "Authorization: Bearer $tok" "$url/v1/users")
echo "GET /v1/users with a fresh admin token: HTTP $code"
[ "$code" = 200 ] || fail "GET /v1/users: HTTP $code"
kill -TERM "$srv_pid"
wait "$srv_pid" || fail "keydesk-registry serve exited non-zero after SIGTERM"
srv_pid=""
echo "stopped cleanly on SIGTERM"

say "purge"
in_root apt-get purge -y -qq keydesk keydesk-registry >"$work/purge.log" 2>&1 || { tail -20 "$work/purge.log"; fail "purge"; }
[ ! -e "$root/usr/bin/keydesk" ] && [ ! -e "$root/etc/keydesk-registry/registry.conf" ] || fail "files left after purge"
echo "purged; state in /var/lib/keydesk-registry kept: $(ls "$root/var/lib/keydesk-registry" | tr '\n' ' ')"

say "check-debs: all checks passed for $(basename "$kd") and $(basename "$kr") (version $version)"
