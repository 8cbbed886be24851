package ctap

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// AttestationCAName is the subject common name of the virtual FIDO
// attestation CA. It says plainly that it is not Yubico's.
const AttestationCAName = "keydesk Virtual FIDO Attestation CA - not Yubico"

// oidFIDOGenCEAAGUID is id-fido-gen-ce-aaguid (FIDO Metadata / WebAuthn L2 §8.2.1).
var oidFIDOGenCEAAGUID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 45724, 1, 1, 4}

var (
	caOnce sync.Once
	caKey  *ecdsa.PrivateKey
	caCert *x509.Certificate
	caErr  error
)

// caSeed derives the CA key. The key is public knowledge on purpose: the CA
// only marks keys as keydesk's virtual ones, it vouches for nothing.
const caSeed = "keydesk virtual FIDO attestation CA, version 1"

// AttestationCA returns the virtual FIDO attestation root. Its key is the
// same in every process (derived from a published seed); the certificate is
// issued once per process, so compare certificates by key and subject.
func AttestationCA() (*x509.Certificate, error) {
	caOnce.Do(func() {
		caKey = deterministicP256(caSeed)
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"keydesk virtual keys (not Yubico)"}, CommonName: AttestationCAName},
			NotBefore:             time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
			NotAfter:              time.Date(2054, 1, 1, 0, 0, 0, 0, time.UTC),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
		if err != nil {
			caErr = fmt.Errorf("creating attestation ca: %w", err)
			return
		}
		caCert, caErr = x509.ParseCertificate(der)
	})
	return caCert, caErr
}

func deterministicP256(seed string) *ecdsa.PrivateKey {
	c := elliptic.P256()
	h := sha256.Sum256([]byte(seed))
	d := new(big.Int).SetBytes(h[:])
	d.Mod(d, new(big.Int).Sub(c.Params().N, big.NewInt(1)))
	d.Add(d, big.NewInt(1))
	return ecdsaFromScalar(d.FillBytes(make([]byte, 32)))
}

func ecdsaFromScalar(b []byte) *ecdsa.PrivateKey {
	c := elliptic.P256()
	k := &ecdsa.PrivateKey{D: new(big.Int).SetBytes(b)}
	k.PublicKey.Curve = c
	k.PublicKey.X, k.PublicKey.Y = c.ScalarBaseMult(b)
	return k
}

// issueAttestation makes a key's attestation key and the certificate the CA
// issues for it, meeting the packed-attestation certificate requirements of
// WebAuthn L2 §8.2.1 (OU "Authenticator Attestation", CA false, the AAGUID
// extension).
func issueAttestation(serial uint32) (keyDER, certDER []byte, err error) {
	ca, err := AttestationCA()
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	aaguidExt, err := asn1.Marshal(AAGUID[:])
	if err != nil {
		return nil, nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject: pkix.Name{
			Country:            []string{"US"},
			Organization:       []string{"keydesk virtual keys (not Yubico)"},
			OrganizationalUnit: []string{"Authenticator Attestation"},
			CommonName:         fmt.Sprintf("keydesk Virtual FIDO Attestation %d", serial),
		},
		NotBefore:             time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2054, 1, 1, 0, 0, 0, 0, time.UTC),
		BasicConstraintsValid: true,
		IsCA:                  false,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtraExtensions:       []pkix.Extension{{Id: oidFIDOGenCEAAGUID, Value: aaguidExt}},
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return keyDER, certDER, nil
}
