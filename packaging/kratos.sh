#!/usr/bin/env bash
# Builds Ory Kratos, the open-source identity server the kratos connector's
# tests sign in through (docs/identity-providers.md), from the Go module
# proxy, once per machine, and prints the binary's path. The binary is
# cached outside the repository:
#
#   ${KEYDESK_CACHE:-${XDG_CACHE_HOME:-~/.cache}/keydesk}/kratos-VERSION/kratos
#
# Later runs print the cached path at once. Concurrent runs wait for each
# other (flock). A failed build exits non-zero: the tests that need Kratos
# then fail, they are never skipped.
set -euo pipefail

# v1.3.1 is the only release of the module github.com/ory/kratos the module
# proxy serves: the v25 and v26 tags are not valid versions of a module path
# without a /v25 or /v26 suffix.
VERSION=v1.3.1
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}
cache="${KEYDESK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keydesk}/kratos-$VERSION"
bin="$cache/kratos"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
# The Makefile's build tags and any -mod flag are keydesk's, not Kratos's.
export GOFLAGS=
start=$(date +%s)
if ! (cd "$work" && "$GO" mod download -json "github.com/ory/kratos@$VERSION") >"$work/download.json"; then
  echo "kratos.sh: downloading github.com/ory/kratos@$VERSION failed:" >&2
  cat "$work/download.json" >&2
  exit 1
fi
dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' "$work/download.json")"
if [ -z "$dir" ] || [ ! -f "$dir/go.mod" ]; then
  echo "kratos.sh: github.com/ory/kratos@$VERSION downloaded, but its directory was not found" >&2
  exit 1
fi
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
cd "$work/src"
# go.mod replaces github.com/ory/client-go with ./internal/client-go, a
# nested module that the module's zip leaves out. The server does not import
# it, so the published module of the version go.mod names stands in.
"$GO" mod edit -dropreplace github.com/ory/client-go
echo "kratos.sh: building Ory Kratos $VERSION (once; cached in $cache)" >&2
"$GO" build -trimpath -ldflags "-X github.com/ory/kratos/driver/config.Version=$VERSION" -o "$work/kratos" .
mv "$work/kratos" "$bin"
echo "kratos.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$bin"
