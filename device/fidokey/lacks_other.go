//go:build !linux

package fidokey

import "github.com/keydesk/keydesk/device/fidokey/fidoc"

// libfidoLacks is what InfoStatus reports as LibraryLacks: where libfido2
// is linked (the DLL go-libfido2 bundles on Windows), what it lacks.
func libfidoLacks() []string { return fidoc.Missing() }
