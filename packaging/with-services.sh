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
if command -v gnome-keyring-daemon >/dev/null 2>&1 && [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
  # The test keyring's password is not a secret: it guards a throwaway
  # keyring that lives only as long as this session bus.
  eval "$(printf 'keydesk-test' | gnome-keyring-daemon --unlock --components=secrets 2>/dev/null)" || true
  export GNOME_KEYRING_CONTROL
fi
exec "$@"
