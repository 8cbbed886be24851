package fidokey

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey/fidoc"
)

// ClientDataJSON serializes collected client data as WebAuthn L2 §5.8.1.1
// requires: members in the order type, challenge, origin, crossOrigin;
// challenge base64url without padding; no HTML escaping. typ is
// "webauthn.create" or "webauthn.get"; the origin is "https://" + rpID.
func ClientDataJSON(typ string, challenge []byte, rpID string) ([]byte, error) {
	return clientDataJSON(typ, challenge, "https://"+rpID)
}

// clientDataJSON is ClientDataJSON for an explicit origin.
func clientDataJSON(typ string, challenge []byte, origin string) ([]byte, error) {
	cd := struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
	}{typ, base64.RawURLEncoding.EncodeToString(challenge), origin, false}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(cd); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// MakeOptions are what a relying party asks for in a registration.
type MakeOptions struct {
	RPID, RPName string
	UserID       []byte
	UserName     string
	DisplayName  string
	Challenge    []byte
	Discoverable bool
	// CredProtect is 1 (UV optional), 2 (UV optional with credential ID) or
	// 3 (UV required), CTAP 2.1 §12.1; 0 leaves it to the key.
	CredProtect int
	// EnterpriseAttestation asks for enterprise attestation (CTAP 2.1
	// §7.1). libfido2 1.12 cannot request it, so it fails with
	// device.ErrNotSupported.
	EnterpriseAttestation bool

	// Origin is the origin written into clientDataJSON (WebAuthn L2
	// §5.8.1); empty means "https://" + RPID, as a browser on the relying
	// party's own site would write it.
	Origin string
	// ExcludeCredentials are credential ids the key must not already hold
	// for RPID (WebAuthn L2 §5.4 excludeCredentials, CTAP 2.1 §6.1
	// excludeList); a key holding one fails with ErrExcluded.
	ExcludeCredentials [][]byte
	// RequireUV is userVerification "required" (WebAuthn L2 §5.4.6): a key
	// with no PIN fails with device.ErrPINNotSet instead of making a
	// credential without user verification.
	RequireUV bool
	// EnforceCredProtect is the credProtect extension's
	// enforceCredentialProtectionPolicy (CTAP 2.1 §12.1): with CredProtect
	// 2 or 3, a key that does not support credProtect, or that makes the
	// credential with a weaker policy, fails with device.ErrNotSupported.
	EnforceCredProtect bool
	// HMACSecret asks for the hmac-secret extension (CTAP 2.1 §12.5,
	// WebAuthn's hmacCreateSecret).
	HMACSecret bool
}

// ErrExcluded is a key that already holds a credential in the relying
// party's exclude list (CTAP2_ERR_CREDENTIAL_EXCLUDED, CTAP 2.1 §6.1).
var ErrExcluded = errors.New("the key already holds a credential this relying party excludes")

// Registration is a new credential as a WebAuthn relying party receives it
// (WebAuthn L2 §5.2.1), plus what keydesk records about it.
type Registration struct {
	ClientDataJSON    []byte
	AttestationObject []byte // CBOR {fmt, attStmt, authData}, WebAuthn L2 §6.5
	AuthenticatorData []byte
	CredentialID      []byte
	PublicKey         []byte // COSE_Key from the attested credential data
	AAGUID            [16]byte
	SignCount         uint32
	Format            string
	// AttestationCerts is the attestation certificate chain (x5c), leaf
	// first; empty for self or no attestation.
	AttestationCerts []*x509.Certificate
	CredProtect      int
	Discoverable     bool
	UserVerified     bool
}

