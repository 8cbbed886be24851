#!/usr/bin/env bash
# Runs the Windows build in dist/windows-amd64 under Wine (what `make
# cross-check` runs after `make cross`).
#
#   1. A fresh Wine prefix in a temporary directory, with a stand-in
#      bcryptprimitives.dll (packaging/windows/processprng.c, built here with
#      mingw): Go 1.26 programs load ProcessPrng from it and Debian 12's Wine
#      8.0 has none.
#   2. keydesk.exe starts, and which VCRUNTIME140.dll fido2.dll got.
#   3. keydesk-registry.exe serve on 127.0.0.1 (plain HTTP, loopback only)
#      and keydesk.exe's command line against it: login (the token on
#      stdin), whoami, inventory, settings, and an enrolment with no key
#      attached, refused with exit 3.
#   4. keydesk-desk.exe under Xvfb: its window appears with the title
#      "keydesk", and a screenshot matches packaging/windows/desk-wine.png
#      within a tolerance (KEYDESK_UPDATE_REFERENCE=1 rewrites the reference).
#   5. The MSI in dist/ (`make msi`): msiinfo lists its tables, files and
#      shortcut, and Wine's msiexec installs it silently.
#
# Needs packaging/install-deps.sh --wine. Exits non-zero on the first check
# that fails, naming it. Not part of `make test`: Wine is large and its
# first start takes tens of seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
WIN=${WIN:-$root/dist/windows-amd64}
REF=$root/packaging/windows/desk-wine.png
# Pixels allowed to differ from the reference (of 1280×800), after a 10 %
# colour fuzz: text anti-aliasing may vary with Mesa's rasteriser.
TOLERANCE=${KEYDESK_SCREENSHOT_TOLERANCE:-2000}

wine=$(command -v wine64 || true)
[ -n "$wine" ] || wine=/usr/lib/wine/wine64
wineserver=$(command -v wineserver || true)
[ -n "$wineserver" ] || wineserver=/usr/lib/wine/wineserver64
for t in "$wine" "$wineserver"; do
  [ -x "$t" ] || { echo "cross-check: $t is missing (packaging/install-deps.sh --wine)" >&2; exit 1; }
