// Package registry holds the key registry's model: users, their keys, the
// FIDO2 credentials and PIV slots on those keys, verifications, escrow blobs,
// temporary access passes, key sets and audit entries, and the typed errors
// every layer above the store returns.
package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// UserStatus is a user's standing in the organisation.
type UserStatus string

const (
	UserActive    UserStatus = "active"
	UserSuspended UserStatus = "suspended"
	UserDeleted   UserStatus = "deleted"
)

// User is a person who holds keys.
type User struct {
	ID          string     `json:"id"`
	ExternalID  string     `json:"external_id"`
	DisplayName string     `json:"display_name"`
	Email       string     `json:"email"`
	Groups      []string   `json:"groups"`
	Status      UserStatus `json:"status"`
	Version     int64      `json:"version"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// KeyRole says whether a key is a user's everyday key or the backup.
type KeyRole string

const (
	RolePrimary KeyRole = "primary"
	RoleBackup  KeyRole = "backup"
)

// KeyStatus is a key's lifecycle state.
type KeyStatus string

const (
	KeyPending   KeyStatus = "pending"
	KeyActive    KeyStatus = "active"
	KeySuspended KeyStatus = "suspended"
	KeyLost      KeyStatus = "lost"
	KeyRevoked   KeyStatus = "revoked"
	KeyRetired   KeyStatus = "retired"
)

// Valid reports whether s is one of the defined states.
func (s KeyStatus) Valid() bool {
	switch s {
	case KeyPending, KeyActive, KeySuspended, KeyLost, KeyRevoked, KeyRetired:
		return true
	}
	return false
}

// InService reports whether a key in state s may carry credentials in the
// validity view (only an active key does) or be given new ones (any state
// but lost, revoked and retired).
func (s KeyStatus) InService() bool {
	return s == KeyPending || s == KeyActive || s == KeySuspended
}

// Key is one hardware security key.
type Key struct {
	ID        string    `json:"id"`
	Serial    string    `json:"serial"`
	Model     string    `json:"model"`
	Firmware  string    `json:"firmware"`
	Label     string    `json:"label"`
	OwnerID   string    `json:"owner_id"`
	Role      KeyRole   `json:"role"`
	Status    KeyStatus `json:"status"`
	KeySets   []string  `json:"key_sets"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// AttestationVerdict is what the registry itself concluded from the
// attestation a key gave for a credential (registry/attest checks it; the
// client's opinion is not asked).
type AttestationVerdict string

const (
	// VerdictGenuine: the attestation verifies, is for the registered key,
	// and chains to a root the registry trusts.
	VerdictGenuine AttestationVerdict = "genuine"
	// VerdictUntrustedRoot: the attestation verifies but its chain ends at
	// a root the registry does not trust (or it is self attestation).
	VerdictUntrustedRoot AttestationVerdict = "untrusted-root"
	// VerdictInvalid: something in the attestation does not verify or does
	// not match the registered key.
	VerdictInvalid AttestationVerdict = "invalid"
	// VerdictNone: no attestation was given (or none was checked, for
	// records made before the registry checked attestation).
	VerdictNone AttestationVerdict = "none"
)

// FIDOCredential is a WebAuthn credential record (WebAuthn L2 §6.1, §4
// "credential record").
type FIDOCredential struct {
	ID                string `json:"id"`
	KeyID             string `json:"key_id"`
	CredentialID      []byte `json:"credential_id"`
	PublicKey         []byte `json:"public_key"` // COSE_Key (RFC 9052 §7)
	AAGUID            []byte `json:"aaguid"`
	RPID              string `json:"rp_id"`
	SignCount         uint32 `json:"sign_count"`
	CredProtect       int    `json:"cred_protect"`
	AttestationObject []byte `json:"attestation_object,omitempty"`
	// AttestationClientDataHash is the SHA-256 of the clientDataJSON the
	// attestation signature covers (WebAuthn L2 §6.5.2).
	AttestationClientDataHash []byte `json:"attestation_client_data_hash,omitempty"`
	// AttestationClientDataJSON is that clientDataJSON itself (WebAuthn L2
	// §5.2.1), so that the registration can be verified again end to end
	// by any WebAuthn library. Credentials registered before the registry
	// kept it have only the hash.
	AttestationClientDataJSON []byte             `json:"attestation_client_data_json,omitempty"`
	Verdict                   AttestationVerdict `json:"verdict"`
	VerdictReason             string             `json:"verdict_reason,omitempty"`
	CloneSuspected            bool               `json:"clone_suspected"`
	// Pending: the credential was added to a key already in service
	// without an attestation the registry trusts, and stays out of the
	// validity view until it passes a verification (CredentialPending).
	Pending   bool      `json:"pending"`
	CreatedAt time.Time `json:"created_at"`
}

// PIVSlot is a key slot on the PIV applet (NIST SP 800-73-4 Part 1 §3.1).
type PIVSlot struct {
	ID              string `json:"id"`
	KeyID           string `json:"key_id"`
	Slot            string `json:"slot"`       // "9a", "9c", "9d", "9e"
	PublicKey       []byte `json:"public_key"` // PKIX DER
	Certificate     []byte `json:"certificate,omitempty"`
	AttestationCert []byte `json:"attestation_certificate,omitempty"`
	// AttestationIntermediate is the key's F9 device certificate, which
	// signs AttestationCert.
	AttestationIntermediate []byte             `json:"attestation_intermediate,omitempty"`
	Verdict                 AttestationVerdict `json:"verdict"`
	VerdictReason           string             `json:"verdict_reason,omitempty"`
	// Pending: as FIDOCredential.Pending.
	Pending   bool      `json:"pending"`
	CreatedAt time.Time `json:"created_at"`
}

// CredentialPending says whether a credential with verdict v, added to a
// key in state keyStatus, is held back from the validity view until it
// passes a verification of its own. Credentials registered with a key at
// enrolment (the key pending) are not: the key as a whole proves
// possession before any of them counts. A credential added later to a key
// already in service counts at once only when its attestation is genuine;
// otherwise nothing shows it lives on that key.
func CredentialPending(keyStatus KeyStatus, v AttestationVerdict) bool {
	return keyStatus != KeyPending && v != VerdictGenuine
}

// Challenge is a single-use, time-limited nonce a key must sign.
type Challenge struct {
	ID           string    `json:"id"`
	KeyID        string    `json:"key_id"`
	Kind         string    `json:"kind"` // "fido2" or "piv"
	CredentialID string    `json:"credential_id"`
	Nonce        []byte    `json:"nonce"`
	ExpiresAt    time.Time `json:"expires_at"`
	Used         bool      `json:"used"`
}

// Verification records one checked signature.
type Verification struct {
	ID             string    `json:"id"`
	ChallengeID    string    `json:"challenge_id"`
	KeyID          string    `json:"key_id"`
	Kind           string    `json:"kind"`
	CredentialID   string    `json:"credential_id"`
	OK             bool      `json:"ok"`
	Reason         string    `json:"reason,omitempty"`
	CloneSuspected bool      `json:"clone_suspected"`
	At             time.Time `json:"at"`
}

// EscrowBlob is a secret the client encrypted with age to the helpdesk
// recipients; the registry never sees the plaintext.
type EscrowBlob struct {
	KeyID     string    `json:"key_id"`
	Kind      string    `json:"kind"` // "piv-puk", "piv-management-key", …
	Blob      []byte    `json:"blob"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
}

// TemporaryAccessPass lets a user in without a key for a limited time.
// Only its hash is stored; the pass is shown once when issued.
// A pass is single use: redeeming it records RedeemedAt.
type TemporaryAccessPass struct {
	ID         string     `json:"id"`
	UserID     string     `json:"user_id"`
	Reason     string     `json:"reason"`
	ExpiresAt  time.Time  `json:"expires_at"`
	CreatedAt  time.Time  `json:"created_at"`
	RedeemedAt *time.Time `json:"redeemed_at,omitempty"`
	// Status is "active", "redeemed" or "expired" when read back.
	Status string `json:"status,omitempty"`
}

// AccessPassStatus says whether p can still be redeemed at now.
func (p TemporaryAccessPass) AccessPassStatus(now time.Time) string {
	switch {
	case p.RedeemedAt != nil:
		return "redeemed"
	case !now.Before(p.ExpiresAt):
		return "expired"
	}
	return "active"
}

// KeySet is a named group of keys (for example one hardware generation).
type KeySet struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
}

// Change is one entry in the change feed. All changes of one committed
// change set share a Seq.
type Change struct {
	Seq      int64  `json:"seq"`
	Index    int    `json:"index"`
	Entity   string `json:"entity"`
	EntityID string `json:"entity_id"`
	Op       string `json:"op"`
	Data     []byte `json:"data"`
}

// ValidCredential is one row of the validity view: a credential an auth
// server must accept for a user.
type ValidCredential struct {
	UserID       string `json:"user_id"`
	ExternalID   string `json:"external_id"`
	KeyID        string `json:"key_id"`
	Serial       string `json:"serial"`
	Kind         string `json:"kind"` // "fido2" or "piv"
	CredentialID []byte `json:"credential_id,omitempty"`
	RPID         string `json:"rp_id,omitempty"`
	Slot         string `json:"slot,omitempty"`
	PublicKey    []byte `json:"public_key"`
}

// Validity is the validity view at one version. Version is the sequence
// number of the last committed change set it includes.
type Validity struct {
	Version     int64             `json:"version"`
	Credentials []ValidCredential `json:"credentials"`
}

// Errors a caller must act on. Check with errors.Is / errors.As.
var (
	ErrNotFound = errors.New("not found")
	// ErrLastKey: the change would take the user's last credential out of
	// the validity view and no break-glass reason was given.
	ErrLastKey = errors.New("last active key of the user")
	// ErrAccessPass: the temporary access pass is unknown, already
	// redeemed or expired.
	ErrAccessPass = errors.New("access pass unusable")
	// ErrChallenge: the challenge is unknown, used or expired.
	ErrChallenge = errors.New("challenge unusable")
	// ErrIdempotencyMismatch: an idempotency key was reused for a different request.
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	// ErrProofRequired: a key would become active without a verification
	// that counts: none ever (and no break-glass reason was given), or, for
	// a key that was lost or revoked, none since (no reason lifts that).
	ErrProofRequired = errors.New("key has not proven possession with a verification")
	// ErrFreshProofRequired is ErrProofRequired for a key that was lost or
	// revoked: it needs a verification made since, and no break-glass
	// reason stands in for one (a revoked key counts as compromised).
	ErrFreshProofRequired = fmt.Errorf("%w since it was lost or revoked", ErrProofRequired)
	// ErrUserNotActive: the user is suspended or deleted, so nothing may
	// grant them access (an access pass, a self token).
	ErrUserNotActive = errors.New("user is not active")
	// ErrKeyNotInService: the key is lost, revoked or retired and takes no
	// new credentials.
	ErrKeyNotInService = errors.New("key is not in service")
)

// ConflictError reports an optimistic-concurrency failure: the caller's
// expected version is not the current one. Current holds the current state.
type ConflictError struct {
	Entity  string
	ID      string
	Want    int64
	Have    int64
	Current any
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s %s: version %d expected, current is %d", e.Entity, e.ID, e.Want, e.Have)
}

// InvalidError reports bad input, with a machine-readable code.
type InvalidError struct {
	Code    string
	Message string
}

func (e *InvalidError) Error() string { return e.Code + ": " + e.Message }

// Invalid builds an *InvalidError.
func Invalid(code, format string, args ...any) error {
	return &InvalidError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// DuplicateError reports a unique value (external id, serial, credential id)
// that is already registered.
type DuplicateError struct {
	Entity string
	Field  string
}

func (e *DuplicateError) Error() string {
	return e.Entity + " with this " + e.Field + " already exists"
}

// AuditEntry is one entry of the registry's audit log as GET /v1/audit
// shows it.
type AuditEntry struct {
	Seq      int64           `json:"seq"`
	Time     time.Time       `json:"time"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Payload  json.RawMessage `json:"payload"`
	PrevHash string          `json:"prev_hash"`
	Hash     string          `json:"hash"`
}

// InventoryKey is a key as GET /v1/inventory shows it, with the time of its
// last successful verification (nil when it never passed one).
type InventoryKey struct {
	Key
	LastVerifiedAt *time.Time `json:"last_verified_at,omitempty"`
	// FIDO2Models names the authenticator model of each FIDO2 credential
	// on the key, from the FIDO Metadata Service BLOB the registry holds
	// (absent when it holds none).
	FIDO2Models []FIDOModel `json:"fido2_models,omitempty"`
}

// FIDOModel is a FIDO2 credential's authenticator model as the FIDO
// Metadata Service v3 names it by AAGUID (registry/mds).
type FIDOModel struct {
	CredentialID string `json:"credential_id"` // the registry's id of the credential
	KeyID        string `json:"key_id"`
	AAGUID       string `json:"aaguid"`
	// Model is the metadata statement's description; empty when the BLOB
	// has no entry for the AAGUID.
	Model string `json:"model,omitempty"`
	// Status is the newest status report's status (FIDO_CERTIFIED_L1,
	// NOT_FIDO_CERTIFIED, REVOKED, …); Certification the highest
	// certification level any report names.
	Status        string `json:"status,omitempty"`
	Certification string `json:"certification,omitempty"`
}

// InventoryUser is a user with every key they own, as GET /v1/inventory
// shows them.
type InventoryUser struct {
	User User           `json:"user"`
	Keys []InventoryKey `json:"keys"`
}
