package credential

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func TestParseCOSEKey(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := ParseCOSEKey(COSEKeyES256(&k.PublicKey)); err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := ParseCOSEKey(COSEKeyEdDSA(pub)); err != nil {
		t.Fatal(err)
	}
	offCurve, _ := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: make([]byte, 32), -3: append(make([]byte, 31), 1)})
	rs256, _ := cbor.Marshal(map[int]any{1: 3, 3: -257})
	for name, b := range map[string][]byte{"off curve": offCurve, "rs256": rs256, "not cbor": []byte("x"), "empty": nil} {
		if _, err := ParseCOSEKey(b); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParsePIVKeyRefusesWeakKeys(t *testing.T) {
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for name, pub := range map[string]any{"rsa1024": &small.PublicKey, "p224": &p224.PublicKey} {
		der, _ := x509.MarshalPKIXPublicKey(pub)
		if _, err := ParsePIVKey(der); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s accepted: %v", name, err)
		}
	}
}
