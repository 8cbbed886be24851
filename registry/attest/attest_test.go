package attest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/attest"
	"github.com/keydesk/keydesk/registry/credential"
)

// now is the wall clock: go-webauthn checks attestation certificates'
// validity against it, whatever time the registry verifies at.
var now = time.Now().UTC().Truncate(time.Second)

// ca is a certificate with its private key.
type ca struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func newKey() *ecdsa.PrivateKey { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }

// issue signs tmpl for pub by parent (self-signed by key when parent is nil).
func issue(t *testing.T, parent *ca, key *ecdsa.PrivateKey, tmpl *x509.Certificate) *ca {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
	}
	pc, pk := tmpl, key
	if parent != nil {
		pc, pk = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pc, &key.PublicKey, pk)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{key: key, cert: c}
}

func root(t *testing.T, cn string) *ca {
	return issue(t, nil, newKey(), &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign})
}

func pemOf(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

var oidAAGUID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 45724, 1, 1, 4}

// packed builds a packed attestation object (WebAuthn L2 §8.2) for a new
// ES256 credential, signed by att.
type packed struct {
	cred   *ecdsa.PrivateKey
	credID []byte
	rpID   string
	aaguid []byte
	cdHash []byte
	obj    []byte
}

func makePacked(t *testing.T, att *ca, chain [][]byte, tamper func(ad []byte)) packed {
	t.Helper()
	p := packed{cred: newKey(), credID: []byte("credential-1"), rpID: "example.org", aaguid: []byte("0123456789abcdef")}
	h := sha256.Sum256([]byte(`{"type":"webauthn.create"}`))
	p.cdHash = h[:]
	rp := sha256.Sum256([]byte(p.rpID))
	ad := append([]byte{}, rp[:]...)
	ad = append(ad, 0x41, 0, 0, 0, 1)
	ad = append(ad, p.aaguid...)
	ad = binary.BigEndian.AppendUint16(ad, uint16(len(p.credID)))
	ad = append(ad, p.credID...)
	ad = append(ad, credential.COSEKeyES256(&p.cred.PublicKey)...)
	if tamper != nil {
		tamper(ad)
	}
	d := sha256.Sum256(append(append([]byte{}, ad...), p.cdHash...))
	sig, _ := ecdsa.SignASN1(rand.Reader, att.key, d[:])
	x5c := append([][]byte{att.cert.Raw}, chain...)
	obj, err := cbor.Marshal(map[string]any{"fmt": "packed", "authData": ad, "attStmt": map[string]any{"alg": -7, "sig": sig, "x5c": x5c}})
	if err != nil {
		t.Fatal(err)
	}
	p.obj = obj
	return p
}

func (p packed) input() attest.FIDOInput {
	return attest.FIDOInput{AttestationObject: p.obj, ClientDataHash: p.cdHash, CredentialID: p.credID, PublicKey: credential.COSEKeyES256(&p.cred.PublicKey), RPID: p.rpID}
}

func fidoLeaf(t *testing.T, parent *ca, aaguid []byte) *ca {
	ext, _ := asn1.Marshal(aaguid)
	return issue(t, parent, newKey(), &x509.Certificate{
		Subject:               pkix.Name{CommonName: "FIDO attestation", OrganizationalUnit: []string{"Authenticator Attestation"}, Organization: []string{"Test"}, Country: []string{"SE"}},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: oidAAGUID, Value: ext}},
	})
}

func want(t *testing.T, got attest.Result, v registry.AttestationVerdict, reason string) {
	t.Helper()
	if got.Verdict != v || !strings.Contains(got.Reason, reason) {
		t.Fatalf("verdict %s (%s), want %s (%q)", got.Verdict, got.Reason, v, reason)
	}
}

