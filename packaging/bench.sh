#!/usr/bin/env bash
# make bench: runs the benchmarks that carry keydesk's figures, one after
# another in this process tree, on the same virtual keys and databases, and
# writes docs/benchmarks.md from that one run (internal/evidence/benchdoc).
# The raw output is kept beside it as docs/benchmarks.txt.
#
# BENCH_QUICK=1 runs each benchmark briefly, to check the pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

n() { if [[ ${BENCH_QUICK:-} == 1 ]]; then echo "$2"; else echo "$1"; fi; }

bench() { # bench PACKAGE PATTERN BENCHTIME COUNT
	echo "== $1 $2" >&2
	"$GO" test -run '^$' -bench "$2" -benchtime "$3" -count "$4" -timeout 30m "$1" | tee -a "$raw"
}

# keydesk beside ykman, yubico-piv-tool and fido2-token (process start included).
bench ./internal/evidence 'Tools' "$(n 20x 3x)" 1
# The device layer's overhead above the transport it needs.
bench ./device/pivkey 'Overhead' "$(n 300x 20x)" "$(n 5 1)"
bench ./device/fidokey 'Overhead' "$(n 300x 20x)" "$(n 5 1)"
# Hotplug: insertion and removal to the changed list.
bench ./device/discover 'Hotplug' "$(n 10x 2x)" 1
# The registry beside the raw database, SQLite and PostgreSQL.
bench ./registry/store/sqlstore '.' "$(n 1x 1x)" 1
bench ./registry/server 'Verification' "$(n 5s 1s)" 1
bench ./registry/simulation '.' 1x 1

cp "$raw" docs/benchmarks.txt
"$GO" run ./internal/evidence/benchdoc -in "$raw" -out docs/benchmarks.md -command "make bench"
echo "wrote docs/benchmarks.md" >&2
