//go:build !windows

package discover

// noReaders is false off Windows: pcscd is started on demand by systemd's
// socket (or by the desk), so a context it refuses is a fault to report.
func noReaders(err error) bool { return false }
