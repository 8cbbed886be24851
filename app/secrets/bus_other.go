//go:build !unix || darwin

package secrets

// sessionBus is true where the keyring needs no D-Bus (the Keychain on
// macOS, the Credential Manager on Windows).
func sessionBus() bool { return true }

// PreventBusAutolaunch does nothing where the keyring needs no D-Bus.
func PreventBusAutolaunch() {}
