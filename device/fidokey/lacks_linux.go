package fidokey

// libfidoLacks is what InfoStatus reports as LibraryLacks. On Linux
// libfido2 is opened on first use (fidoc.Load) and keydesk needs 1.12 or
// newer, which has every function keydesk calls: none, without loading it.
func libfidoLacks() []string { return nil }
