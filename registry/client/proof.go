package client

import (
	"context"
	"encoding/json"
	"net/url"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/credential"
)

// IssuedChallenge is POST /v1/challenges' answer: a single-use nonce to be
// signed by the key, and what to sign it with.
type IssuedChallenge struct {
	Challenge registry.Challenge `json:"challenge"`
	// RPID and FIDO2CredentialID are set for a fido2 challenge.
	RPID              string `json:"rp_id,omitempty"`
	FIDO2CredentialID []byte `json:"fido2_credential_id,omitempty"`
	// Slot is set for a piv challenge ("9a").
	Slot string `json:"slot,omitempty"`
}

// Challenge asks for a challenge to prove that key keyID holds credential
// credentialID (the registry's id of a FIDO2 credential or PIV slot); kind
// is "fido2" or "piv". Issuing writes nothing.
func (c *Client) Challenge(ctx context.Context, keyID, kind, credentialID string) (IssuedChallenge, error) {
	b, err := json.Marshal(map[string]string{"key_id": keyID, "kind": kind, "credential_id": credentialID})
	if err != nil {
		return IssuedChallenge{}, err
	}
	var out IssuedChallenge
	_, _, err = c.do(ctx, "POST", "/v1/challenges", b, nil, &out)
	return out, err
}

// VerificationResult is the registry's verdict on a signed challenge and
// what it did to the key.
type VerificationResult struct {
	registry.Verification
	KeyStatus    registry.KeyStatus `json:"key_status"`
	KeyActivated bool               `json:"key_activated"`
}

// VerifyFIDO2 sends a FIDO2 assertion over challenge challengeID. A
// signature the registry does not accept is a result with OK false.
func (c *Client) VerifyFIDO2(ctx context.Context, challengeID string, a credential.Assertion) (VerificationResult, error) {
	var out VerificationResult
	err := c.write(ctx, "POST", "/v1/verifications", map[string]any{"challenge_id": challengeID, "fido2": a}, &out, nil)
	return out, err
}

// VerifyPIV sends a PIV signature over challenge challengeID's nonce.
func (c *Client) VerifyPIV(ctx context.Context, challengeID string, signature []byte) (VerificationResult, error) {
	var out VerificationResult
	err := c.write(ctx, "POST", "/v1/verifications", map[string]any{"challenge_id": challengeID, "piv": map[string][]byte{"signature": signature}}, &out, nil)
	return out, err
}

// KeyBySerial finds the key with a serial (GET /v1/keys?serial=), with its
// credentials; registry.ErrNotFound when no key has it.
func (c *Client) KeyBySerial(ctx context.Context, serial string) (KeyDetail, error) {
	var k KeyDetail
	_, _, err := c.do(ctx, "GET", "/v1/keys?serial="+url.QueryEscape(serial), nil, nil, &k)
	return k, err
}
