package credential

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"
)

// BenchmarkVerifyAssertion is the registry's FIDO2 verification hot path
// for one ES256 assertion: parsing the stored COSE key and the client and
// authenticator data, and checking the signature.
func BenchmarkVerifyAssertion(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cose := COSEKeyES256(&k.PublicKey)
	nonce := make([]byte, 32)
	rand.Read(nonce)
	cd, _ := json.Marshal(map[string]any{"type": "webauthn.get", "challenge": base64.RawURLEncoding.EncodeToString(nonce), "origin": "https://example.org", "crossOrigin": false})
	rh := sha256.Sum256([]byte("example.org"))
	ad := append(rh[:], 0x05, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(ad[33:], 7)
	h := sha256.Sum256(cd)
	d := sha256.Sum256(append(append([]byte{}, ad...), h[:]...))
	sig, _ := ecdsa.SignASN1(rand.Reader, k, d[:])
	a := Assertion{AuthenticatorData: ad, ClientDataJSON: cd, Signature: sig}
	if _, err := VerifyAssertion(cose, "example.org", nonce, 6, a); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyAssertion(cose, "example.org", nonce, 6, a); err != nil {
			b.Fatal(err)
		}
	}
}
