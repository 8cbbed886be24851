#!/usr/bin/env bash
# Writes the copyright file for a Debian package to stdout: keydesk's own
# notice, then the licence of every Go module statically linked into the
# given binaries (read from their embedded build info and the module cache).
#
#   packaging/copyright.sh BINARY...
set -euo pipefail
GO=${GO:-go}
modcache=$($GO env GOMODCACHE)

cat <<'HEAD'
keydesk
Copyright: the keydesk authors
License: no licence has been granted yet; all rights reserved by the
 keydesk authors until the project publishes one.

The binaries in this package are statically linked Go programs. They
contain the Go standard library and the Go modules listed below, each
under its own licence, reproduced here.

HEAD

# Module paths in the cache escape upper-case letters as "!" + lower case.
escape() { sed -E 's/([A-Z])/!\L\1/g' <<<"$1"; }

{
  echo "golang.org/go $($GO env GOROOT)"
  for bin in "$@"; do
    $GO version -m "$bin" | awk '$1 == "dep" { print $2, $3 } $1 == "=>" { print $2, $3 }'
  done
} | sort -u | while read -r mod ver; do
  if [ "$mod" = golang.org/go ]; then
    dir=$ver; name="the Go standard library ($($GO env GOVERSION))"
  else
    dir=$modcache/$(escape "$mod")@$(escape "$ver"); name="$mod $ver"
  fi
  lic=""
  for f in LICENSE LICENSE.txt LICENSE.md LICENCE COPYING COPYING.txt LICENSE-MIT; do
    [ -f "$dir/$f" ] && { lic=$dir/$f; break; }
  done
  if [ -z "$lic" ]; then
    echo "copyright.sh: no licence file for $name in $dir" >&2
    exit 1
  fi
  echo "----------------------------------------------------------------------"
  echo "$name"
  echo
  # Licences Debian ships in /usr/share/common-licenses are referred to, not
  # repeated (Debian Policy 12.5); the module's own copyright lines and
  # NOTICE file are kept.
  common=""
  if grep -q 'Apache License' "$lic" && grep -q 'Version 2.0, January 2004' "$lic"; then
    common=Apache-2.0
  elif grep -qi 'Mozilla Public License,\? [Vv]ersion 2.0' "$lic"; then
    common=MPL-2.0
  fi
  if [ -n "$common" ]; then
    grep -E '^[[:space:]]*Copyright' "$lic" | grep -v '\[yyyy\]' | sed -e 's/^[[:space:]]*//' || true
    for n in NOTICE NOTICE.txt NOTICE.md; do
      [ -f "$dir/$n" ] && sed -e 's/[[:space:]]*$//' "$dir/$n"
    done
    echo "License: $common"
    echo "On Debian systems the full text of this licence is in"
    echo "/usr/share/common-licenses/$common."
  else
    sed -e 's/[[:space:]]*$//' "$lic"
  fi
  echo
done
