package pivapplet

import (
	"crypto"
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

	"github.com/keydesk/keydesk/device/virtual"
)

// VirtualRootName is the subject of the root every virtual key's PIV
// attestation chains to. It says plainly that it is not Yubico's: keydesk
// accepts it only when a caller explicitly trusts it (practice mode, tests).
const VirtualRootName = "keydesk Virtual PIV Attestation Root - NOT Yubico"

// Yubico's attestation certificate extensions (Yubico developer docs, "PIV
// attestation").
var (
	oidFirmware   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 3}
	oidSerial     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}
	oidPolicy     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 8}
	oidFormFactor = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 9}
)

var (
	rootOnce sync.Once
	rootKey  *ecdsa.PrivateKey
	rootCert *x509.Certificate
	rootErr  error
)

// virtualRoot returns the virtual attestation root. Its key is derived from a
// fixed, public seed so every process — and every saved virtual key — agrees
// on it; it protects nothing and must never be trusted outside practice mode.
func virtualRoot() (*ecdsa.PrivateKey, *x509.Certificate, error) {
	rootOnce.Do(func() {
		seed := sha256.Sum256([]byte("keydesk virtual PIV attestation root v1 (public, not secret)"))
		rootKey, rootErr = ecdsa.ParseRawPrivateKey(elliptic.P256(), seed[:])
		if rootErr != nil {
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(1),
			Subject:               pkix.Name{CommonName: VirtualRootName, Organization: []string{"keydesk practice mode"}},
			NotBefore:             time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
			NotAfter:              time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		var der []byte
		// The signature bytes may differ between processes; the key and
		// subject do not, so chains built by any process verify.
		der, rootErr = x509.CreateCertificate(rand.Reader, tmpl, tmpl, rootKey.Public(), rootKey)
		if rootErr == nil {
			rootCert, rootErr = x509.ParseCertificate(der)
		}
	})
	return rootKey, rootCert, rootErr
}

// VirtualRoot is the certificate of the virtual PIV attestation root, for
// callers that explicitly choose to trust virtual keys.
func VirtualRoot() *x509.Certificate {
	_, c, err := virtualRoot()
	if err != nil {
		panic("pivapplet: building the virtual root: " + err.Error())
	}
	return c
}

// factoryAttestation makes the per-key attestation key and certificate that a
// YubiKey carries in slot F9 from manufacture (a reset keeps it).
func factoryAttestation(id virtual.Identity) (*ecdsa.PrivateKey, []byte, error) {
	rk, rc, err := virtualRoot()
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetUint64(uint64(id.Serial)),
		Subject:               pkix.Name{CommonName: "keydesk Virtual PIV Attestation (not Yubico)", SerialNumber: fmt.Sprint(id.Serial)},
		NotBefore:             time.Now().Add(-time.Hour).UTC(),
		NotAfter:              time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, rc, key.Public(), rk)
	return key, der, err
}

// attestSlot issues the certificate ATTEST returns: the slot's public key,
// signed by the factory attestation key, with Yubico's extensions.
func attestSlot(id virtual.Identity, slot byte, ks *KeySlot, pub crypto.PublicKey, attKey crypto.Signer, attCert *x509.Certificate) ([]byte, error) {
	serial, err := asn1.Marshal(big.NewInt(int64(id.Serial)))
	if err != nil {
		return nil, err
	}
	sn := make([]byte, 16)
	rand.Read(sn)
	sn[0] &= 0x7F
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).SetBytes(sn),
		Subject:      pkix.Name{CommonName: fmt.Sprintf("YubiKey PIV Attestation %02x", slot)},
		NotBefore:    time.Now().Add(-time.Minute).UTC(),
		NotAfter:     time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC),
		ExtraExtensions: []pkix.Extension{
			{Id: oidFirmware, Value: []byte{id.Firmware.Major, id.Firmware.Minor, id.Firmware.Patch}},
			{Id: oidSerial, Value: serial},
			{Id: oidPolicy, Value: []byte{ks.PINPolicy, ks.TouchPolicy}},
			{Id: oidFormFactor, Value: []byte{byte(id.FormFactor)}},
		},
	}
	return x509.CreateCertificate(rand.Reader, tmpl, attCert, pub, attKey)
}