// MakeCredential registers a credential (authenticatorMakeCredential, CTAP
// 2.1 §6.1) the way a browser does for a relying party: it builds
// clientDataJSON for opts.Challenge and origin https://RPID, has the key sign
// its SHA-256, and rebuilds the attestation object. When the key has a PIN
// it is asked for through cb.PIN ("FIDO2 PIN") and the credential is made
// with user verification; cb.Touch is called before the key waits for a
// touch.
func (d *Device) MakeCredential(ctx context.Context, opts MakeOptions, cb device.Callbacks) (*Registration, error) {
	const op = "making a fido2 credential"
	if opts.RPID == "" || len(opts.UserID) == 0 || len(opts.Challenge) == 0 {
		return nil, fmt.Errorf("%s: rp id, user id and challenge are required", op)
	}
	if opts.CredProtect < 0 || opts.CredProtect > 3 {
		return nil, fmt.Errorf("%s: credProtect %d is not 1-3", op, opts.CredProtect)
	}
	if opts.EnterpriseAttestation {
		return nil, fmt.Errorf("%s: enterprise attestation: libfido2 1.12 cannot request it: %w", op, device.ErrNotSupported)
	}
	origin := opts.Origin
	if origin == "" {
		origin = "https://" + opts.RPID
	}
	cdj, err := clientDataJSON("webauthn.create", opts.Challenge, origin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	cdh := sha256.Sum256(cdj)
	if opts.EnforceCredProtect && opts.CredProtect > 1 {
		if err := d.requireExtension(ctx, "credProtect"); err != nil {
			return nil, fmt.Errorf("%s: enforced credProtect: %w", op, err)
		}
	}
	pin, err := d.pinIfSet(ctx, cb)
	if err != nil {
		return nil, d.mapErr(ctx, op, err)
	}
	if opts.RequireUV && pin == "" {
		return nil, fmt.Errorf("%s: user verification required: %w", op, device.ErrPINNotSet)
	}
	var c *fidoc.Cred
	err = d.do(ctx, func(dev *fidoc.Dev) error {
		touch(ctx, cb)
		var err error
		c, err = dev.MakeCred(fidoc.MakeCredArgs{
			ClientDataHash: cdh[:], RPID: opts.RPID, RPName: opts.RPName,
			UserID: opts.UserID, UserName: opts.UserName, DisplayName: opts.DisplayName,
			Discoverable: opts.Discoverable, CredProtect: opts.CredProtect, PIN: pin,
			Exclude: opts.ExcludeCredentials, HMACSecret: opts.HMACSecret,
		})
		return err
	})
	if code, ok := codeOf(err); ok && code == fidoc.ErrCredentialExclude {
		return nil, fmt.Errorf("%s: %w (%w)", op, ErrExcluded, err)
	}
	if err != nil {
		return nil, d.mapErr(ctx, op, err)
	}
	reg, err := registration(cdj, c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if opts.EnforceCredProtect && opts.CredProtect > 1 {
		// The key's own answer, from the authenticator data's extension
		// outputs, not the level that was asked for.
		ad, err := parseAuthData(reg.AuthenticatorData)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		if ad.credProtect < opts.CredProtect {
			return nil, fmt.Errorf("%s: the key made the credential with credProtect %d, not %d: %w", op, ad.credProtect, opts.CredProtect, device.ErrNotSupported)
		}
	}
	reg.Discoverable = opts.Discoverable
	return reg, nil
}

// requireExtension fails with device.ErrNotSupported when the key's
// authenticatorGetInfo does not list ext (CTAP 2.1 §6.4).
func (d *Device) requireExtension(ctx context.Context, ext string) error {
	var exts []string
	err := d.do(ctx, func(dev *fidoc.Dev) error {
		in, err := dev.Info()
		if err == nil {
			exts = in.Extensions
		}
		return err
	})
	if err != nil {
		return d.mapErr(ctx, "reading the key's extensions", err)
	}
	for _, e := range exts {
		if e == ext {
			return nil
		}
	}
	return fmt.Errorf("the key does not support the %s extension: %w", ext, device.ErrNotSupported)
}

// pinIfSet asks for the PIN when the key has one, in a session of its own,
// so no handle is held while the person types.
func (d *Device) pinIfSet(ctx context.Context, cb device.Callbacks) (string, error) {
	var has bool
	if err := d.do(ctx, func(dev *fidoc.Dev) error { has = dev.HasPIN(); return nil }); err != nil {
		return "", err
	}
	if !has {
		return "", nil
	}
	return askPIN(ctx, cb)
}

type attestationObject struct {
	Fmt      string          `cbor:"fmt"`
	AttStmt  cbor.RawMessage `cbor:"attStmt"`
	AuthData []byte          `cbor:"authData"`
}

func registration(cdj []byte, c *fidoc.Cred) (*Registration, error) {
	ad, err := parseAuthData(c.AuthData)
	if err != nil {
		return nil, err
	}
	if ad.credID == nil {
		return nil, errors.New("authenticator data carries no attested credential")
	}
	if !bytes.Equal(ad.credID, c.ID) {
		return nil, errors.New("credential id in authenticator data differs from the key's answer")
	}
	stmt := c.AttStmt
	if len(stmt) == 0 {
		stmt = []byte{0xa0} // empty map, "none" attestation
	}
	var st struct {
		X5C [][]byte `cbor:"x5c"`
	}
	if err := cbor.Unmarshal(stmt, &st); err != nil {
		return nil, fmt.Errorf("attestation statement: %w", err)
	}
	obj, err := cbor.Marshal(attestationObject{Fmt: c.Format, AttStmt: stmt, AuthData: c.AuthData})
	if err != nil {
		return nil, err
	}
	reg := &Registration{
		ClientDataJSON: cdj, AttestationObject: obj, AuthenticatorData: c.AuthData,
		CredentialID: c.ID, PublicKey: ad.coseKey, AAGUID: ad.aaguid, SignCount: ad.signCount,
		Format: c.Format, CredProtect: c.Prot, UserVerified: ad.flags&flagUV != 0,
	}
	for _, der := range st.X5C {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("attestation certificate: %w", err)
		}
		reg.AttestationCerts = append(reg.AttestationCerts, cert)
	}
	return reg, nil
}

// authData flags (WebAuthn L2 §6.1).
const (
	flagUP = 0x01
	flagUV = 0x04
	flagAT = 0x40
	flagED = 0x80
)

type authData struct {
	rpIDHash  []byte
	flags     byte
	signCount uint32
	aaguid    [16]byte
	credID    []byte
	coseKey   []byte
	// credProtect is the credProtect extension output (CTAP 2.1 §12.1),
	// 0 when the key returned none.
	credProtect int
}

// parseAuthData reads authenticator data (WebAuthn L2 §6.1).
func parseAuthData(b []byte) (*authData, error) {
	if len(b) < 37 {
		return nil, errors.New("authenticator data too short")
	}
	a := &authData{rpIDHash: b[:32], flags: b[32], signCount: binary.BigEndian.Uint32(b[33:37])}
	rest := b[37:]
	if a.flags&flagAT != 0 {
		if len(rest) < 18 {
			return nil, errors.New("attested credential data too short")
		}
		copy(a.aaguid[:], rest[:16])
		n := int(binary.BigEndian.Uint16(rest[16:18]))
		if len(rest) < 18+n {
			return nil, errors.New("credential id truncated")
		}
		a.credID = rest[18 : 18+n]
		var key cbor.RawMessage
		r, err := cbor.UnmarshalFirst(rest[18+n:], &key)
		if err != nil {
			return nil, fmt.Errorf("credential public key: %w", err)
		}
		a.coseKey = key
		rest = r
	}
	if a.flags&flagED == 0 && len(rest) != 0 {
		return nil, errors.New("trailing bytes in authenticator data")
	}
	if a.flags&flagED != 0 {
		var ext map[string]cbor.RawMessage
		if err := cbor.Unmarshal(rest, &ext); err != nil {
			return nil, fmt.Errorf("authenticator extensions: %w", err)
		}
		if raw, ok := ext["credProtect"]; ok {
			if err := cbor.Unmarshal(raw, &a.credProtect); err != nil {
				return nil, fmt.Errorf("credProtect extension output: %w", err)
			}
		}
	}
	return a, nil
}

// AssertOptions are what a relying party asks for in an authentication.
type AssertOptions struct {
	RPID          string
	Challenge     []byte
	CredentialIDs [][]byte // the allow list; empty for discoverable credentials
	// UserVerification asks for the PIN (cb.PIN) and user verification.
	UserVerification bool
}

// Assertion is an authentication as a relying party receives it (WebAuthn
// L2 §5.2.2).
type Assertion struct {
	ClientDataJSON    []byte
	AuthenticatorData []byte
	Signature         []byte
	UserHandle        []byte
	CredentialID      []byte
	SignCount         uint32
	UserVerified      bool
}

// GetAssertion signs a challenge with a credential of opts.RPID
// (authenticatorGetAssertion, CTAP 2.1 §6.2) over the SHA-256 of the
// clientDataJSON it builds ("webauthn.get"). cb.Touch is called before the
// key waits for a touch.
func (d *Device) GetAssertion(ctx context.Context, opts AssertOptions, cb device.Callbacks) (*Assertion, error) {
	const op = "getting a fido2 assertion"
	if opts.RPID == "" || len(opts.Challenge) == 0 {
		return nil, fmt.Errorf("%s: rp id and challenge are required", op)
	}
	cdj, err := ClientDataJSON("webauthn.get", opts.Challenge, opts.RPID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	cdh := sha256.Sum256(cdj)
	pin := ""
	if opts.UserVerification {
		if pin, err = d.pinIfSet(ctx, cb); err != nil {
			return nil, d.mapErr(ctx, op, err)
		}
		if pin == "" {
			return nil, fmt.Errorf("%s: user verification: %w", op, device.ErrPINNotSet)
		}
	}
	var a *fidoc.Assertion
	err = d.do(ctx, func(dev *fidoc.Dev) error {
		touch(ctx, cb)
		var err error
		a, err = dev.GetAssert(fidoc.AssertArgs{RPID: opts.RPID, ClientDataHash: cdh[:], AllowList: opts.CredentialIDs, PIN: pin})
		return err
	})
	if err != nil {
		return nil, d.mapErr(ctx, op, err)
	}
	var raw []byte
	if err := cbor.Unmarshal(a.AuthDataCBOR, &raw); err != nil {
		return nil, fmt.Errorf("%s: authenticator data: %w", op, err)
	}
	ad, err := parseAuthData(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return &Assertion{
		ClientDataJSON: cdj, AuthenticatorData: raw, Signature: a.Sig, UserHandle: a.UserID,
		CredentialID: a.ID, SignCount: ad.signCount, UserVerified: ad.flags&flagUV != 0,
	}, nil
}
