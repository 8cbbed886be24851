// Package credential checks the public keys the registry stores and the
// signatures made with them: WebAuthn assertions from FIDO2 credentials and
// challenge signatures from PIV slots.
package credential

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// ErrBadKey: a public key or certificate could not be parsed or is of an
// unsupported kind.
var ErrBadKey = errors.New("unsupported or malformed public key")

// ErrBadSignature: the signature or the signed data does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// COSE key parameters (RFC 9052 §7, RFC 9053 §2, §7).
const (
	ktyOKP    = 1
	ktyEC2    = 2
	algES256  = -7
	algEdDSA  = -8
	crvP256   = 1
	crvEd2551 = 6
)

// Algorithms lists the COSE algorithms the registry accepts for FIDO2
// credentials: ES256 (P-256) and EdDSA (Ed25519), the first two WebAuthn L2
// §5.8.5 lists, in the form go-webauthn's registration checks take.
var Algorithms = []protocol.CredentialParameter{
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgES256},
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgEdDSA},
}

// ParseCOSEKey decodes a COSE_Key holding an ES256 (P-256) or EdDSA
// (Ed25519) public key, the algorithms WebAuthn L2 §5.8.5 lists first. The
// decoding and the point checks are go-webauthn's (webauthncose).
func ParseCOSEKey(b []byte) (crypto.PublicKey, error) {
	k, err := webauthncose.ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: cose: %v", ErrBadKey, err)
	}
	switch k := k.(type) {
	case webauthncose.EC2PublicKeyData:
		if k.Algorithm != algES256 || k.Curve != crvP256 {
			return nil, fmt.Errorf("%w: cose ec2 alg %d crv %d", ErrBadKey, k.Algorithm, k.Curve)
		}
		pub, err := k.ToECDSA()
		if err != nil {
			return nil, fmt.Errorf("%w: es256: %v", ErrBadKey, err)
		}
		return pub, nil
	case webauthncose.OKPPublicKeyData:
		if k.Algorithm != algEdDSA || k.Curve != crvEd2551 {
			return nil, fmt.Errorf("%w: cose okp alg %d crv %d", ErrBadKey, k.Algorithm, k.Curve)
		}
		return ed25519.PublicKey(k.XCoord), nil
	}
	return nil, fmt.Errorf("%w: cose key %T is not es256 or eddsa", ErrBadKey, k)
}

