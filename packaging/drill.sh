#!/usr/bin/env bash
# make drill: the migration drill (cmd/keydesk-rp's TestMigrationDrill) as a
# command: a keydesk-registry process, the reference relying party, practice
# keys through libfido2 and software keys, a migration with a canary, faults
# and a rollback (docs/relying-party.md). It prints the drill's table of
# figures and exits 1 when the drill failed.
#
# DRILL_USERS sets the size (default 200; at least 20). DRILL_DOC=1 also
# writes the table to docs/drill.md (as `make bench` does at 2,000 users).
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
users=${DRILL_USERS:-200}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
KEYDESK_DRILL_USERS=$users KEYDESK_DRILL_OUT="$work/drill.md" KEYDESK_DRILL_COMMAND="make drill DRILL_USERS=$users" \
	"$GO" test -count=1 -run '^TestMigrationDrill$' -timeout 60m ./cmd/keydesk-rp >"$work/log" 2>&1 || status=1
if [[ $status != 0 ]]; then
	cat "$work/log" >&2
fi
if [[ ! -s $work/drill.md ]]; then
	echo "drill: no figures (the drill stopped before it measured them)" >&2
	exit 1
fi
cat "$work/drill.md"
if [[ ${DRILL_DOC:-} == 1 ]]; then
	cp "$work/drill.md" docs/drill.md
	echo "wrote docs/drill.md" >&2
fi
exit $status
