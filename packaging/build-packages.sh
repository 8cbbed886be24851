#!/usr/bin/env bash
# Builds keydesk's Linux packages into dist/ (what `make package` runs):
#   dist/keydesk_VERSION_amd64.deb            the CLI and the desktop app
#   dist/keydesk-registry_VERSION_amd64.deb   the registry server and its unit
#   dist/keydesk_VERSION_linux_amd64.tar.xz   `fyne package -os linux` tarball
#
# Environment: GO, LDFLAGS (the Makefile's version stamp), DIST (default dist),
# DEB_VERSION (default: from git), DEB_MAINTAINER.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
DIST=${DIST:-dist}
LDFLAGS=${LDFLAGS:-}
# Pinned tool versions, fetched through the Go module proxy. nfpm 2.46 and
# later depend on a module the public proxy does not serve.
NFPM=(env GOFLAGS=-mod=mod "$GO" run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.0)
FYNE=(env GOFLAGS=-mod=mod "$GO" run fyne.io/tools/cmd/fyne@v1.7.4)

# Debian version: 1.2.3 at a tag v1.2.3, 1.2.3+git4.abc1234 four commits
# later, 0.0~gitYYYYMMDD.abc1234 before the first tag; +dirty for a tree with
# uncommitted changes. The package revision is nfpm's release, -1.
commit=$(git rev-parse --short=7 HEAD)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
app_version=0.0.0
if [ -z "${DEB_VERSION:-}" ]; then
  if desc=$(git describe --tags --long --match 'v[0-9]*' 2>/dev/null); then
    n=$(sed -E 's/^v(.*)-([0-9]+)-g[0-9a-f]+$/\2/' <<<"$desc")
    app_version=$(sed -E 's/^v(.*)-([0-9]+)-g[0-9a-f]+$/\1/' <<<"$desc")
    DEB_VERSION=$app_version
    [ "$n" = 0 ] || DEB_VERSION+="+git$n.$commit"
  else
    DEB_VERSION=0.0~git$(git log -1 --format=%cd --date=format:%Y%m%d).$commit
  fi
  git diff --quiet HEAD -- 2>/dev/null || DEB_VERSION+=+dirty
fi
export DEB_VERSION
# --version shows the package's version (the last -X of a name wins).
LDFLAGS+=" -X github.com/keydesk/keydesk/internal/buildinfo.Version=$DEB_VERSION"
export DEB_MAINTAINER=${DEB_MAINTAINER:-keydesk maintainers <maintainers@keydesk.example>}
export STAGE=$DIST/stage
rm -rf "$STAGE"
rm -f "$DIST"/keydesk*_amd64.deb "$DIST"/keydesk_*_linux_amd64.tar.xz
mkdir -p "$STAGE"

echo "package: building binaries (version $DEB_VERSION)"
# -s -w: no symbol table or DWARF (Go's own stack traces still work).
# keydesk (the command line's start: it answers version and the status
# commands itself), keydesk-cli (the whole command line, which keydesk starts
# for every other command) and keydesk-desk (the desktop app it starts
# when run with no arguments): PIEs linked by the system linker (relro, dynamic libc), as cgo
# builds with libfido2 and libpcsclite are.
CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -D_FORTIFY_SOURCE=2" "$GO" build -trimpath -buildmode=pie \
  -ldflags "-s -w -linkmode=external -extldflags '-Wl,-z,relro -Wl,-z,now' $LDFLAGS" -o "$STAGE/" ./cmd/keydesk ./cmd/keydesk-cli ./cmd/keydesk-desk
objcopy --remove-section=.comment "$STAGE/keydesk"
objcopy --remove-section=.comment "$STAGE/keydesk-cli"
objcopy --remove-section=.comment "$STAGE/keydesk-desk"
CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w $LDFLAGS" -o "$STAGE/keydesk-registry" ./cmd/keydesk-registry

# libc6: the newest GLIBC symbol version the binary needs, when it is
# dynamically linked (cgo); a static binary needs none, but keydesk's
# libfido2 and PC/SC libraries pull libc6 in either way.
glibc=$(objdump -T "$STAGE/keydesk" "$STAGE/keydesk-cli" "$STAGE/keydesk-desk" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1 || true)
export KEYDESK_LIBC6_DEP="libc6${glibc:+ (>= $glibc)}"

# Shell completion scripts, from the command tree keydesk runs.
mkdir -p "$STAGE/completions"
"$STAGE/keydesk" completion bash >"$STAGE/completions/keydesk"
"$STAGE/keydesk" completion zsh >"$STAGE/completions/_keydesk"
"$STAGE/keydesk" completion fish >"$STAGE/completions/keydesk.fish"
"$STAGE/keydesk" completion powershell >"$STAGE/completions/keydesk.ps1"

for p in keydesk keydesk-registry; do
  packaging/copyright.sh "$STAGE/$p" >"$STAGE/$p.copyright"
  cat >"$STAGE/$p.changelog" <<CHANGES
$p ($DEB_VERSION-1) unstable; urgency=medium

  * Package built from keydesk commit $commit.

 -- $DEB_MAINTAINER  $(date -u -R -d "@$SOURCE_DATE_EPOCH")
CHANGES
  gzip -9n <"$STAGE/$p.changelog" >"$STAGE/$p.changelog.gz"
  # The pages' dates are fixed in their sources, so rebuilds are byte-identical.
  if [ "$p" = keydesk ]; then
    # keydesk's pages are generated from its command tree (app/cli/clidoc).
    mkdir -p "$STAGE/man"
    for m in packaging/man/keydesk/*.1; do gzip -9n <"$m" >"$STAGE/man/$(basename "$m").gz"; done
  else
    gzip -9n <"packaging/man/$p.1" >"$STAGE/$p.1.gz"
  fi
  "${NFPM[@]}" package --packager deb --config "packaging/nfpm/$p.yaml" --target "$DIST/"
done

echo "package: fyne package -os linux"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
build=$(git rev-list --count HEAD)
# fyne package rewrites FyneApp.toml (it bumps Build), so it gets a copy.
mkdir "$tmp/src" "$tmp/out"
# The tarball carries one program: keydesk-desk, installed as keydesk (with
# arguments it is the command line too).
cp cmd/keydesk-desk/*.go cmd/keydesk-desk/FyneApp.toml "$tmp/src/"
cp "$STAGE/keydesk-desk" "$tmp/keydesk"
(cd "$tmp/out" && "${FYNE[@]}" package --os linux --release \
  --src "$tmp/src" --executable "$tmp/keydesk" \
  --name keydesk --app-id io.keydesk.Keydesk --app-version "$app_version" --app-build "$build" \
  --icon "$OLDPWD/assets/icons/hicolor/512x512/apps/io.keydesk.Keydesk.png")
mv "$tmp/out/keydesk.tar.xz" "$DIST/keydesk_${DEB_VERSION}_linux_amd64.tar.xz"

ls -1 "$DIST"/*.deb "$DIST"/*.tar.xz
