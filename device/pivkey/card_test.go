package pivkey_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ebfe/scard"
	"github.com/go-piv/piv-go/v2/piv"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/pcscd"
	"github.com/keydesk/keydesk/device/virtual/pivapplet"
	"github.com/keydesk/keydesk/device/virtual/sim"
)

// The shared suite runs against virtual keys over the real PC/SC stack, or
// against one real YubiKey when asked; it wipes that key's PIV application.
var (
	realSerial = flag.Uint("yubikey-serial", 0, "run the suite against the real YubiKey with this serial")
	realWipe   = flag.Bool("wipe-yubikey", false, "confirm that the real YubiKey's PIV application may be wiped")
)

var daemon *pcscd.Daemon

func TestMain(m *testing.M) {
	flag.Parse()
	if *realSerial != 0 {
		if !*realWipe {
			os.Stderr.WriteString("-yubikey-serial needs -wipe-yubikey: the suite resets the key's PIV application\n")
			os.Exit(2)
		}
		os.Exit(m.Run())
	}
	pcscd.RunTests(m, pcscd.MaxReaders, &daemon)
}

const (
	defPIN = "123456"
	defPUK = "12345678"
)

// rig is one key under test: a virtual key on the private pcscd, or the
// real key the flags name.
type rig struct {
	card   *pivkey.Card
	y      *sim.YubiKey // nil for a real key
	serial uint32
	index  int
}

func plug(t testing.TB, index int, fw virtual.Version) *rig {
	t.Helper()
	if *realSerial != 0 {
		return plugReal(t)
	}
	serial := uint32(sim.FirstSerial + index)
	y, err := sim.New(sim.Options{Serial: serial, Firmware: fw})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	slot, err := y.Run(ctx, daemon.Addr(index), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-slot.Done()
		wctx, done := context.WithTimeout(context.Background(), 10*time.Second)
		daemon.WaitCard(wctx, index, false)
		done()
	})
	// Wait until pcscd has powered this card up: a card from an earlier test
	// may have held the reader until pcscd noticed it leave.
	select {
	case <-slot.PoweredOn():
	case <-time.After(10 * time.Second):
		t.Fatalf("pcscd did not power up the card in %q within 10s", daemon.Reader(index))
	}
	r := &rig{card: pivkey.Open(daemon.Reader(index), serial), y: y, serial: serial, index: index}
	r.waitPresent(t, true)
	return r
}

func plugReal(t testing.TB) *rig {
	sc, err := scard.EstablishContext()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Release()
	readers, _ := sc.ListReaders()
	for _, rd := range readers {
		st, err := pivkey.Open(rd, uint32(*realSerial)).Status(context.Background())
		if err == nil && st.Serial == uint32(*realSerial) {
			r := &rig{card: pivkey.Open(rd, st.Serial), serial: st.Serial}
			if err := r.card.Reset(context.Background(), st.Serial); err != nil {
				t.Fatalf("wiping the real key's PIV application: %v", err)
			}
			return r
		}
	}
	t.Fatalf("no YubiKey with serial %d attached", *realSerial)
	return nil
}

func (r *rig) virtualOnly(t *testing.T) {
	if r.y == nil {
		t.Skip("needs the virtual key's controls")
	}
}

func (r *rig) waitPresent(t testing.TB, want bool) {
	t.Helper()
	sc, err := scard.EstablishContext()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Release()
	rs := []scard.ReaderState{{Reader: r.card.Reader, CurrentState: scard.StateUnaware}}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := sc.GetStatusChange(rs, time.Second); err != nil && err != scard.ErrTimeout {
			t.Fatal(err)
		}
		if (rs[0].EventState&scard.StatePresent != 0) == want {
			return
		}
		rs[0].CurrentState = rs[0].EventState
	}
	t.Fatalf("card presence in %q never became %v", r.card.Reader, want)
}

// pins answers PIN prompts from a script and records what was asked.
type pins struct {
	answers map[string]string
	asked   []string
}

func (p *pins) cb() device.Callbacks {
	return device.Callbacks{PIN: func(_ context.Context, what string) (string, error) {
		p.asked = append(p.asked, what)
		a, ok := p.answers[what]
		if !ok {
			return "", errors.New("no answer for " + what)
		}
		return a, nil
	}}
}

