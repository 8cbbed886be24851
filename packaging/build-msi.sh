#!/usr/bin/env bash
# Builds dist/keydesk-VERSION-x64.msi from dist/windows-amd64 (what `make
# msi` runs after `make cross`) with wixl from msitools
# (packaging/install-deps.sh --wine), from packaging/windows/keydesk.wxs. The
# icon is made here from assets/icons (16–256 px PNGs into one .ico with
# ImageMagick). MSI versions are numeric: VERSION 1.2.3-4-gabc gives 1.2.3,
# "dev" gives 0.0.0. The MSI is not signed.
set -euo pipefail
cd "$(dirname "$0")/.."
WIN=${WIN:-dist/windows-amd64}
version=${VERSION:-dev}
msiver=$(grep -Eo '^[0-9]+\.[0-9]+\.[0-9]+' <<<"$version" || true)
msiver=${msiver:-0.0.0}
for f in keydesk.exe keydesk-cli.exe keydesk-desk.exe fido2.dll cbor.dll crypto-45.dll; do
  [ -f "$WIN/$f" ] || { echo "msi: $WIN/$f is missing (make cross)" >&2; exit 1; }
done
command -v wixl >/dev/null || { echo "msi: wixl is missing (packaging/install-deps.sh --wine)" >&2; exit 1; }
icons=assets/icons/hicolor
ico=dist/keydesk.ico
convert $(for s in 16 24 32 48 64 128 256; do echo "$icons/${s}x$s/apps/io.keydesk.Keydesk.png"; done) "$ico"
out=dist/keydesk-$msiver-x64.msi
rm -f dist/keydesk-*-x64.msi
wixl -a x64 -D Version="$msiver" -D Dist="$WIN" -D Icon="$ico" -o "$out" packaging/windows/keydesk.wxs
echo "msi: $out ($(du -h "$out" | cut -f1)), version $msiver"