// ParsePIVKey decodes a PKIX (SubjectPublicKeyInfo) public key of a kind a
// PIV slot holds (NIST SP 800-78-4 Table 3-1 plus the YubiKey's Ed25519):
// ECDSA P-256 or P-384, RSA of at least 2048 bits, or Ed25519.
func ParsePIVKey(der []byte) (crypto.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	switch p := k.(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() && p.Curve != elliptic.P384() {
			return nil, fmt.Errorf("%w: curve %s", ErrBadKey, p.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if p.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%w: rsa key of %d bits", ErrBadKey, p.N.BitLen())
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("%w: %T", ErrBadKey, k)
	}
	return k, nil
}

// CheckCertificate parses a DER certificate and checks that it certifies pub
// when pub is not nil.
func CheckCertificate(der []byte, pub crypto.PublicKey) error {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: certificate: %v", ErrBadKey, err)
	}
	if pub != nil {
		eq, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !eq.Equal(pub) {
			return fmt.Errorf("%w: certificate is for a different key", ErrBadKey)
		}
	}
	return nil
}

// Assertion is what a WebAuthn client returns for a get() (WebAuthn L2 §5.2.2).
type Assertion struct {
	AuthenticatorData []byte `json:"authenticator_data"`
	ClientDataJSON    []byte `json:"client_data_json"`
	Signature         []byte `json:"signature"`
}

// AssertionResult is what a verified assertion tells the registry.
type AssertionResult struct {
	SignCount uint32
	// CloneSuspected: the counter did not increase although the stored one
	// is non-zero (WebAuthn L2 §6.1.1).
	CloneSuspected bool
	UserVerified   bool
}

// Origin is the origin keydesk's clients put in clientDataJSON for a
// relying party id (device/fidokey.ClientDataJSON): "https://" + rpID.
func Origin(rpID string) string { return "https://" + rpID }

// CheckRegistrationClientData checks that b is the clientDataJSON of a
// registration (WebAuthn L2 §5.8.1, §7.1 steps 5-7): JSON with type
// webauthn.create and a challenge. Who issued the challenge is the
// enrolling client's business; the registry keeps the JSON so that the
// registration can be verified again end to end.
func CheckRegistrationClientData(b []byte) error {
	var cd protocol.CollectedClientData
	if err := json.Unmarshal(b, &cd); err != nil {
		return fmt.Errorf("client data: %w", err)
	}
	if cd.Type != protocol.CreateCeremony {
		return fmt.Errorf("client data type %q is not %q", cd.Type, protocol.CreateCeremony)
	}
	if cd.Challenge == "" {
		return errors.New("client data has no challenge")
	}
	return nil
}

// VerifyAssertion checks a FIDO2 assertion with go-webauthn's assertion
// verification (WebAuthn L2 §7.2 steps 11-20): client data type
// webauthn.get with the expected challenge and keydesk's origin for the
// relying party (Origin), the rp id hash, the user presence flag, and the
// signature over authenticatorData || SHA-256(clientDataJSON) with the
// credential's COSE key. Every failure wraps ErrBadSignature.
func VerifyAssertion(coseKey []byte, rpID string, challenge []byte, storedCount uint32, a Assertion) (AssertionResult, error) {
	var r AssertionResult
	var p protocol.ParsedCredentialAssertionData
	if err := json.Unmarshal(a.ClientDataJSON, &p.Response.CollectedClientData); err != nil {
		return r, fmt.Errorf("%w: client data: %v", ErrBadSignature, err)
	}
	if err := p.Response.AuthenticatorData.Unmarshal(a.AuthenticatorData); err != nil {
		return r, fmt.Errorf("%w: authenticator data: %v", ErrBadSignature, LibError(err))
	}
	p.Response.Signature = a.Signature
	p.Raw.AssertionResponse.ClientDataJSON = a.ClientDataJSON
	p.Raw.AssertionResponse.AuthenticatorData = a.AuthenticatorData
	p.Raw.AssertionResponse.Signature = a.Signature
	if err := p.Verify(base64.RawURLEncoding.EncodeToString(challenge), rpID, "", []string{Origin(rpID)}, nil, nil,
		protocol.TopOriginExplicitVerificationMode, false, false, true, coseKey, protocol.SignaturePolicy{}); err != nil {
		return r, fmt.Errorf("%w: %v", ErrBadSignature, LibError(err))
	}
	ad := p.Response.AuthenticatorData
	r.UserVerified = ad.Flags.UserVerified()
	r.SignCount = ad.Counter
	if (r.SignCount != 0 || storedCount != 0) && r.SignCount <= storedCount {
		r.CloneSuspected = true
	}
	return r, nil
}

// LibError renders a go-webauthn error with its details, which say which
// check failed.
func LibError(err error) string {
	var e *protocol.Error
	if errors.As(err, &e) {
		msg := e.Details
		if msg == "" {
			msg = e.Type
		}
		if e.DevInfo != "" {
			msg += " (" + e.DevInfo + ")"
		}
		if msg != "" {
			return strings.ToLower(msg[:1]) + msg[1:]
		}
	}
	return err.Error()
}

// VerifyPIV checks a PIV signature over a registry challenge. What is signed:
// for ECDSA P-256 the SHA-256 digest of the challenge, for P-384 its SHA-384
// digest (ASN.1 DER signatures); for RSA a PKCS#1 v1.5 signature of the
// SHA-256 digest; for Ed25519 the challenge itself.
func VerifyPIV(der []byte, challenge, sig []byte) error {
	pub, err := ParsePIVKey(der)
	if err != nil {
		return err
	}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		var d []byte
		if p.Curve == elliptic.P384() {
			h := sha512.Sum384(challenge)
			d = h[:]
		} else {
			h := sha256.Sum256(challenge)
			d = h[:]
		}
		if !ecdsa.VerifyASN1(p, d, sig) {
			return ErrBadSignature
		}
	case *rsa.PublicKey:
		h := sha256.Sum256(challenge)
		if rsa.VerifyPKCS1v15(p, crypto.SHA256, h[:], sig) != nil {
			return ErrBadSignature
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(p, challenge, sig) {
			return ErrBadSignature
		}
	}
	return nil
}

// COSEKeyES256 encodes a P-256 public key as a COSE_Key (for enrolment tools
// and tests).
func COSEKeyES256(p *ecdsa.PublicKey) []byte {
	raw, _ := p.Bytes()
	b, _ := webauthncbor.Marshal(webauthncose.EC2PublicKeyData{PublicKeyData: webauthncose.PublicKeyData{KeyType: ktyEC2, Algorithm: algES256},
		Curve: crvP256, XCoord: raw[1:33], YCoord: raw[33:]})
	return b
}

// COSEKeyEdDSA encodes an Ed25519 public key as a COSE_Key.
func COSEKeyEdDSA(p ed25519.PublicKey) []byte {
	b, _ := webauthncbor.Marshal(webauthncose.OKPPublicKeyData{PublicKeyData: webauthncose.PublicKeyData{KeyType: ktyOKP, Algorithm: algEdDSA},
		Curve: crvEd2551, XCoord: []byte(p)})
	return b
}