func defaults() *pins { return &pins{answers: map[string]string{pivkey.PromptPIN: defPIN}} }

var fw57 = virtual.Version{Major: 5, Minor: 7, Patch: 2}
var fw52 = virtual.Version{Major: 5, Minor: 2, Patch: 7}

func TestStatusFactoryFresh(t *testing.T) {
	r := plug(t, 0, fw57)
	st, err := r.card.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Serial != r.serial || st.PINRetries != 3 || st.PUKRetries != 3 || !st.PINDefault || !st.PUKDefault {
		t.Fatalf("status %+v", st)
	}
	if r.y != nil && (st.MgmtKeyAlgorithm != device.MgmtAES192 || !st.MgmtKeyDefault || st.MgmtKeyProtected || len(st.Slots) != 0) {
		t.Fatalf("status %+v", st)
	}
}

func TestStatusOldFirmware(t *testing.T) {
	r := plug(t, 0, fw52)
	r.virtualOnly(t)
	st, err := r.card.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Firmware.String() != "5.2.7" || st.PINRetries != 3 || st.PUKRetries != -1 || st.MgmtKeyAlgorithm != device.Mgmt3DES {
		t.Fatalf("status %+v", st)
	}
}

func TestWrongSerialIsRefused(t *testing.T) {
	r := plug(t, 0, fw57)
	other := pivkey.Open(r.card.Reader, r.serial+1)
	_, err := other.Status(context.Background())
	var sm *device.SerialMismatchError
	if !errors.As(err, &sm) || sm.Got != r.serial {
		t.Fatalf("status of the wrong key: %v", err)
	}
	if err := other.Reset(context.Background(), r.serial+1); !errors.As(err, &sm) {
		t.Fatalf("reset of the wrong key: %v", err)
	}
	if err := r.card.Reset(context.Background(), 0); !errors.Is(err, pivkey.ErrNotConfirmed) {
		t.Fatalf("unconfirmed reset: %v", err)
	}
}

func TestPINDownToBlockedThenUnblock(t *testing.T) {
	r := plug(t, 0, fw57)
	ctx := context.Background()
	if err := r.card.ChangePIN(ctx, defPIN, "246810"); err != nil {
		t.Fatal(err)
	}
	for left := 2; left >= 1; left-- {
		err := r.card.ChangePIN(ctx, "000000", "135790")
		var wp *device.WrongPINError
		if !errors.As(err, &wp) || wp.PUK || wp.Retries != left {
			t.Fatalf("wrong PIN with %d left: %v", left, err)
		}
		if device.Hint(err) == "" {
			t.Fatal("no hint for a wrong PIN")
		}
	}
	if err := r.card.ChangePIN(ctx, "000000", "135790"); !errors.Is(err, device.ErrPINBlocked) {
		t.Fatalf("third wrong PIN: %v", err)
	}
	if err := r.card.ChangePIN(ctx, "246810", "135790"); !errors.Is(err, device.ErrPINBlocked) {
		t.Fatalf("right PIN once blocked: %v", err)
	}
	st, _ := r.card.Status(ctx)
	if st.PINRetries != 0 {
		t.Fatalf("retries after blocking: %d", st.PINRetries)
	}
	err := r.card.UnblockPIN(ctx, "87654321", "135790")
	var wp *device.WrongPINError
	if !errors.As(err, &wp) || !wp.PUK || wp.Retries != 2 {
		t.Fatalf("wrong PUK: %v", err)
	}
	if err := r.card.UnblockPIN(ctx, defPUK, "135790"); err != nil {
		t.Fatal(err)
	}
	if err := r.card.ChangePIN(ctx, "135790", "112233"); err != nil {
		t.Fatalf("new PIN after unblock: %v", err)
	}
	if err := r.card.ChangePUK(ctx, defPUK, "11223344"); err != nil {
		t.Fatal(err)
	}
	st, _ = r.card.Status(ctx)
	if st.PINRetries != 3 || st.PUKDefault || st.PINDefault {
		t.Fatalf("status after changes %+v", st)
	}
	if err := r.card.ChangePIN(ctx, "112233", "12"); !errors.Is(err, pivkey.ErrPINFormat) {
		t.Fatalf("short PIN: %v", err)
	}
}

