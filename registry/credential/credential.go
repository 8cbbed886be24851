// Package credential checks the public keys the registry stores and the
// signatures made with them: WebAuthn assertions from FIDO2 credentials and
// challenge signatures from PIV slots.
package credential

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/fxamacker/cbor/v2"
)

// ErrBadKey: a public key or certificate could not be parsed or is of an
// unsupported kind.
var ErrBadKey = errors.New("unsupported or malformed public key")

// ErrBadSignature: the signature or the signed data does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// COSE key parameters (RFC 9052 §7, RFC 9053 §2, §7).
const (
	coseKty   = 1
	coseAlg   = 3
	coseCrv   = -1
	coseX     = -2
	coseY     = -3
	ktyOKP    = 1
	ktyEC2    = 2
	algES256  = -7
	algEdDSA  = -8
	crvP256   = 1
	crvEd2551 = 6
)

// ParseCOSEKey decodes a COSE_Key holding an ES256 (P-256) or EdDSA
// (Ed25519) public key, the algorithms WebAuthn L2 §5.8.5 lists first.
func ParseCOSEKey(b []byte) (crypto.PublicKey, error) {
	var m map[int]any
	if err := cbor.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: cose: %v", ErrBadKey, err)
	}
	num := func(k int) (int64, bool) {
		switch v := m[k].(type) {
		case int64:
			return v, true
		case uint64:
			return int64(v), true
		}
		return 0, false
	}
	bs := func(k int) []byte { v, _ := m[k].([]byte); return v }
	kty, _ := num(coseKty)
	alg, _ := num(coseAlg)
	crv, _ := num(coseCrv)
	switch {
	case kty == ktyEC2 && alg == algES256 && crv == crvP256:
		x, y := bs(coseX), bs(coseY)
		if len(x) != 32 || len(y) != 32 {
			return nil, fmt.Errorf("%w: es256 coordinates must be 32 bytes", ErrBadKey)
		}
		pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		raw := append(append([]byte{4}, x...), y...)
		if _, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw); err != nil {
			return nil, fmt.Errorf("%w: es256 point not on curve", ErrBadKey)
		}
		return pub, nil
	case kty == ktyOKP && alg == algEdDSA && crv == crvEd2551:
		x := bs(coseX)
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: ed25519 key must be 32 bytes", ErrBadKey)
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("%w: cose kty %d alg %d crv %d", ErrBadKey, kty, alg, crv)
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

// VerifyAssertion checks a FIDO2 assertion (WebAuthn L2 §7.2): client data
// type webauthn.get with the expected challenge, the rp id hash, the user
// presence flag, and the signature over authenticatorData ||
// SHA-256(clientDataJSON) with the credential's COSE key.
func VerifyAssertion(coseKey []byte, rpID string, challenge []byte, storedCount uint32, a Assertion) (AssertionResult, error) {
	var r AssertionResult
	pub, err := ParseCOSEKey(coseKey)
	if err != nil {
		return r, err
	}
	var cd struct {
		Type      string `json:"type"`
		Challenge string `json:"challenge"`
	}
	if err := json.Unmarshal(a.ClientDataJSON, &cd); err != nil {
		return r, fmt.Errorf("%w: client data: %v", ErrBadSignature, err)
	}
	if cd.Type != "webauthn.get" {
		return r, fmt.Errorf("%w: client data type %q", ErrBadSignature, cd.Type)
	}
	if cd.Challenge != base64.RawURLEncoding.EncodeToString(challenge) {
		return r, fmt.Errorf("%w: challenge mismatch", ErrBadSignature)
	}
	ad := a.AuthenticatorData
	if len(ad) < 37 {
		return r, fmt.Errorf("%w: authenticator data too short", ErrBadSignature)
	}
	rpHash := sha256.Sum256([]byte(rpID))
	if !bytes.Equal(ad[:32], rpHash[:]) {
		return r, fmt.Errorf("%w: rp id hash mismatch", ErrBadSignature)
	}
	flags := ad[32]
	if flags&0x01 == 0 {
		return r, fmt.Errorf("%w: user presence flag not set", ErrBadSignature)
	}
	r.UserVerified = flags&0x04 != 0
	r.SignCount = binary.BigEndian.Uint32(ad[33:37])
	cdHash := sha256.Sum256(a.ClientDataJSON)
	msg := append(append([]byte{}, ad...), cdHash[:]...)
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(p, h[:], a.Signature) {
			return r, ErrBadSignature
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(p, msg, a.Signature) {
			return r, ErrBadSignature
		}
	}
	if (r.SignCount != 0 || storedCount != 0) && r.SignCount <= storedCount {
		r.CloneSuspected = true
	}
	return r, nil
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
	b, _ := cbor.Marshal(map[int]any{coseKty: ktyEC2, coseAlg: algES256, coseCrv: crvP256, coseX: raw[1:33], coseY: raw[33:]})
	return b
}

// COSEKeyEdDSA encodes an Ed25519 public key as a COSE_Key.
func COSEKeyEdDSA(p ed25519.PublicKey) []byte {
	b, _ := cbor.Marshal(map[int]any{coseKty: ktyOKP, coseAlg: algEdDSA, coseCrv: crvEd2551, coseX: []byte(p)})
	return b
}
