package entra

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/device/fidokey"
)

// creationOptions is Graph's webauthnCredentialCreationOptions; publicKey
// is webauthnPublicKeyCredentialCreationOptions (WebAuthn L2 §5.4) with
// every binary member base64url without padding.
type creationOptions struct {
	ChallengeTimeoutDateTime time.Time `json:"challengeTimeoutDateTime"`
	PublicKey                struct {
		Challenge   string `json:"challenge"`
		Timeout     int64  `json:"timeout"` // milliseconds
		Attestation string `json:"attestation"`
		RP          struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"rp"`
		User struct {
			ID          string `json:"id"`
			Name        string `json:"name"`
			DisplayName string `json:"displayName"`
		} `json:"user"`
		PubKeyCredParams []struct {
			Type string `json:"type"`
			Alg  int    `json:"alg"`
		} `json:"pubKeyCredParams"`
		ExcludeCredentials []struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		} `json:"excludeCredentials"`
		AuthenticatorSelection struct {
			AuthenticatorAttachment string `json:"authenticatorAttachment"`
			RequireResidentKey      bool   `json:"requireResidentKey"`
			ResidentKey             string `json:"residentKey"`
			UserVerification        string `json:"userVerification"`
		} `json:"authenticatorSelection"`
		Extensions extensions `json:"extensions"`
	} `json:"publicKey"`
}

// extensions are the client extension inputs Entra asks for: credProtect
// (CTAP 2.1 §12.1, WebAuthn's credentialProtectionPolicy) and hmac-secret
// (CTAP 2.1 §12.5, hmacCreateSecret).
type extensions struct {
	CredentialProtectionPolicy        json.RawMessage `json:"credentialProtectionPolicy"`
	EnforceCredentialProtectionPolicy bool            `json:"enforceCredentialProtectionPolicy"`
	HMACCreateSecret                  bool            `json:"hmacCreateSecret"`
}

// credProtect levels by their WebAuthn names (CTAP 2.1 §12.1).
var credProtectLevels = map[string]int{
	"userVerificationOptional":                     1,
	"userVerificationOptionalWithCredentialIDList": 2,
	"userVerificationRequired":                     3,
}

// algES256 is COSE ES256 (RFC 9053 §2.1), the algorithm the desk's keys
// make credentials with.
const algES256 = -7

func parseCreationOptions(body []byte) (*idp.CreationOptions, error) {
	var co creationOptions
	if err := json.Unmarshal(body, &co); err != nil {
		return nil, err
	}
	pk := co.PublicKey
	o := &idp.CreationOptions{
		RPID: pk.RP.ID, RPName: pk.RP.Name,
		UserName: pk.User.Name, UserDisplayName: pk.User.DisplayName,
		UserVerification: pk.AuthenticatorSelection.UserVerification,
		ResidentKey:      pk.AuthenticatorSelection.ResidentKey,
		Attestation:      pk.Attestation,
		Timeout:          time.Duration(pk.Timeout) * time.Millisecond,
		Raw:              body,
	}
	var err error
	if o.Challenge, err = decodeBinary(pk.Challenge); err != nil || len(o.Challenge) == 0 {
		return nil, fmt.Errorf("challenge %q is not base64url", pk.Challenge)
	}
	if o.UserID, err = decodeBinary(pk.User.ID); err != nil || len(o.UserID) == 0 {
		return nil, fmt.Errorf("user id %q is not base64url", pk.User.ID)
	}
	if o.RPID == "" {
		return nil, errors.New("no relying party id")
	}
	if o.ResidentKey == "" {
		// WebAuthn L2 §5.4.4: requireResidentKey true means "required";
		// absent, the default is "discouraged".
		o.ResidentKey = "discouraged"
		if pk.AuthenticatorSelection.RequireResidentKey {
			o.ResidentKey = "required"
		}
	}
	if o.UserVerification == "" {
		o.UserVerification = "preferred" // WebAuthn L2 §5.4.4 default
	}
	if o.Attestation == "" {
		o.Attestation = "none"
	}
	if o.Timeout == 0 && !co.ChallengeTimeoutDateTime.IsZero() {
		o.Timeout = time.Until(co.ChallengeTimeoutDateTime).Round(time.Second)
	}
	for _, d := range pk.ExcludeCredentials {
		id, err := decodeBinary(d.ID)
		if err != nil {
			return nil, fmt.Errorf("excluded credential id %q is not base64url", d.ID)
		}
		o.ExcludeCredentials = append(o.ExcludeCredentials, id)
	}
	if p := pk.Extensions.CredentialProtectionPolicy; len(p) > 0 && string(p) != "null" {
		var name string
		var n int
		switch {
		case json.Unmarshal(p, &name) == nil:
			if n = credProtectLevels[name]; n == 0 {
				return nil, fmt.Errorf("credentialProtectionPolicy %q is unknown", name)
			}
		case json.Unmarshal(p, &n) == nil && n >= 1 && n <= 3:
		default:
			return nil, fmt.Errorf("credentialProtectionPolicy %s is not a policy", p)
		}
		o.CredProtect = n
	}
	o.EnforceCredProtect = pk.Extensions.EnforceCredentialProtectionPolicy
	if len(pk.PubKeyCredParams) > 0 && !slices.ContainsFunc(pk.PubKeyCredParams, func(p struct {
		Type string `json:"type"`
		Alg  int    `json:"alg"`
	}) bool {
		return p.Type == "public-key" && p.Alg == algES256
	}) {
		return nil, errors.New("entra offers no algorithm the key makes credentials with (ES256)")
	}
	return o, nil
}

// decodeBinary reads a binary member of Graph's creation options. Graph
// documents base64url without padding (RFC 4648 §5); excludeCredentials
// ids have been seen from Graph in standard base64 with padding (§4), as in
// the Entra sample of DSInternals' webauthn-interop tests, so both are read.
func decodeBinary(s string) ([]byte, error) {
	if b, err := b64.DecodeString(s); err == nil {
		return b, nil
	}
	t := strings.TrimRight(s, "=")
	if b, err := base64.RawURLEncoding.DecodeString(t); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(t)
}

// hmacCreateSecret reports whether the options Entra handed out ask for
// the hmac-secret extension; idp.CreationOptions keeps it only in Raw.
func hmacCreateSecret(o *idp.CreationOptions) bool {
	var co creationOptions
	return json.Unmarshal(o.Raw, &co) == nil && co.PublicKey.Extensions.HMACCreateSecret
}

// KeyOptions are the options the key makes the credential with: exactly
// what Entra handed out (rp, user, challenge, exclude list, resident key,
// user verification, credProtect and its enforcement, hmac-secret), with
// clientDataJSON written for origin (Connector.Origin).
//
// Attestation "none" is honoured the way WebAuthn L2 §5.4.7 lets a client:
// the key's packed attestation is passed on unchanged, which Entra accepts
// ("packed" or "none").
func KeyOptions(o *idp.CreationOptions, origin string) (fidokey.MakeOptions, error) {
	if o == nil {
		return fidokey.MakeOptions{}, errors.New("no creation options")
	}
	if o.Attestation == "enterprise" {
		return fidokey.MakeOptions{}, errors.New("entra asks for enterprise attestation, which the desk cannot request")
	}
	return fidokey.MakeOptions{
		RPID: o.RPID, RPName: o.RPName,
		UserID: o.UserID, UserName: o.UserName, DisplayName: o.UserDisplayName,
		Challenge:          o.Challenge,
		Discoverable:       o.ResidentKey == "required" || o.ResidentKey == "preferred",
		CredProtect:        o.CredProtect,
		EnforceCredProtect: o.EnforceCredProtect,
		ExcludeCredentials: o.ExcludeCredentials,
		RequireUV:          o.UserVerification == "required",
		HMACSecret:         hmacCreateSecret(o),
		Origin:             origin,
	}, nil
}

// KeyOptions is the package's KeyOptions for this connector's origin. An
// enrolment that holds an idp.Connector finds it through
// interface{ KeyOptions(*idp.CreationOptions) (fidokey.MakeOptions, error) }.
func (c *Connector) KeyOptions(o *idp.CreationOptions) (fidokey.MakeOptions, error) {
	return KeyOptions(o, c.Origin())
}

// Credential is the credential the key made, as Register takes it.
func Credential(r *fidokey.Registration, displayName string, serial uint32) idp.Credential {
	return idp.Credential{
		ID: r.CredentialID, ClientDataJSON: r.ClientDataJSON, AttestationObject: r.AttestationObject,
		PublicKey: r.PublicKey, AAGUID: r.AAGUID, SignCount: r.SignCount, Transports: []string{"usb"},
		DisplayName: displayName, Serial: serial,
	}
}