func TestSetRetries(t *testing.T) {
	r := plug(t, 0, fw57)
	ctx := context.Background()
	if err := r.card.SetRetries(ctx, defaults().cb(), 5, 6); err != nil {
		t.Fatal(err)
	}
	st, err := r.card.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PINRetries != 5 || st.PUKRetries != 6 {
		t.Fatalf("retries %d/%d", st.PINRetries, st.PUKRetries)
	}
}

func TestProtectedRotationAndGenerate(t *testing.T) {
	for _, fw := range []virtual.Version{fw57, fw52} {
		t.Run(fw.String(), func(t *testing.T) {
			r := plug(t, 0, fw)
			ctx := context.Background()
			var escrowed []byte
			alg, err := r.card.RotateManagementKey(ctx, defaults().cb(), pivkey.RotateOptions{
				Protect: true,
				Escrow:  func(k []byte, _ device.MgmtKeyAlgorithm) error { escrowed = append([]byte(nil), k...); return nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			want := device.MgmtAES192
			if !fw.AtLeast(5, 4, 0) {
				want = device.Mgmt3DES
			}
			if alg != want || len(escrowed) != 24 {
				t.Fatalf("rotated to %v (%d escrowed bytes)", alg, len(escrowed))
			}
			st, err := r.card.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !st.MgmtKeyProtected || (fw.AtLeast(5, 3, 0) && st.MgmtKeyDefault) {
				t.Fatalf("status after rotation %+v", st)
			}
			// The default key no longer works; the PIN alone does.
			p := defaults()
			pub, err := r.card.Generate(ctx, p.cb(), 0x9A, pivkey.KeySpec{Algorithm: "ECCP256"})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.asked) == 0 {
				t.Fatal("generating with a protected key did not ask for the PIN")
			}
			// The escrowed key works too, without a PIN.
			esc := *r.card
			esc.ManagementKey = escrowed
			if _, err := esc.Generate(ctx, device.Callbacks{}, 0x9C, pivkey.KeySpec{Algorithm: "ECCP256"}); err != nil {
				t.Fatalf("generate with the escrowed key: %v", err)
			}
			wrong := *r.card
			wrong.ManagementKey = pivkey.DefaultManagementKey
			if _, err := wrong.Generate(ctx, device.Callbacks{}, 0x9C, pivkey.KeySpec{}); !errors.Is(err, pivkey.ErrWrongManagementKey) {
				t.Fatalf("generate with the default key after rotation: %v", err)
			}
			sig, err := r.card.Sign(ctx, defaults().cb(), 0x9A, pub, []byte("challenge"))
			if err != nil {
				t.Fatal(err)
			}
			d := sha256.Sum256([]byte("challenge"))
			if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig) {
				t.Fatal("signature does not verify")
			}
		})
	}
}

// After keydesk's protected rotation, ykman sees the key as protected and
// its piv commands work with the PIN alone.
func TestProtectedRotationYkman(t *testing.T) {
	r := plug(t, 0, fw57)
	r.virtualOnly(t)
	if _, err := exec.LookPath("ykman"); err != nil {
		t.Fatal("ykman is not installed (packaging/install-deps.sh installs it)")
	}
	if _, err := r.card.RotateManagementKey(context.Background(), defaults().cb(), pivkey.RotateOptions{Protect: true}); err != nil {
		t.Fatal(err)
	}
	ykman := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("ykman", append([]string{"-r", r.card.Reader}, args...)...)
		cmd.Env = append(os.Environ(), daemon.Env())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ykman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	info := ykman("piv", "info")
	if !strings.Contains(info, "protected by PIN") && !strings.Contains(info, "PIN-protected") {
		t.Fatalf("ykman does not report the management key as PIN-protected:\n%s", info)
	}
	// The PIN goes in on stdin-less -P here only because ykman offers no other
	// non-interactive way; it is the factory PIN of a throwaway virtual key.
	ykman("piv", "keys", "generate", "-P", defPIN, "-a", "ECCP256", "9d", os.DevNull)
	st, err := r.card.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Slots) != 1 || st.Slots[0].Slot != 0x9D || st.Slots[0].Origin != device.OriginGenerated {
		t.Fatalf("slots after ykman generate: %+v", st.Slots)
	}
}

