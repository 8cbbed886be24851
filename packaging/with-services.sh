#!/usr/bin/env bash
# Runs a command inside a private session bus with an unlocked gnome-keyring,
# so keydesk's OS-keyring code meets a real Secret Service. Tests start their
# own pcscd and PostgreSQL (see device/virtual/pcscd and registry/pgtest) and
# stop them when they finish.
set -euo pipefail
if [ -z "${KEYDESK_IN_SESSION:-}" ] && command -v dbus-run-session >/dev/null 2>&1; then
  export KEYDESK_IN_SESSION=1
  exec dbus-run-session -- "$0" "$@"
fi
keyrings=""
if command -v gnome-keyring-daemon >/dev/null 2>&1 && [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
  # The test keyring's password is not a secret: it guards a throwaway
  # keyring that lives only as long as this session bus, in a directory of
  # its own: daemons of concurrent runs sharing ~/.local/share/keyrings
  # rewrite one file and drop each other's items.
  # The bus may start the daemon itself (org.freedesktop.secrets
  # activation), so the bus's activation environment gets the directory too.
  keyrings="$(mktemp -d)"
  XDG_DATA_HOME="$keyrings" dbus-update-activation-environment XDG_DATA_HOME 2>/dev/null || true
  eval "$(printf 'keydesk-test' | XDG_DATA_HOME="$keyrings" gnome-keyring-daemon --unlock --components=secrets 2>/dev/null)" || true
  export GNOME_KEYRING_CONTROL
  # The daemon prints its environment before it owns the Secret Service's
  # bus name; a client that came first would make the bus start a second,
  # locked daemon. Wait for the name (at most 10 s).
  for _ in $(seq 100); do
    dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
      org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true' && break
    sleep 0.1
  done
fi
if [ -z "$keyrings" ]; then
  exec "$@"
fi
rc=0
"$@" || rc=$?
rm -rf "$keyrings"
exit "$rc"
