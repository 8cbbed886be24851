package fidotest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/fxamacker/cbor/v2"

	"github.com/keydesk/keydesk/device/virtual/ctap"
)

// AuthData is a parsed authenticator data structure (WebAuthn L2 §6.1).
type AuthData struct {
	RPIDHash  []byte
	Flags     byte
	SignCount uint32
	AAGUID    []byte
	CredID    []byte
	PublicKey any // *ecdsa.PublicKey or ed25519.PublicKey
	COSEKey   []byte
	Ext       map[string]any
}

// ParseAuthData parses raw authenticator data.
func ParseAuthData(ad []byte) (*AuthData, error) {
	if len(ad) < 37 {
		return nil, errors.New("authenticator data too short")
	}
	a := &AuthData{RPIDHash: ad[:32], Flags: ad[32], SignCount: binary.BigEndian.Uint32(ad[33:37])}
	rest := ad[37:]
	if a.Flags&0x40 != 0 {
		if len(rest) < 18 {
			return nil, errors.New("attested credential data too short")
		}
		a.AAGUID = rest[:16]
		n := int(binary.BigEndian.Uint16(rest[16:18]))
		if len(rest) < 18+n {
			return nil, errors.New("credential id truncated")
		}
		a.CredID = rest[18 : 18+n]
		rest = rest[18+n:]
		var raw cbor.RawMessage
		r, err := cbor.UnmarshalFirst(rest, &raw)
		if err != nil {
			return nil, fmt.Errorf("credential public key: %w", err)
		}
		a.COSEKey = raw
		if a.PublicKey, err = ParseCOSEKey(raw); err != nil {
			return nil, err
		}
		rest = r
	}
	if a.Flags&0x80 != 0 {
		if err := cbor.Unmarshal(rest, &a.Ext); err != nil {
			return nil, fmt.Errorf("extensions: %w", err)
		}
	} else if len(rest) != 0 {
		return nil, errors.New("trailing bytes in authenticator data")
	}
	return a, nil
}

// ParseCOSEKey decodes an ES256 or EdDSA COSE_Key.
func ParseCOSEKey(b []byte) (any, error) {
	var k struct {
		Kty int    `cbor:"1,keyasint"`
		Alg int    `cbor:"3,keyasint"`
		Crv int    `cbor:"-1,keyasint"`
		X   []byte `cbor:"-2,keyasint"`
		Y   []byte `cbor:"-3,keyasint"`
	}
	if err := cbor.Unmarshal(b, &k); err != nil {
		return nil, err
	}
	switch {
	case k.Kty == 2 && k.Alg == -7 && k.Crv == 1 && len(k.X) == 32 && len(k.Y) == 32:
		pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(k.X), Y: new(big.Int).SetBytes(k.Y)}
		if !pub.Curve.IsOnCurve(pub.X, pub.Y) {
			return nil, errors.New("point not on curve")
		}
		return pub, nil
	case k.Kty == 1 && k.Alg == -8 && k.Crv == 6 && len(k.X) == 32:
		return ed25519.PublicKey(k.X), nil
	}
	return nil, fmt.Errorf("unsupported cose key kty %d alg %d crv %d", k.Kty, k.Alg, k.Crv)
}

// VerifySignature checks a credential signature over authData || cdh.
func VerifySignature(pub any, authData, cdh, sig []byte) error {
	msg := append(append([]byte(nil), authData...), cdh...)
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(p, h[:], sig) {
			return errors.New("es256 signature does not verify")
		}
	case ed25519.PublicKey:
		if !ed25519.Verify(p, msg, sig) {
			return errors.New("eddsa signature does not verify")
		}
	default:
		return fmt.Errorf("unsupported key %T", pub)
	}
	return nil
}

// VerifyPackedAttestation checks a packed attestation statement the way a
// relying party does (WebAuthn L2 §8.2): the signature with the certificate's
// key, the certificate's FIDO requirements, its AAGUID extension against the
// authenticator data, and its chain to the virtual attestation CA.
func VerifyPackedAttestation(authData, cdh, sig, certDER []byte) (*AuthData, error) {
	ad, err := ParseAuthData(authData)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("attestation certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("attestation key is not ecdsa")
	}
	if err := VerifySignature(pub, authData, cdh, sig); err != nil {
		return nil, fmt.Errorf("attestation signature: %w", err)
	}
	if cert.IsCA || len(cert.Subject.OrganizationalUnit) != 1 || cert.Subject.OrganizationalUnit[0] != "Authenticator Attestation" || len(cert.Subject.Country) != 1 || len(cert.Subject.Organization) != 1 {
		return nil, fmt.Errorf("attestation certificate subject %q does not meet WebAuthn L2 §8.2.1", cert.Subject)
	}
	var aaguid []byte
	for _, e := range cert.Extensions {
		if e.Id.Equal(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 45724, 1, 1, 4}) {
			if e.Critical {
				return nil, errors.New("aaguid extension is critical")
			}
			if _, err := asn1.Unmarshal(e.Value, &aaguid); err != nil {
				return nil, fmt.Errorf("aaguid extension: %w", err)
			}
		}
	}
	if string(aaguid) != string(ad.AAGUID) || string(aaguid) != string(ctap.AAGUID[:]) {
		return nil, fmt.Errorf("aaguid certificate %x, authenticator data %x", aaguid, ad.AAGUID)
	}
	ca, err := ctap.AttestationCA()
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("attestation chain: %w", err)
	}
	return ad, nil
}