func TestAttestation(t *testing.T) {
	r := plug(t, 0, fw57)
	ctx := context.Background()
	pub, err := r.card.Generate(ctx, defaults().cb(), 0x9A, pivkey.KeySpec{Algorithm: "ECCP256", PINPolicy: "once", TouchPolicy: "never"})
	if err != nil {
		t.Fatal(err)
	}
	att, err := r.card.Attest(ctx, 0x9A)
	if err != nil {
		t.Fatal(err)
	}
	var extra []*x509.Certificate
	if r.y != nil {
		// A virtual key is not genuine unless its root is trusted explicitly.
		if _, err := pivkey.VerifyAttestation(att, pivkey.AttestationPolicy{}); !errors.Is(err, pivkey.ErrNotGenuine) {
			t.Fatalf("virtual attestation accepted without trusting its root: %v", err)
		}
		extra = []*x509.Certificate{pivapplet.VirtualRoot()}
	}
	v, err := pivkey.VerifyAttestation(att, pivkey.AttestationPolicy{ExtraRoots: extra, PublicKey: pub, Serial: r.serial})
	if err != nil {
		t.Fatal(err)
	}
	if v.Serial != r.serial || v.Yubico == (r.y != nil) || v.Slot != piv.SlotAuthentication {
		t.Fatalf("verdict %+v", v)
	}
	other, _ := r.card.Generate(ctx, defaults().cb(), 0x9C, pivkey.KeySpec{})
	if _, err := pivkey.VerifyAttestation(att, pivkey.AttestationPolicy{ExtraRoots: extra, PublicKey: other}); !errors.Is(err, pivkey.ErrNotGenuine) {
		t.Fatalf("attestation of another key accepted: %v", err)
	}
	if _, err := pivkey.VerifyAttestation(att, pivkey.AttestationPolicy{ExtraRoots: extra, Serial: r.serial + 1}); !errors.Is(err, pivkey.ErrNotGenuine) {
		t.Fatalf("attestation for another serial accepted: %v", err)
	}
	if _, err := pivkey.VerifyAttestation(att, pivkey.AttestationPolicy{ExtraRoots: extra, Now: time.Now().AddDate(100, 0, 0)}); !errors.Is(err, pivkey.ErrNotGenuine) {
		t.Fatalf("expired chain accepted: %v", err)
	}
}

