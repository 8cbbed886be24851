//go:build !linux

package fidoc

// Load reports whether libfido2 is usable. Outside Linux it is linked
// (Windows: the DLL go-libfido2 bundles), so it always is.
func Load() error { return nil }
