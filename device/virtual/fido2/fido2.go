// Package fido2 puts together the FIDO2 side of one virtual YubiKey: the
// CTAP 2.1 authenticator (package ctap) on its pseudo-terminal transport
// (package ptyhid), with its state loaded from and saved as JSON. A composite
// virtual key calls Start once per key.
package fido2

import (
	"fmt"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/ctap"
	"github.com/keydesk/keydesk/device/virtual/ptyhid"
)

// Applet is a running FIDO2 applet reachable by libfido2 at Path.
type Applet struct {
	Auth *ctap.Authenticator
	Dev  *ptyhid.Device
}

// Start starts the FIDO2 applet of key. state, when not empty, is what State
// returned earlier (credentials, PIN, attestation key); otherwise the applet
// starts fresh. link is the stable path clients open (see ptyhid.Open).
func Start(key *virtual.Key, state []byte, link string) (*Applet, error) {
	auth, err := ctap.New(key)
	if err != nil {
		return nil, fmt.Errorf("creating fido2 authenticator: %w", err)
	}
	if len(state) > 0 {
		if err := auth.UnmarshalState(state); err != nil {
			auth.Close()
			return nil, err
		}
	}
	dev, err := ptyhid.Open(key, auth, link)
	if err != nil {
		auth.Close()
		return nil, fmt.Errorf("opening fido2 pty transport: %w", err)
	}
	return &Applet{Auth: auth, Dev: dev}, nil
}

// Path is where libfido2 and the fido2-* tools reach the key.
func (a *Applet) Path() string { return a.Dev.Path() }

// State is the applet's persistent state as JSON. It holds private keys in
// the clear (see package ctap): store it as a secret.
func (a *Applet) State() ([]byte, error) { return a.Auth.MarshalState() }

// Close stops the transport (the path disappears) and the authenticator.
func (a *Applet) Close() error {
	err := a.Dev.Close()
	a.Auth.Close()
	return err
}