func TestCertificates(t *testing.T) {
	r := plug(t, 0, fw57)
	ctx := context.Background()
	pub, err := r.card.Generate(ctx, defaults().cb(), 0x9A, pivkey.KeySpec{Algorithm: "ECCP384"})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := r.card.CSR(ctx, defaults().cb(), 0x9A, pkix.Name{CommonName: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	req, err := x509.ParseCertificateRequest(csr)
	if err != nil || req.CheckSignature() != nil || req.Subject.CommonName != "ada" {
		t.Fatalf("csr: %v", err)
	}
	cert, err := r.card.SelfSign(ctx, defaults().cb(), 0x9A, pkix.Name{CommonName: "ada"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) != nil || !pub.(*ecdsa.PublicKey).Equal(cert.PublicKey) {
		t.Fatal("self-signed certificate does not verify")
	}
	st, _ := r.card.Status(ctx)
	if len(st.Slots) != 1 || st.Slots[0].Certificate == nil || st.Slots[0].Algorithm != "ECCP384" || st.Slots[0].PINPolicy != "once" {
		t.Fatalf("slots %+v", st.Slots)
	}
	// A certificate for another key is refused.
	if _, err := r.card.Generate(ctx, defaults().cb(), 0x9C, pivkey.KeySpec{}); err != nil {
		t.Fatal(err)
	}
	if err := r.card.ImportCertificate(ctx, defaults().cb(), 0x9C, cert); err == nil {
		t.Fatal("certificate for another slot's key imported")
	}
}

// TestRefusedCertificateLeavesCardIDs: a certificate refused for not
// matching the slot's key writes no CHUID or CCC either; the matching one
// does.
func TestRefusedCertificateLeavesCardIDs(t *testing.T) {
	r := plug(t, 0, fw57)
	ctx := context.Background()
	if _, err := r.card.Generate(ctx, defaults().cb(), 0x9A, pivkey.KeySpec{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.card.Generate(ctx, defaults().cb(), 0x9C, pivkey.KeySpec{}); err != nil {
		t.Fatal(err)
	}
	csr, err := r.card.CSR(ctx, defaults().cb(), 0x9A, pkix.Name{CommonName: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	cert := caSign(t, csr)
	if err := r.card.ImportCertificate(ctx, defaults().cb(), 0x9C, cert); err == nil {
		t.Fatal("certificate for another slot's key imported")
	}
	if ids, err := r.card.ReadCardIDs(ctx); err != nil || ids.CHUID != nil || ids.CCC != nil {
		t.Fatalf("after a refused certificate: %+v %v", ids, err)
	}
	if err := r.card.ImportCertificate(ctx, defaults().cb(), 0x9A, cert); err != nil {
		t.Fatal(err)
	}
	if ids, err := r.card.ReadCardIDs(ctx); err != nil || ids.Parsed == nil || ids.CCC == nil {
		t.Fatalf("after importing a certificate: %+v %v", ids, err)
	}
	st, err := r.card.Status(ctx)
	if err != nil || len(st.Slots) != 2 || st.Slots[0].Certificate == nil || st.Slots[0].Certificate.Subject.CommonName != "ada" {
		t.Fatalf("slots after import: %+v %v", st, err)
	}
}

// caSign issues a certificate for a CSR from a throwaway CA.
func caSign(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	req, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: req.Subject, NotBefore: ca.NotBefore, NotAfter: ca.NotAfter}
	out, err := x509.CreateCertificate(rand.Reader, leaf, ca, req.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(out)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTouchTimeout(t *testing.T) {
	r := plug(t, 0, fw57)
	r.virtualOnly(t)
	ctx := context.Background()
	pub, err := r.card.Generate(ctx, defaults().cb(), 0x9A, pivkey.KeySpec{TouchPolicy: "always", PINPolicy: "never"})
	if err != nil {
		t.Fatal(err)
	}
	r.y.Key.Presence.SetMode(virtual.TouchNever)
	r.y.Key.Presence.SetTimeout(200 * time.Millisecond)
	touched := false
	cb := device.Callbacks{Touch: func(context.Context) { touched = true }}
	_, err = r.card.Sign(ctx, cb, 0x9A, pub, []byte("x"))
	if !errors.Is(err, device.ErrTouchTimeout) || !touched {
		t.Fatalf("sign with nobody touching: %v (touch prompt shown: %v)", err, touched)
	}
}

// Pulling the key while it waits for a touch fails with ErrKeyRemoved, and
// the key is consistent when it comes back.
func TestRemovedMidOperation(t *testing.T) {
	r := plug(t, 0, fw57)
	r.virtualOnly(t)
	ctx := context.Background()
	pub, err := r.card.Generate(ctx, defaults().cb(), 0x9A, pivkey.KeySpec{TouchPolicy: "always", PINPolicy: "never"})
	if err != nil {
		t.Fatal(err)
	}
	r.y.Key.Presence.SetMode(virtual.TouchManual)
	waiting := r.y.Key.Presence.Waiting()
	done := make(chan error, 1)
	go func() {
		_, err := r.card.Sign(ctx, device.Callbacks{}, 0x9A, pub, []byte("x"))
		done <- err
	}()
	<-waiting
	r.y.Key.Remove()
	if err := <-done; !errors.Is(err, device.ErrKeyRemoved) {
		t.Fatalf("sign interrupted by removal: %v", err)
	}
	if device.Hint(device.ErrKeyRemoved) == "" {
		t.Fatal("no hint for a removed key")
	}
	if _, err := r.card.Status(ctx); !errors.Is(err, device.ErrKeyRemoved) {
		t.Fatalf("status with no key: %v", err)
	}
	r.y.Key.Presence.SetMode(virtual.TouchAuto)
	r.y.Key.Insert()
	r.waitPresent(t, true)
	st, err := r.card.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Slots) != 1 || !pub.(*ecdsa.PublicKey).Equal(st.Slots[0].PublicKey) || st.PINRetries != 3 {
		t.Fatalf("state after reinsertion: %+v", st)
	}
	if _, err := r.card.Sign(ctx, device.Callbacks{}, 0x9A, pub, []byte("x")); err != nil {
		t.Fatalf("sign after reinsertion: %v", err)
	}
}

func TestReset(t *testing.T) {
	r := plug(t, 0, fw57)
	ctx := context.Background()
	if _, err := r.card.RotateManagementKey(ctx, defaults().cb(), pivkey.RotateOptions{Protect: true}); err != nil {
		t.Fatal(err)
	}
	if err := r.card.ChangePIN(ctx, defPIN, "999999"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.card.Generate(ctx, pinsFor("999999").cb(), 0x9A, pivkey.KeySpec{}); err != nil {
		t.Fatal(err)
	}
	if err := r.card.Reset(ctx, r.serial); err != nil {
		t.Fatal(err)
	}
	st, err := r.card.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.PINDefault || !st.MgmtKeyDefault || st.MgmtKeyProtected || len(st.Slots) != 0 {
		t.Fatalf("status after reset %+v", st)
	}
}

func pinsFor(pin string) *pins { return &pins{answers: map[string]string{pivkey.PromptPIN: pin}} }

// TestImportKeyAndDeleteCertificate: a software key and its certificate
// go into a slot (IMPORT KEY) and sign there; deleting the certificate
// leaves the key.
func TestImportKeyAndDeleteCertificate(t *testing.T) {
	r := plug(t, 0, fw57)
	ctx := context.Background()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "bea"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := r.card.ImportKey(ctx, defaults().cb(), 0x9D, priv, pivkey.KeySpec{PINPolicy: "once", TouchPolicy: "never"}, cert); err != nil {
		t.Fatal(err)
	}
	st, err := r.card.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got *device.SlotStatus
	for i := range st.Slots {
		if st.Slots[i].Slot == 0x9D {
			got = &st.Slots[i]
		}
	}
	if got == nil || got.Empty || got.Certificate == nil || got.Certificate.Subject.CommonName != "bea" || !priv.PublicKey.Equal(got.PublicKey) {
		t.Fatalf("slot 9d after the import: %+v", got)
	}
	if err := r.card.DeleteCertificate(ctx, defaults().cb(), 0x9D); err != nil {
		t.Fatal(err)
	}
	st, err = r.card.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Slots {
		if s.Slot == 0x9D && (s.Certificate != nil || s.Empty) {
			t.Fatalf("slot 9d after deleting its certificate: certificate %v, key gone %v", s.Certificate, s.Empty)
		}
	}
	if err := r.card.DeleteCertificate(ctx, defaults().cb(), 0xF9); err == nil {
		t.Error("the attestation certificate (f9) was deleted")
	}
}

// TestPINState: the short read of the PIN and PUK state agrees with
// Status, before and after a wrong PIN.
func TestPINState(t *testing.T) {
	r := plug(t, 0, fw57)
	ctx := context.Background()
	p, err := r.card.PINState(ctx)
	if err != nil || p.PINRetries != 3 || p.PUKRetries != 3 || !p.PINDefault || !p.PUKDefault {
		t.Fatalf("fresh key: %+v %v", p, err)
	}
	if err := r.card.ChangePIN(ctx, "999999", "13572468"); err == nil {
		t.Fatal("a wrong PIN was taken")
	}
	p, err = r.card.PINState(ctx)
	st, serr := r.card.Status(ctx)
	if err != nil || serr != nil || p.PINRetries != 2 || p.PINRetries != st.PINRetries || p.PUKRetries != st.PUKRetries || p.PINDefault != st.PINDefault {
		t.Fatalf("after a wrong PIN: short read %+v %v, status %+v %v", p, err, st, serr)
	}
}
