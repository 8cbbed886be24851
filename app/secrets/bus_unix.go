//go:build unix && !darwin

package secrets

import (
	"fmt"
	"os"
)

// noBus is the session-bus address PreventBusAutolaunch sets: a transport
// no D-Bus library knows, so every attempt to connect fails at once.
const noBus = "disabled:"

// sessionBus says whether a D-Bus session bus can be found the way
// github.com/godbus/dbus looks for one (conn.go getSessionBusAddress and
// conn_other.go tryDiscoverDbusSessionBusAddress, v5.2): the
// DBUS_SESSION_BUS_ADDRESS variable, else /run/user/UID/bus or
// /run/user/UID/dbus-session. When none is found, godbus runs dbus-launch,
// which starts a bus daemon that nobody stops.
func sessionBus() bool {
	switch a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a {
	case "", "autolaunch:":
	case noBus:
		return false
	default:
		return true
	}
	run := fmt.Sprintf("/run/user/%d/", os.Getuid())
	for _, f := range []string{"bus", "dbus-session"} {
		if _, err := os.Stat(run + f); err == nil {
			return true
		}
	}
	return false
}

// PreventBusAutolaunch makes sure nothing in this process starts a D-Bus
// session bus: with no session bus to be found it sets
// DBUS_SESSION_BUS_ADDRESS to an address that fails to connect, so the
// GUI toolkit's desktop-portal calls and the keyring fail quietly instead
// of running dbus-launch (whose bus daemon, and the keyring daemon that
// bus activates, would outlive keydesk). Call it before the GUI starts.
func PreventBusAutolaunch() {
	if !sessionBus() {
		os.Setenv("DBUS_SESSION_BUS_ADDRESS", noBus)
	}
}
