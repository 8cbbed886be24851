//go:build !windows

package fidokey

// needsElevation is false off Windows: access to hidraw is granted per
// device (udev's uaccess), never by running as root.
func needsElevation() bool { return false }