func TestFIDOPacked(t *testing.T) {
	r := root(t, "Test FIDO Root")
	inter := issue(t, r, newKey(), &x509.Certificate{Subject: pkix.Name{CommonName: "Test FIDO Intermediate"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign})
	leaf := fidoLeaf(t, inter, []byte("0123456789abcdef"))
	trusting := attest.Yubico()
	if err := trusting.AddPEM(pemOf(r.cert)); err != nil {
		t.Fatal(err)
	}
	good := makePacked(t, leaf, [][]byte{inter.cert.Raw}, nil)
	res := trusting.FIDO(good.input(), now)
	want(t, res, registry.VerdictGenuine, "")
	if string(res.AAGUID) != string(good.aaguid) {
		t.Fatalf("attested aaguid %q, want %q", res.AAGUID, good.aaguid)
	}
	// The same statement against Yubico's roots only.
	want(t, attest.Yubico().FIDO(good.input(), now), registry.VerdictUntrustedRoot, "trusted root")
	// Without the intermediate in x5c the chain is broken.
	noInter := makePacked(t, leaf, nil, nil)
	want(t, trusting.FIDO(noInter.input(), now), registry.VerdictUntrustedRoot, "")
	// Expired: the chain does not verify at a later time.
	want(t, trusting.FIDO(good.input(), now.Add(48*time.Hour)), registry.VerdictInvalid, "chain")

	in := good.input()
	in.ClientDataHash = make([]byte, 32)
	want(t, trusting.FIDO(in, now), registry.VerdictInvalid, "signature")
	in = good.input()
	in.CredentialID = []byte("another")
	want(t, trusting.FIDO(in, now), registry.VerdictInvalid, "credential id")
	in = good.input()
	in.PublicKey = credential.COSEKeyES256(&newKey().PublicKey)
	want(t, trusting.FIDO(in, now), registry.VerdictInvalid, "public key")
	in = good.input()
	in.RPID = "evil.example"
	want(t, trusting.FIDO(in, now), registry.VerdictInvalid, "relying party")
	in = good.input()
	in.ClientDataHash = nil
	want(t, trusting.FIDO(in, now), registry.VerdictInvalid, "client data")
	// A leaf for another authenticator model (AAGUID) than it claims.
	other := makePacked(t, fidoLeaf(t, inter, []byte("fedcba9876543210")), [][]byte{inter.cert.Raw}, nil)
	want(t, trusting.FIDO(other.input(), now), registry.VerdictInvalid, "AAGUID")
	// A signature by a key that is not the certificate's.
	forged := makePacked(t, &ca{key: newKey(), cert: leaf.cert}, [][]byte{inter.cert.Raw}, nil)
	want(t, trusting.FIDO(forged.input(), now), registry.VerdictInvalid, "signature")
	// Self attestation: signed by the credential key itself, no x5c.
	self := makePacked(t, leaf, nil, nil)
	var obj map[string]any
	if err := cbor.Unmarshal(self.obj, &obj); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(append(append([]byte{}, obj["authData"].([]byte)...), self.cdHash...))
	sig, _ := ecdsa.SignASN1(rand.Reader, self.cred, d[:])
	obj["attStmt"] = map[string]any{"alg": -7, "sig": sig}
	self.obj, _ = cbor.Marshal(obj)
	want(t, trusting.FIDO(self.input(), now), registry.VerdictUntrustedRoot, "self attestation")
	// The same without a valid signature is invalid.
	obj["attStmt"] = map[string]any{"alg": -7, "sig": append(sig[:len(sig)-1:len(sig)-1], sig[len(sig)-1]^1)}
	self.obj, _ = cbor.Marshal(obj)
	want(t, trusting.FIDO(self.input(), now), registry.VerdictInvalid, "")
	// No attestation, "none" format, garbage.
	want(t, trusting.FIDO(attest.FIDOInput{}, now), registry.VerdictNone, "")
	none, _ := cbor.Marshal(map[string]any{"fmt": "none", "authData": []byte{}, "attStmt": map[string]any{}})
	want(t, trusting.FIDO(attest.FIDOInput{AttestationObject: none}, now), registry.VerdictNone, "")
	want(t, trusting.FIDO(attest.FIDOInput{AttestationObject: []byte("junk")}, now), registry.VerdictInvalid, "attestation object")
}

var oidSerial = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}

// pivChain is a YubiKey-style PIV attestation: root -> F9 device
// certificate -> slot certificate for the slot key.
func pivChain(t *testing.T, r *ca, serial int64, slotKey *ecdsa.PrivateKey) (slot, dev *ca) {
	dev = issue(t, r, newKey(), &x509.Certificate{Subject: pkix.Name{CommonName: "Test PIV Attestation"}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign})
	sn, _ := asn1.Marshal(big.NewInt(serial))
	slot = issue(t, dev, slotKey, &x509.Certificate{Subject: pkix.Name{CommonName: "YubiKey PIV Attestation 9a"}, ExtraExtensions: []pkix.Extension{{Id: oidSerial, Value: sn}}})
	return slot, dev
}

func TestPIV(t *testing.T) {
	r := root(t, "Test PIV Root")
	trusting := attest.Yubico()
	if err := trusting.AddPEM(pemOf(r.cert)); err != nil {
		t.Fatal(err)
	}
	k := newKey()
	slot, dev := pivChain(t, r, 12345678, k)
	in := attest.PIVInput{SlotCert: slot.cert.Raw, DeviceCert: dev.cert.Raw, SlotKey: &k.PublicKey, Serial: "12345678"}
	want(t, trusting.PIV(in, now), registry.VerdictGenuine, "")
	want(t, attest.Yubico().PIV(in, now), registry.VerdictUntrustedRoot, "trusted root")

	bad := in
	bad.SlotKey = &newKey().PublicKey
	want(t, trusting.PIV(bad, now), registry.VerdictInvalid, "registered slot key")
	bad = in
	bad.Serial = "87654321"
	want(t, trusting.PIV(bad, now), registry.VerdictInvalid, "serial")
	bad = in
	bad.DeviceCert = nil
	want(t, trusting.PIV(bad, now), registry.VerdictInvalid, "F9")
	// A slot certificate from another key's F9 certificate.
	_, otherDev := pivChain(t, r, 12345678, k)
	bad = in
	bad.DeviceCert = otherDev.cert.Raw
	want(t, trusting.PIV(bad, now), registry.VerdictInvalid, "not signed by the F9")
	want(t, trusting.PIV(in, now.Add(72*time.Hour)), registry.VerdictInvalid, "validity")
	want(t, trusting.PIV(attest.PIVInput{SlotKey: &k.PublicKey}, now), registry.VerdictNone, "")
}

// TestEmbeddedRoots: the embedded PEM files hold the roots they are named
// for, and practice roots are trusted only after AddPractice.
func TestEmbeddedRoots(t *testing.T) {
	if err := attest.Yubico().AddPEM([]byte("not pem")); err == nil {
		t.Fatal("AddPEM accepted a file without certificates")
	}
	subjects := attest.Subjects()
	for _, s := range []string{"Yubico FIDO Root CA Serial 450203556", "Yubico U2F Root CA Serial 457200631", "Yubico PIV Root CA Serial 263751", "Yubico Attestation Root 1", "keydesk Virtual FIDO Attestation CA - not Yubico", "keydesk Virtual PIV Attestation Root - NOT Yubico"} {
		found := false
		for _, got := range subjects {
			found = found || got == s
		}
		if !found {
			t.Errorf("no embedded root %q (have %v)", s, subjects)
		}
	}
}
