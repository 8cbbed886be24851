#!/usr/bin/env bash
# make bench: runs the benchmarks that carry keydesk's figures, one after
# another in this process tree, on the same virtual keys and databases, and
# writes docs/benchmarks.md from that one run (internal/evidence/benchdoc).
# The raw output is kept beside it as docs/benchmarks.txt, and the
# migration drill's table of figures as docs/drill.md.
#
# BENCH_QUICK=1 runs each benchmark briefly, to check the pipeline; its
# document goes to a temporary directory (printed at the end), never over
# docs/. BENCH_OUT_DIR names another directory for the two files.
# The registry benchmarks run at reduced sizes so that the whole run stays
# under 10 minutes; set KEYDESK_BENCH_USERS, KEYDESK_BENCH_MIGRATION_USERS
# KEYDESK_SIM_USERS and KEYDESK_DRILL_USERS to change them (`make bench-registry` runs the
# registry's benchmarks at full size, docs/registry.md).
#
# BENCH_ONLY=cli runs only the command-line comparisons (BenchmarkTools in
# ./internal/evidence, `make bench-cli`); BENCH_ONLY=desktop only the
# desktop app's benchmarks (BenchmarkStart and BenchmarkRound in
# ./cmd/keydesk: first frame, resident memory after start and after the
# full round; BenchmarkChangeFromElsewhere in ./app/ui/keysui: a change
# made outside the window shown on Keys; `make bench-desktop`). Their document goes to a temporary
# directory unless BENCH_OUT_DIR is set, never over docs/benchmarks.md.
#
# BENCH_COMMAND is the make target that ran this script, for the
# documents' headers ("make bench" when unset); the header names the
# command with the BENCH_QUICK and BENCH_ONLY it ran with (those the target
# does not set itself), so that running it again gives the same run.
#
# Running it again starts from nothing: every benchmark builds its binaries
# and starts its keys, pcscd and databases afresh. A benchmark that fails is
# named in the document and the script exits 1 after writing it.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
raw="$work/raw.txt"
: >"$raw"

quick=${BENCH_QUICK:-}
only=${BENCH_ONLY:-}
case $only in "" | cli | desktop) ;; *) echo "BENCH_ONLY must be empty, cli or desktop, not $only" >&2; exit 2 ;; esac
n() { if [[ $quick == 1 ]]; then echo "$2"; else echo "$1"; fi; }

export KEYDESK_BENCH_USERS=${KEYDESK_BENCH_USERS:-$(n 10000 1000)}
export KEYDESK_BENCH_MIGRATION_USERS=${KEYDESK_BENCH_MIGRATION_USERS:-$(n 25000 1000)}
export KEYDESK_SIM_USERS=${KEYDESK_SIM_USERS:-20000} # smaller runs miss the simulation's own checks (1 % canary)
export KEYDESK_DRILL_USERS=${KEYDESK_DRILL_USERS:-$(n 2000 200)}

# The command as the headers show it: the make target, with the modes it
# does not set itself in front (make bench-cli and bench-desktop set
# BENCH_ONLY).
command=${BENCH_COMMAND:-make bench}
if [[ -z ${BENCH_COMMAND:-} && -n $only ]]; then command="BENCH_ONLY=$only $command"; fi
if [[ -n $quick ]]; then command="BENCH_QUICK=$quick $command"; fi
out=${BENCH_OUT_DIR:-}
if [[ -z $out ]]; then
	if [[ $quick == 1 || -n $only ]]; then out=$(mktemp -d "${TMPDIR:-/tmp}/keydesk-bench-quick.XXXXXX"); else out=docs; fi
fi
mkdir -p "$out"

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
failed=0

bench() { # bench PACKAGE PATTERN BENCHTIME COUNT
	local t0=$SECONDS l0
	l0=$(cut -d' ' -f1 /proc/loadavg)
	echo "== $1 $2 ($3, count $4)" >&2
	if ! "$GO" test -run '^$' -bench "$2" -benchtime "$3" -count "$4" -timeout 20m "$1" 2>&1 | tee -a "$raw"; then
		echo "benchdoc: failed $1 $2" >>"$raw"
		failed=1
	fi
	# The 1-minute load average before and after, for the package's section.
	echo "benchdoc: load $1 $l0 $(cut -d' ' -f1 /proc/loadavg)" >>"$raw"
	echo "== $1 took $((SECONDS - t0)) s" >&2
}

