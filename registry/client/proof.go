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
	// ActivationRefused says why a pending key that proved possession
	// stayed pending: "escrow_missing" (PIV slots and no escrow blob).
	ActivationRefused string `json:"activation_refused,omitempty"`
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

// FIDO2Reset is what POST /v1/keys/{id}/fido2/reset did.
type FIDO2Reset struct {
	Key     registry.Key              `json:"key"`
	Revoked []string                  `json:"revoked"`
	FIDO2   []registry.FIDOCredential `json:"fido2"`
}

// ResetFIDO2 revokes every FIDO2 credential of key keyID and registers creds
// in their place, in one registry change set, with reason audited.
func (c *Client) ResetFIDO2(ctx context.Context, keyID, reason string, creds []FIDO2Credential) (FIDO2Reset, error) {
	var out FIDO2Reset
	if creds == nil {
		creds = []FIDO2Credential{}
	}
	err := c.write(ctx, "POST", "/v1/keys/"+url.PathEscape(keyID)+"/fido2/reset", map[string]any{"reason": reason, "fido2": creds}, &out, nil)
	return out, err
}

// Recovery actions a helpdesk reports (POST /v1/keys/{id}/recovery-events).
const (
	ActionEscrowOpened    = "escrow_opened"
	ActionPIVPINUnblocked = "piv_pin_unblocked"
	ActionFIDO2Reset      = "fido2_reset"
	ActionDiagnosed       = "diagnosed"
)

// RecoveryEvent records a step done on key keyID itself in the registry's
// audit log, with this client's token as the actor.
func (c *Client) RecoveryEvent(ctx context.Context, keyID, action, note string) error {
	return c.write(ctx, "POST", "/v1/keys/"+url.PathEscape(keyID)+"/recovery-events", map[string]string{"action": action, "note": note}, nil, nil)
}

// AccessPass issues a temporary access pass for a user; the pass is
// returned once and the registry keeps only its hash.
func (c *Client) AccessPass(ctx context.Context, userID, reason, validity string) (string, registry.TemporaryAccessPass, error) {
	var out struct {
		AccessPass registry.TemporaryAccessPass `json:"access_pass"`
		Pass       string                       `json:"pass"`
	}
	err := c.write(ctx, "POST", "/v1/users/"+url.PathEscape(userID)+"/access-passes", map[string]string{"reason": reason, "validity": validity}, &out, nil)
	return out.Pass, out.AccessPass, err
}

// Migrations lists the key migrations.
func (c *Client) Migrations(ctx context.Context) ([]registry.Migration, error) {
	var out struct {
		Migrations []registry.Migration `json:"migrations"`
	}
	_, _, err := c.do(ctx, "GET", "/v1/migrations", nil, nil, &out)
	return out.Migrations, err
}

// Readiness reads a migration's readiness report.
func (c *Client) Readiness(ctx context.Context, migrationID string) (registry.Readiness, error) {
	var out registry.Readiness
	_, _, err := c.do(ctx, "GET", "/v1/migrations/"+url.PathEscape(migrationID)+"/readiness", nil, nil, &out)
	return out, err
}