done
for f in keydesk.exe keydesk-cli.exe keydesk-desk.exe keydesk-registry.exe fido2.dll; do
  [ -f "$WIN/$f" ] || { echo "cross-check: $WIN/$f is missing (make cross)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/keydesk-wine.XXXXXX)
export WINEPREFIX=$tmp/prefix WINEARCH=win64 WINEDEBUG=-all
# No Mono or Gecko: keydesk needs neither, and Wine would offer to fetch them.
export WINEDLLOVERRIDES="mscoree,mshtml="
pids=()
cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  "$wineserver" -k 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

pass() { echo "ok    $*"; }
fail() {
  echo "FAIL  $*" >&2
  exit 1
}
# waitfor SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds.
waitfor() {
  local n=$(($1 * 5))
  shift
  while ! "$@" 2>/dev/null; do
    n=$((n - 1))
    [ $n -gt 0 ] || return 1
    sleep 0.2
  done
}
# kd EXE ARGS...: runs a Windows program from dist/windows-amd64 under Wine.
kd() {
  local exe=$1
  shift
  timeout 120 "$wine" "$WIN/$exe" "$@"
}

echo "== the Wine prefix ($("$wine" --version))"
start=$(date +%s)
"$wine" wineboot -i >/dev/null 2>&1 || fail "wineboot -i"
"$wineserver" -w
sys32=$WINEPREFIX/drive_c/windows/system32
x86_64-w64-mingw32-gcc -shared -O2 -Wl,--kill-at -o "$sys32/bcryptprimitives.dll" \
  packaging/windows/processprng.c -ladvapi32 || fail "building the stand-in bcryptprimitives.dll"
pass "prefix ready in $(($(date +%s) - start)) s; stand-in bcryptprimitives.dll exports" \
  "$(x86_64-w64-mingw32-objdump -p "$sys32/bcryptprimitives.dll" | grep -o 'ProcessPrng' | head -1)"

echo "== keydesk.exe starts"
v=$(kd keydesk.exe --version) || fail "keydesk.exe --version"
pass "$v"
dlls=$(WINEDEBUG=+loaddll kd keydesk.exe --version 2>&1 >/dev/null | grep -i -E 'vcruntime140|fido2|bcryptprimitives' |
  sed -E 's/.*Loaded L"([^"]*)".*: (builtin|native).*/\1 (\2)/') || true
grep -qi 'vcruntime140.dll (builtin)' <<<"$dlls" || fail "fido2.dll did not get Wine's builtin VCRUNTIME140.dll: $dlls"
pass "loaded: $(echo $dlls | sed 's/) /); /g')"

echo "== keydesk.exe against keydesk-registry.exe on 127.0.0.1"
state="Z:${tmp//\//\\}\\state"
kd keydesk-registry.exe token create --state "$state" --role admin --name first-admin >"$tmp/admin.token" 2>"$tmp/token.err" ||
  fail "keydesk-registry.exe token create: $(cat "$tmp/token.err")"
pass "token create (admin)"
timeout 300 "$wine" "$WIN/keydesk-registry.exe" serve --dev-plain-http --listen 127.0.0.1:0 --state "$state" >"$tmp/serve.out" 2>&1 &
pids+=($!)
waitfor 60 grep -q 'listening on' "$tmp/serve.out" || fail "the registry did not start: $(cat "$tmp/serve.out")"
url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$tmp/serve.out")
case $url in http://127.0.0.1:*) ;; *) fail "the registry listens on $url, not loopback" ;; esac
pass "keydesk-registry.exe serve: $url"

out=$(kd keydesk.exe login --registry "$url" <"$tmp/admin.token" 2>&1) || fail "login: $out"
grep -q 'stored in the system keyring' <<<"$out" || fail "login: $out"
pass "login (token on stdin, into the Windows Credential Manager)"
out=$(kd keydesk.exe whoami 2>&1 </dev/null) || fail "whoami: $out"
grep -Eq '^role +admin' <<<"$out" && grep -Eq '^token +first-admin' <<<"$out" || fail "whoami: $out"
pass "whoami: $(echo $out)"
out=$(kd keydesk.exe inventory 2>&1 </dev/null) || fail "inventory: $out"
grep -q '^users 0 (active 0), keys 0' <<<"$out" || fail "inventory: $out"
pass "inventory: ${out%%,*}, …"
# A recipient for the escrow enrolment seals to (a fixed test recipient, no
# identity behind it here).
out=$(kd keydesk.exe settings set helpdesk_recipients=age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq 2>&1) ||
  fail "settings set: $out"
pass "settings set: $out"
out=$(kd keydesk.exe keys 2>&1 </dev/null) || fail "keys: $out"
grep -q 'scard\|winapi' <<<"$out" && fail "keys leaks a PC/SC error: $out"
pass "keys: $(echo $out)"
set +e
out=$(kd keydesk.exe enrol --user bob --name "Bob Example" --wait 1s 2>&1 </dev/null)
rc=$?
set -e
[ $rc -eq 3 ] || fail "enrol with no key: exit $rc, want 3: $out"
grep -q '^keydesk: no factory-fresh key was inserted (waited 1s)$' <<<"$out" || fail "enrol with no key: $out"
grep -q 'scard\|winapi' <<<"$out" && fail "enrol with no key leaks a PC/SC error: $out"
pass "enrol with no key: exit 3, $(grep '^keydesk:' <<<"$out")"

echo "== keydesk-desk.exe under Xvfb"
# Xvfb picks a free display and writes its number once it accepts clients.
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$tmp/display" >"$tmp/xvfb.log" 2>&1 &
pids+=($!)
waitfor 30 test -s "$tmp/display" || fail "Xvfb did not start: $(tail -3 "$tmp/xvfb.log")"
disp=:$(head -1 "$tmp/display")
export DISPLAY=$disp
start=$(date +%s)
timeout 300 "$wine" "$WIN/keydesk-desk.exe" >"$tmp/desk.out" 2>&1 &
pids+=($!)
waitfor 90 xdotool search --name '^keydesk' >/dev/null || fail "no window titled keydesk appeared: $(tail -5 "$tmp/desk.out")"
win=$(xdotool search --name '^keydesk' | head -1)
title=$(xdotool getwindowname "$win")
pass "window \"$title\" appeared in $(($(date +%s) - start)) s"
# The first frames are drawn over a few hundred milliseconds: take
# screenshots until two in a row are the same.
shot() { import -display "$disp" -window root "$1" 2>/dev/null; }
shot "$tmp/a.png"
stable() {
  sleep 0.5
  shot "$tmp/b.png"
  local d
  d=$(compare -metric AE "$tmp/a.png" "$tmp/b.png" /dev/null 2>&1) || true
  cp "$tmp/b.png" "$tmp/a.png"
  [ "$d" = 0 ]
}
waitfor 30 stable || fail "the screen did not settle"
colours=$(convert "$tmp/a.png" -format '%k' info:)
[ "$colours" -gt 8 ] || fail "the screenshot is blank ($colours colours)"
if [ -n "${KEYDESK_UPDATE_REFERENCE:-}" ] || [ ! -f "$REF" ]; then
  cp "$tmp/a.png" "$REF"
  pass "reference written: $REF ($colours colours)"
else
  d=$(compare -metric AE -fuzz 10% "$REF" "$tmp/a.png" "$tmp/diff.png" 2>&1) || true
  [ "${d%%.*}" -le "$TOLERANCE" ] 2>/dev/null ||
    { cp "$tmp/a.png" "$root/dist/desk-wine-actual.png"; fail "screenshot differs from $REF in $d pixels (allowed $TOLERANCE; this one: dist/desk-wine-actual.png)"; }
  pass "screenshot: $colours colours, $d pixels differ from the reference (allowed $TOLERANCE)"
fi

# timeout passes the signal on: the desktop app, then the registry.
kill "${pids[2]}" "${pids[0]}"
msi=$(ls "$root"/dist/keydesk-*-x64.msi 2>/dev/null | head -1 || true)
[ -n "$msi" ] || fail "no dist/keydesk-*-x64.msi (make msi)"
{
  echo "== the MSI ($(basename "$msi"))"
  tables=$(msiinfo tables "$msi") || fail "msiinfo tables"
  for t in File Component Shortcut Icon Directory; do
    grep -qx "$t" <<<"$tables" || fail "$msi has no $t table"
  done
  files=$(msiinfo export "$msi" File | awk -F'\t' 'NR > 3 {print $3}' | sed 's/.*|//' | sort | tr '\n' ' ')
  for f in keydesk.exe keydesk-desk.exe fido2.dll cbor.dll crypto-45.dll; do
    grep -qw -- "$f" <<<"$files" || fail "$msi lacks $f (has: $files)"
  done
  pass "files: $files"
  sc=$(msiinfo export "$msi" Shortcut | awk -F'\t' 'NR > 3 {print $2, $3, $5}')
  grep -q 'ProgramMenu' <<<"$sc" || fail "no Start-menu shortcut: $sc"
  pass "Start-menu shortcut: $sc"
  # Installed by Windows Installer (Wine's msiexec), silently.
  timeout 300 "$wine" msiexec /i "Z:${msi//\//\\}" /qn >"$tmp/msiexec.log" 2>&1 || fail "msiexec /i: $(tail -3 "$tmp/msiexec.log")"
  pf="$WINEPREFIX/drive_c/Program Files/keydesk"
  for f in keydesk.exe keydesk-desk.exe fido2.dll cbor.dll crypto-45.dll; do
    cmp -s "$pf/$f" "$WIN/$f" || fail "msiexec did not install $f as built"
  done
  lnk=$(find "$WINEPREFIX/drive_c" -iname 'keydesk.lnk' | head -1)
  [ -n "$lnk" ] || fail "msiexec made no keydesk.lnk"
  v=$(timeout 120 "$wine" "C:\\Program Files\\keydesk\\keydesk.exe" --version) || fail "the installed keydesk.exe does not start"
  pass "msiexec /i /qn: Program Files\\keydesk holds the five files as built; ${lnk#"$WINEPREFIX"/}; $v"
}
echo "cross-check: everything passed"