# keydesk beside ykman, yubico-piv-tool and fido2-token (process start
# included), and a full enrolment of one key beside the same steps scripted
# with ykman and libfido2's tools.
# BENCH_ONLY=cli has the time for twice the calls, for steadier medians.
tools=$(n 20x 3x)
if [[ $only == cli && $quick != 1 ]]; then tools=40x; fi
if [[ $only != desktop ]]; then
	bench ./internal/evidence '^BenchmarkTools$' "$tools" 1
fi
if [[ -z $only ]]; then
	bench ./internal/evidence '^BenchmarkEnrol$' "$(n 10x 2x)" 1
	# The device layer's overhead above the transport it needs.
	bench ./device/pivkey 'Overhead' "$(n 300x 20x)" "$(n 5 1)"
	bench ./device/fidokey 'Overhead' "$(n 300x 20x)" "$(n 5 1)"
	# Hotplug: insertion and removal to the changed list.
	bench ./device/discover 'Hotplug' "$(n 10x 2x)" 1
	# keydesk's own time per key in a batch enrolment (docs/workflows.md).
	bench ./app/enrol 'BatchEnrol' "$(n 20x 2x)" 1
	# The registry, beside the raw database, SQLite and PostgreSQL: every
	# benchmark of its store and API packages.
	bench ./registry/store/sqlstore '.' 1x 1
	bench ./registry/server '.' "$(n 3s 1x)" 1
	bench ./registry/simulation '.' 1x 1
	# A login server's validity replica at 1M credentials (docs/relying-party.md).
	bench ./registry/validity '.' "$(n 2s 1x)" 1
	# The migration drill through the reference relying party, 2,000 users; it
	# writes its table of figures beside benchmarks.md (docs/drill.md).
	KEYDESK_DRILL_OUT="$work/drill.md" KEYDESK_DRILL_COMMAND="$command (KEYDESK_DRILL_USERS=$KEYDESK_DRILL_USERS)" \
		bench ./cmd/keydesk-rp 'MigrationDrill' 1x 1
fi
if [[ $only != cli ]]; then
	# The desktop app's start, when the tree has its benchmark.
	# (The list is read whole first: grep -q would stop reading early, and
	# pipefail would count go test's broken pipe as "no benchmark".)
	listed=$("$GO" test -list '^BenchmarkStart$' ./cmd/keydesk 2>/dev/null || true)
	if grep -qx 'BenchmarkStart' <<<"$listed"; then
		bench ./cmd/keydesk '^BenchmarkStart$' "$(n 10x 2x)" 1
	else
		echo "benchdoc: unavailable github.com/keydesk/keydesk/cmd/keydesk BenchmarkStart" >>"$raw"
	fi
	# The desktop app's full round (enrol, verify, a PIN blocked, the
	# helpdesk's unblock, Activity) driven with xdotool: memory after it.
	bench ./cmd/keydesk '^BenchmarkRound$' "$(n 3x 1x)" 1
	# A change made outside the window shown on the Keys screen.
	bench ./app/ui/keysui '^BenchmarkChangeFromElsewhere$' "$(n 10x 2x)" 1
fi

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
finished=$(date -u +%Y-%m-%dT%H:%M:%SZ)
{
	echo "# $command $started to $finished; load average (1, 5, 15 min) $load_start at the start, $load_end at the end"
	# Only the sizes, and only when the registry's benchmarks ran.
	if [[ -z $only ]]; then
		echo "# sizes: KEYDESK_BENCH_USERS=$KEYDESK_BENCH_USERS KEYDESK_BENCH_MIGRATION_USERS=$KEYDESK_BENCH_MIGRATION_USERS KEYDESK_SIM_USERS=$KEYDESK_SIM_USERS KEYDESK_DRILL_USERS=$KEYDESK_DRILL_USERS"
	fi
	cat "$raw"
} >"$work/benchmarks.txt"
if "$GO" run ./internal/evidence/benchdoc -in "$work/benchmarks.txt" -out "$work/benchmarks.md" -command "$command" \
	-started "$started" -finished "$finished" -load-start "$load_start" -load-end "$load_end"; then
	mv "$work/benchmarks.txt" "$out/benchmarks.txt"
	mv "$work/benchmarks.md" "$out/benchmarks.md"
	if [[ -s $work/drill.md ]]; then mv "$work/drill.md" "$out/drill.md"; fi
	echo "wrote $out/benchmarks.md and $out/benchmarks.txt ($started to $finished, load $load_start to $load_end)" >&2
else
	echo "benchdoc failed; $out/benchmarks.md left as it was" >&2
	exit 1
fi
if [[ $failed == 1 ]]; then
	echo "some benchmarks failed; $out/benchmarks.md names them" >&2
	exit 1
fi
