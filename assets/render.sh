#!/usr/bin/env bash
# Renders the PNG icon set from keydesk.svg into icons/hicolor/NxN/apps/.
# Needs rsvg-convert (Debian: librsvg2-bin; packaging/install-deps.sh
# --packaging installs it). The PNGs are committed, so building keydesk never
# needs this; run it after editing the SVG.
set -euo pipefail
cd "$(dirname "$0")"
for n in 16 22 24 32 48 64 128 256 512; do
  dir=icons/hicolor/${n}x${n}/apps
  mkdir -p "$dir"
  rsvg-convert --width "$n" --height "$n" --keep-aspect-ratio keydesk.svg -o "$dir/io.keydesk.Keydesk.png"
done
