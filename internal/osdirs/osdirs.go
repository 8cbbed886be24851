// Package osdirs says where keydesk keeps per-user data on each system:
// the XDG base directories on Linux and other Unix systems, %LOCALAPPDATA%
// on Windows (os.UserCacheDir; data that belongs to this machine, not a
// roaming profile) and ~/Library/Application Support on macOS
// (os.UserConfigDir). Settings use os.UserConfigDir everywhere.
package osdirs

import "fmt"

// Data is the base directory for data keydesk keeps (the outbox, the
// embedded registry, the enrolment journal): $XDG_DATA_HOME or
// ~/.local/share on Linux.
func Data() (string, error) {
	d, err := data()
	if err != nil {
		return "", fmt.Errorf("finding the data directory: %w", err)
	}
	return d, nil
}

// State is the base directory for state that may be lost without harm
// (practice mode's virtual keys): $XDG_STATE_HOME or ~/.local/state on Linux.
func State() (string, error) {
	d, err := state()
	if err != nil {
		return "", fmt.Errorf("finding the state directory: %w", err)
	}
	return d, nil
}
