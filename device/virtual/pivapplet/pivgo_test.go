package pivapplet_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/go-piv/piv-go/v2/piv"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/iso7816"
	"github.com/keydesk/keydesk/device/virtual/pcscd"
	"github.com/keydesk/keydesk/device/virtual/pivapplet"
	"github.com/keydesk/keydesk/device/virtual/vpcd"
)

var daemon *pcscd.Daemon

func TestMain(m *testing.M) { pcscd.RunTests(m, 2, &daemon) }

type rig struct {
	key  *virtual.Key
	card *iso7816.Card
	piv  *pivapplet.Applet
}

// plug attaches a fresh virtual key with firmware fw to reader i.
func plug(t *testing.T, i int, fw virtual.Version) *rig {
	t.Helper()
	id := virtual.DefaultIdentity(20000000)
	id.Firmware = fw
	key := virtual.NewKey(id)
	app, err := pivapplet.New(key)
	if err != nil {
		t.Fatal(err)
	}
	card := iso7816.NewCard(nil, app)
	ctx, cancel := context.WithCancel(context.Background())
	slot := vpcd.Attach(ctx, daemon.Addr(i), key, card)
	<-slot.Connected()
	t.Cleanup(func() { cancel(); <-slot.Done() })
	return &rig{key: key, card: card, piv: app}
}

