package ctap

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
)

// state is what a YubiKey keeps across power cycles. Reset wipes all of it
// but the attestation key and certificate, which are the factory's.
type state struct {
	Version int `json:"version"`
	// WrapKey encrypts the private keys of credentials into their IDs.
	WrapKey []byte `json:"wrap_key"`
	// PINHash is LEFT(SHA-256(PIN), 16) (CTAP 2.1 §6.5.5.5); empty when no PIN is set.
	PINHash        []byte `json:"pin_hash,omitempty"`
	PINCodePoints  int    `json:"pin_code_points,omitempty"`
	PINRetries     int    `json:"pin_retries"`
	MinPINLength   int    `json:"min_pin_length"`
	ForcePINChange bool   `json:"force_pin_change,omitempty"`
	// SignCount is the key's global signature counter.
	SignCount    uint32        `json:"sign_count"`
	Resident     []*credential `json:"resident,omitempty"`
	AttestKey    []byte        `json:"attest_key"`  // PKCS #8, P-256
	AttestCert   []byte        `json:"attest_cert"` // DER
	SerialNumber uint32        `json:"serial"`
}

const stateVersion = 1

// credential is a discoverable credential as stored on the key.
type credential struct {
	ID          []byte `json:"id"` // the wrapped private key, see wrap
	RPID        string `json:"rp_id"`
	RPName      string `json:"rp_name,omitempty"`
	UserID      []byte `json:"user_id"`
	UserName    string `json:"user_name,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
	Created     uint64 `json:"created"` // order of creation, newest highest
}

func newState(serial uint32) (state, error) {
	st := state{Version: stateVersion, PINRetries: defaultPINRetries, MinPINLength: 4, SerialNumber: serial}
	st.WrapKey = make([]byte, 32)
	if _, err := rand.Read(st.WrapKey); err != nil {
		return state{}, err
	}
	key, cert, err := issueAttestation(serial)
	if err != nil {
		return state{}, fmt.Errorf("issuing attestation certificate: %w", err)
	}
	st.AttestKey, st.AttestCert = key, cert
	return st, nil
}

// MarshalState returns the authenticator's persistent state as JSON. It
// contains private keys in the clear (see the package comment).
func (a *Authenticator) MarshalState() ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return json.Marshal(a.st)
}

// UnmarshalState replaces the authenticator's state with one MarshalState
// produced, and resets its transient state as a power-up would.
func (a *Authenticator) UnmarshalState(data []byte) error {
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("decoding fido state: %w", err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("fido state version %d: want %d", st.Version, stateVersion)
	}
	if len(st.WrapKey) != 32 || len(st.AttestKey) == 0 || len(st.AttestCert) == 0 {
		return fmt.Errorf("fido state incomplete")
	}
	if st.PINRetries < 0 || st.PINRetries > defaultPINRetries || (len(st.PINHash) != 0 && len(st.PINHash) != 16) {
		return fmt.Errorf("fido state has an invalid pin record")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st = st
	return a.powerUp()
}

// AttestationCertificate returns the DER certificate that signs this key's
// packed attestation statements.
func (a *Authenticator) AttestationCertificate() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]byte(nil), a.st.AttestCert...)
}

func pinHash(pin []byte) []byte {
	h := sha256.Sum256(pin)
	return h[:16]
}
