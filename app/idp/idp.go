// Package idp registers keys enrolled at the desk with the identity
// providers an organisation signs in with (Microsoft Entra ID, Ory Kratos),
// and keeps the link — which provider holds which credential under which
// id — in the key registry, the ledger of what went where.
//
// A Connector is one provider. It knows nothing of the UI or of the
// registry; the enrolment use case asks it for creation options, makes the
// credential on the key, hands the result back and records the returned
// method id in the registry.
package idp

import (
	"context"
	"errors"
	"time"
)

// User is the person a credential is registered for, as the provider knows
// them. ProviderUserID is the provider's own id (an Entra object id or UPN,
// a Kratos identity id); empty means the connector resolves it from
// ExternalID/Email.
type User struct {
	ExternalID     string
	Email          string
	DisplayName    string
	ProviderUserID string
}

// CreationOptions are the WebAuthn PublicKeyCredentialCreationOptions
// (WebAuthn L2 §5.4) a provider hands out for one registration. A connector
// whose provider imports the desk's own credential (made for the
// organisation's relying party) returns nil options.
type CreationOptions struct {
	RPID, RPName       string
	UserID             []byte
	UserName           string
	UserDisplayName    string
	Challenge          []byte
	ExcludeCredentials [][]byte
	// ResidentKey is "required", "preferred" or "discouraged" (§5.4.4).
	ResidentKey string
	// UserVerification is "required", "preferred" or "discouraged" (§5.4.4).
	UserVerification string
	// Attestation is "none", "indirect", "direct" or "enterprise" (§5.4.7).
	Attestation string
	// CredProtect is the credProtect extension's policy (CTAP 2.1 §12.1),
	// 0 when not asked; EnforceCredProtect is enforceCredentialProtectionPolicy.
	CredProtect        int
	EnforceCredProtect bool
	// HMACSecret is the hmacCreateSecret extension (CTAP 2.1 §12.5).
	HMACSecret bool
	// Origin is the origin the provider expects in clientDataJSON (WebAuthn
	// L2 §5.8.1); empty means "https://" + RPID.
	Origin  string
	Timeout time.Duration
	// Raw keeps the provider's options as it sent them, for the record.
	Raw []byte
}

// Credential is a credential made on the key, as a WebAuthn relying party
// receives it (WebAuthn L2 §5.2.1), with the COSE public key for providers
// that import credentials instead of verifying an attestation.
type Credential struct {
	ID                []byte
	ClientDataJSON    []byte
	AttestationObject []byte
	PublicKey         []byte // COSE_Key
	AAGUID            [16]byte
	SignCount         uint32
	Transports        []string
	DisplayName       string // the name the provider shows, e.g. "YubiKey 5C NFC 31000001"
	Serial            uint32
}

// Method is a registration as a provider lists it. CredentialID is empty
// when the provider's listing does not return it (Entra's fido2Methods).
type Method struct {
	ID           string
	CredentialID []byte
	DisplayName  string
	AAGUID       string
	Created      time.Time
}

// Connector is one identity provider.
//
// Errors: a provider that cannot be reached or answers 5xx/429 is a
// *TemporaryError (the write is queued and replayed); every refusal the
// provider explains is a *RefusedError with a plain hint.
type Connector interface {
	// Name is the provider's configured name ("entra", "kratos", ...).
	Name() string
	// Options returns the creation options for u, or nil when the provider
	// imports the credential the desk made for the organisation's relying party.
	Options(ctx context.Context, u User) (*CreationOptions, error)
	// Register hands the credential to the provider and returns its method id.
	Register(ctx context.Context, u User, opts *CreationOptions, c Credential) (methodID string, err error)
	// Delete removes a method; a method already gone is not an error.
	Delete(ctx context.Context, u User, methodID string) error
	// List returns the methods the provider holds for u.
	List(ctx context.Context, u User) ([]Method, error)
}

// TemporaryError is a provider that is down, throttling or failing; the
// write can be retried after RetryAfter (zero: the caller's back-off).
type TemporaryError struct {
	Provider   string
	Status     int
	RetryAfter time.Duration
	Err        error
}

func (e *TemporaryError) Error() string {
	return e.Provider + ": temporarily unavailable: " + e.Err.Error()
}
func (e *TemporaryError) Unwrap() error { return e.Err }

// RefusedError is a provider's refusal; Hint says in plain words what to
// do about it (a policy to enable, a user to create).
type RefusedError struct {
	Provider string
	Status   int
	Code     string
	Hint     string
	Err      error
}

func (e *RefusedError) Error() string {
	return e.Provider + ": refused: " + e.Err.Error()
}
func (e *RefusedError) Unwrap() error { return e.Err }

// ErrUserNotFound is wrapped by a RefusedError when the provider has no
// such user.
var ErrUserNotFound = errors.New("user not found at the identity provider")