func open(t *testing.T, i int, r *rig) *piv.YubiKey {
	t.Helper()
	var yk *piv.YubiKey
	var err error
	for try := 0; try < 50; try++ { // pcscd notices a newly connected card within its poll period
		if yk, err = piv.Open(daemon.Reader(i)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("piv.Open(%q): %v\ntrace:\n%s", daemon.Reader(i), err, r.card.TraceString())
	}
	t.Cleanup(func() { yk.Close() })
	return yk
}

func selfSigned(t *testing.T, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "keydesk test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func pivSuite(t *testing.T, reader int, fw virtual.Version, mgmAlg byte) {
	r := plug(t, reader, fw)
	yk := open(t, reader, r)
	ctx := func(msg string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v\ntrace:\n%s", msg, err, r.card.TraceString())
		}
	}
	v := yk.Version()
	if v.Major != int(fw.Major) || v.Minor != int(fw.Minor) || v.Patch != int(fw.Patch) {
		t.Fatalf("version %+v, want %v", v, fw)
	}
	serial, err := yk.Serial()
	ctx("serial", err)
	if serial != 20000000 {
		t.Fatalf("serial %d", serial)
	}
	retries, err := yk.Retries()
	ctx("retries", err)
	if retries != 3 {
		t.Fatalf("retries %d", retries)
	}

	mk := piv.DefaultManagementKey
	if mgmAlg != pivapplet.Alg3DES {
		// piv-go reads the algorithm from metadata and uses the same default bytes.
		mk = pivapplet.DefaultManagementKey
	}
	// Generate and sign with each algorithm the firmware has.
	algs := []piv.Algorithm{piv.AlgorithmEC256, piv.AlgorithmEC384, piv.AlgorithmRSA2048}
	if fw.AtLeast(5, 7, 0) {
		algs = append(algs, piv.AlgorithmEd25519)
	}
	for _, alg := range algs {
		pub, err := yk.GenerateKey(mk, piv.SlotAuthentication, piv.Key{Algorithm: alg, PINPolicy: piv.PINPolicyOnce, TouchPolicy: piv.TouchPolicyNever})
		ctx("generate", err)
		priv, err := yk.PrivateKey(piv.SlotAuthentication, pub, piv.KeyAuth{PIN: piv.DefaultPIN})
		ctx("private key", err)
		msg := []byte("keydesk challenge")
		digest := sha256.Sum256(msg)
		switch p := pub.(type) {
		case *ecdsa.PublicKey:
			h := digest[:]
			sig, err := priv.(crypto.Signer).Sign(rand.Reader, h, crypto.SHA256)
			ctx("ecdsa sign", err)
			if !ecdsa.VerifyASN1(p, h, sig) {
				t.Fatalf("%v: signature does not verify", alg)
			}
		case *rsa.PublicKey:
			sig, err := priv.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA256)
			ctx("rsa sign", err)
			if err := rsa.VerifyPKCS1v15(p, crypto.SHA256, digest[:], sig); err != nil {
				t.Fatalf("rsa signature: %v", err)
			}
		case ed25519.PublicKey:
			sig, err := priv.(crypto.Signer).Sign(rand.Reader, msg, crypto.Hash(0))
			ctx("ed25519 sign", err)
			if !ed25519.Verify(p, msg, sig) {
				t.Fatal("ed25519 signature does not verify")
			}
		}
		// Attestation chains to the virtual root and carries the policy.
		att, err := yk.AttestationCertificate()
		ctx("attestation certificate", err)
		slotAtt, err := yk.Attest(piv.SlotAuthentication)
		ctx("attest", err)
		roots := x509.NewCertPool()
		roots.AddCert(pivapplet.VirtualRoot())
		a, err := (&piv.Verifier{Roots: roots}).Verify(att, slotAtt)
		ctx("verify attestation", err)
		if a.Serial != 20000000 || a.PINPolicy != piv.PINPolicyOnce || a.Version.Major != int(fw.Major) {
			t.Fatalf("attestation %+v", a)
		}
		if _, err := piv.Verify(att, slotAtt); err == nil {
			t.Fatal("the virtual attestation verified against Yubico's roots")
		}
		// Store a certificate in the slot and read it back.
		cert := selfSigned(t, pub, priv.(crypto.Signer))
		ctx("set certificate", yk.SetCertificate(mk, piv.SlotAuthentication, cert))
		got, err := yk.Certificate(piv.SlotAuthentication)
		ctx("certificate", err)
		if !got.Equal(cert) {
			t.Fatal("certificate read back differs")
		}
	}

	// PIN and PUK changes; wrong PIN down to blocked; unblock with the PUK.
	ctx("set pin", yk.SetPIN(piv.DefaultPIN, "24681357"))
	ctx("set puk", yk.SetPUK(piv.DefaultPUK, "87654321"))
	for want := 2; want >= 0; want-- {
		err := yk.VerifyPIN("00000000")
		var ae piv.AuthErr
		if !errors.As(err, &ae) || ae.Retries != want {
			t.Fatalf("wrong pin: %v, want %d retries left", err, want)
		}
	}
	if err := yk.VerifyPIN("24681357"); err == nil {
		t.Fatal("blocked PIN verified")
	}
	ctx("unblock", yk.Unblock("87654321", "11223344"))
	ctx("verify new pin", yk.VerifyPIN("11223344"))

	// New management key (AES-192 on 5.4+, 3DES before).
	newMK := make([]byte, 24)
	rand.Read(newMK)
	ctx("set management key", yk.SetManagementKey(mk, newMK))
	if _, err := yk.GenerateKey(mk, piv.SlotSignature, piv.Key{Algorithm: piv.AlgorithmEC256, TouchPolicy: piv.TouchPolicyNever}); err == nil {
		t.Fatal("old management key still works")
	}
	_, err = yk.GenerateKey(newMK, piv.SlotSignature, piv.Key{Algorithm: piv.AlgorithmEC256, PINPolicy: piv.PINPolicyAlways, TouchPolicy: piv.TouchPolicyNever})
	ctx("generate with new management key", err)

	// Reset restores factory defaults (piv-go blocks PIN and PUK first).
	ctx("reset", yk.Reset())
	ctx("default pin after reset", yk.VerifyPIN(piv.DefaultPIN))
	if _, err := yk.Certificate(piv.SlotAuthentication); err == nil {
		t.Fatal("certificate survived reset")
	}
	if _, err := yk.AttestationCertificate(); err != nil {
		t.Fatalf("factory attestation lost in reset: %v", err)
	}
}

func TestPIVThroughPivGo57(t *testing.T) {
	pivSuite(t, 0, virtual.Version{Major: 5, Minor: 7, Patch: 2}, pivapplet.AlgAES192)
}

func TestPIVThroughPivGo52(t *testing.T) {
	pivSuite(t, 1, virtual.Version{Major: 5, Minor: 2, Patch: 7}, pivapplet.Alg3DES)
}
