// Package practiceroots holds only a test: the practice-mode attestation
// roots the registry embeds as data (registry/attest/roots/practice-*.pem,
// since the registry may not import the device layer) must be the roots the
// virtual YubiKey in device/virtual really issues under.
package practiceroots
