package keysui_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/keysui"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/device"
)

// params fills the open values dialog (tries, subject, file) and submits it.
func params(t *testing.T, v *keysui.View, values ...string) *keysui.ParamForm {
	t.Helper()
	uitest.WaitFor(t, wait, "a dialog asking for values", func() bool { return v.Detail.Params != nil })
	f := v.Detail.Params
	if len(f.Entries) != len(values) {
		t.Fatalf("the dialog asks for %q, the test gives %d values", f.Labels, len(values))
	}
	for i, s := range values {
		f.Entries[i].SetText("")
		test.Type(f.Entries[i], s)
	}
	f.Submit()
	return f
}

// confirm types the serial into the open confirmation and confirms.
func confirm(t *testing.T, env *uikit.Env, serial uint32) {
	t.Helper()
	entry, ok := env.Window.Canvas().Focused().(*uikit.Entry)
	if !ok || !strings.Contains(entry.PlaceHolder, "serial") {
		t.Fatal("no confirmation asking for the serial")
	}
	test.Type(entry, fmt.Sprint(serial))
	entry.OnSubmitted(entry.Text)
}

// pivStatus reads the key's PIV state straight from the key.
func pivStatus(t *testing.T, env *uikit.Env, serial uint32) *device.PIVStatus {
	t.Helper()
	release := env.HoldKeys()
	defer release()
	ctx := context.Background()
	k, err := env.Keys.Find(ctx, serial)
	if err != nil {
		t.Fatal(err)
	}
	card, err := env.Keys.PIV(k)
	if err != nil {
		t.Fatal(err)
	}
	st, err := card.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPIVSetRetries: the tries chosen in the dialog reach the key, behind a
// confirmation that names its serial and says PIN and PUK go back to their
// defaults; out-of-range tries are refused in the dialog; a wrong PIN
// changes nothing.
func TestPIVSetRetries(t *testing.T) {
	env, v := open(t)
	s1 := uitest.Fleet.Serial(1)
	v.Select(s1)
	form := func() *uikit.SecretForm { return v.Detail.Form }

	v.Detail.Params = nil
	test.Tap(v.Detail.PIVRetries)
	f := params(t, v, "0", "300")
	if !f.Problem.Visible() || !strings.Contains(f.Problem.Text, "1 to 255") {
		t.Fatalf("0 PIN tries accepted; the dialog says %q", f.Problem.Text)
	}
	f.Cancel()

	// A wrong PIN: refused with the tries left, nothing changed.
	v.Detail.Params, v.Detail.Form = nil, nil
	test.Tap(v.Detail.PIVRetries)
	params(t, v, "5", "7")
	confirm(t, env, s1)
	fill(t, form, "999999")
	result(t, v, "failed")
	if msg := v.Detail.Result.Text; !strings.Contains(msg, "tries left") {
		t.Errorf("wrong PIN reported as %q; want the tries left", msg)
	}
	if st := pivStatus(t, env, s1); st.PINRetries != 2 || st.PUKRetries != 3 {
		t.Fatalf("after a refused change the key has PIN %d, PUK %d tries left; want 2 and 3", st.PINRetries, st.PUKRetries)
	}

	v.Detail.Params, v.Detail.Form = nil, nil
	test.Tap(v.Detail.PIVRetries)
	params(t, v, "5", "7")
	dlg := env.Window.Canvas().Overlays().Top()
	if dlg == nil || !uitest.HasText(dlg, "123456") || !uitest.HasText(dlg, fmt.Sprint(s1)) {
		t.Error("the confirmation does not name the serial and the default PIN")
	}
	confirm(t, env, s1)
	fill(t, form, "123456")
	result(t, v, "allows 5 PIN and 7 PUK tries")
	if st := pivStatus(t, env, s1); st.PINRetries != 5 || st.PUKRetries != 7 || !st.PINDefault || !st.PUKDefault {
		t.Fatalf("the key has PIN %d, PUK %d tries (defaults %v, %v); want 5 and 7, both default", st.PINRetries, st.PUKRetries, st.PINDefault, st.PUKDefault)
	}
	uitest.WaitFor(t, wait, "the detail showing 5 PIN tries", func() bool {
		h := v.HealthOf(s1)
		return h != nil && h.Report != nil && h.Report.PIV != nil && h.Report.PIV.PINRetries == 5 &&
			strings.Contains(v.Detail.PIVState.Text, "PIN 5 tries left (factory default), PUK 7 tries left")
	})

	// Back to 3 and 3 for the tests that follow.
	v.Detail.Params, v.Detail.Form = nil, nil
	test.Tap(v.Detail.PIVRetries)
	params(t, v, "3", "3")
	confirm(t, env, s1)
	fill(t, form, "123456")
	result(t, v, "allows 3 PIN and 3 PUK tries")
}

// pinIfAsked answers the PIN dialog if the key asks for its PIN, until the
// result says want.
func pinIfAsked(t *testing.T, v *keysui.View, pin, want string) {
	t.Helper()
	uitest.WaitFor(t, wait, "result saying "+want, func() bool {
		if f := v.Detail.Form; f != nil {
			v.Detail.Form = nil
			test.Type(f.Entries[0], pin)
			f.Submit()
		}
		return strings.Contains(v.Detail.Result.Text, want) && !v.Detail.Cancel.Visible()
	})
}

// slotStatus is what the key says of slot.
func slotStatus(t *testing.T, env *uikit.Env, serial uint32, slot byte) device.SlotStatus {
	t.Helper()
	for _, s := range pivStatus(t, env, serial).Slots {
		if s.Slot == slot {
			return s
		}
	}
	return device.SlotStatus{Slot: slot, Empty: true}
}

// TestPIVCertificates: a certificate request for a slot's key is written to
// the file named, signed by that key; a self-signed certificate and a
// CA-issued one are stored in the slot behind a confirmation naming the
// serial; an empty slot, a wrong PIN and a certificate for another key are
// refused and change nothing.
func TestPIVCertificates(t *testing.T) {
	env, v := open(t)
	s1 := uitest.Fleet.Serial(1)
	// Replugged, the key forgets any PIN verified before, so it asks for
	// the PIN where this test expects.
	var before *keysui.Health
	uitest.WaitFor(t, wait, "the key read", func() bool { before = v.HealthOf(s1); return before != nil })
	uitest.Sim(t, fmt.Sprintf("remove %d", s1))
	uitest.WaitFor(t, wait, "the key gone", func() bool { return !slices.Contains(v.Shown(), s1) })
	uitest.Sim(t, fmt.Sprintf("insert %d", s1))
	uitest.WaitFor(t, wait, "the key back and read", func() bool {
		h := v.HealthOf(s1)
		return slices.Contains(v.Shown(), s1) && h != before && h.Report != nil && h.Report.PIV != nil && v.Select(s1)
	})
	form := func() *uikit.SecretForm { return v.Detail.Form }
	dir := t.TempDir()

	// Slot 9c holds no key: no request, no self-signed certificate,
	// nothing to export or delete (Import stays: a PKCS#12 file brings its
	// key).
	row9c := v.Detail.Slots[1]
	for _, b := range []*widget.Button{row9c.Request, row9c.SelfSign, row9c.Export, row9c.Delete} {
		if !b.Disabled() {
			t.Errorf("%q on slot 9c, which holds no key, is enabled", b.Text)
		}
	}
	if row9c.Generate.Disabled() {
		t.Error("Generate on the empty slot 9c is disabled")
	}

	// A key in 9a, then its request.
	row := v.Detail.Slots[0]
	test.Tap(row.Generate)
	confirm(t, env, s1)
	result(t, v, "New ECCP256 key generated in slot 9a")
	uitest.WaitFor(t, wait, "slot 9a's row offering a request", func() bool { return !row.Request.Disabled() && strings.Contains(row.Key.Text, "ECCP256") })
	pub := slotStatus(t, env, s1, 0x9a).PublicKey
	if pub == nil {
		t.Fatal("slot 9a holds no key after generating one")
	}
	// Self-signed: a wrong PIN changes nothing.
	v.Detail.Params, v.Detail.Form = nil, nil
	test.Tap(row.SelfSign)
	params(t, v, "CN=ada self", "30")
	confirm(t, env, s1)
	fill(t, form, "654321")
	result(t, v, "failed")
	if !strings.Contains(v.Detail.Result.Text, "PIN was wrong") {
		t.Errorf("a wrong PIN reported as %q", v.Detail.Result.Text)
	}
	if c := slotStatus(t, env, s1, 0x9a).Certificate; c != nil {
		t.Fatalf("slot 9a holds a certificate for %s after a wrong PIN", c.Subject)
	}

	v.Detail.Params, v.Detail.Form = nil, nil
	test.Tap(row.Request)
	f := params(t, v, "CN=ada", filepath.Join(dir, "missing", "9a.csr"))
	if !strings.Contains(f.Problem.Text, "does not exist") {
		t.Errorf("a file in a missing folder is not refused; the dialog says %q", f.Problem.Text)
	}
	path := filepath.Join(dir, "9a.csr")
	f.Entries[0].SetText("CN=ada,O=Example")
	f.Entries[1].SetText(path)
	f.Submit()
	fill(t, form, "123456")
	result(t, v, "saved to "+path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v.Detail.Params = nil
	test.Tap(row.Request)
	f = params(t, v, "CN=ada", path)
	if !strings.Contains(f.Problem.Text, "exists already") {
		t.Errorf("a typed name of an existing file is not refused; the dialog says %q", f.Problem.Text)
	}
	f.Cancel()
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("the request file holds %q", b)
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("the request's signature: %v", err)
	}
	if !pub.(*ecdsa.PublicKey).Equal(csr.PublicKey) || csr.Subject.CommonName != "ada" || len(csr.Subject.Organization) != 1 {
		t.Errorf("the request is for %s, subject %s; want slot 9a's key, CN=ada,O=Example", csr.PublicKeyAlgorithm, csr.Subject)
	}

	// The PIN verified for the request may still hold: the key asks again
	// only when it has to.
	v.Detail.Params, v.Detail.Form = nil, nil
	test.Tap(row.SelfSign)
	params(t, v, "CN=ada self", "30")
	confirm(t, env, s1)
	pinIfAsked(t, v, "123456", "holds a self-signed certificate for CN=ada self")
	c := slotStatus(t, env, s1, 0x9a).Certificate
	if c == nil || c.Subject.CommonName != "ada self" || !pub.(*ecdsa.PublicKey).Equal(c.PublicKey) {
		t.Fatalf("slot 9a holds %v after self-signing", c)
	}
	if left := time.Until(c.NotAfter); left < 29*24*time.Hour || left > 31*24*time.Hour {
		t.Errorf("the self-signed certificate ends in %v; want 30 days", left)
	}

	// Import: a certificate for another key is refused; the CA's
	// certificate for the slot's key is stored.
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issue := func(name string, pub any, pemOut bool) string {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
		ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Example CA"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".der")
		if pemOut {
			p, der = filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
		if err := os.WriteFile(p, der, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v.Detail.Params = nil
	test.Tap(row.Import)
	params(t, v, issue("someone else", &other.PublicKey, false))
	confirm(t, env, s1)
	result(t, v, "failed")
	if msg := v.Detail.Result.Text; !strings.Contains(msg, "another key than the one in slot 9a") || !strings.Contains(msg, "Nothing was changed") {
		t.Errorf("a certificate for another key reported as %q", msg)
	}
	if c := slotStatus(t, env, s1, 0x9a).Certificate; c == nil || c.Subject.CommonName != "ada self" {
		t.Fatalf("slot 9a holds %v after a refused import", c)
	}
	v.Detail.Params = nil
	test.Tap(row.Import)
	params(t, v, issue("ada", pub, true))
	confirm(t, env, s1)
	result(t, v, "holds the certificate for CN=ada")
	if c := slotStatus(t, env, s1, 0x9a).Certificate; c == nil || c.Subject.CommonName != "ada" || c.Issuer.CommonName != "Example CA" {
		t.Fatalf("slot 9a holds %v after importing the CA's certificate", c)
	}

	// Shown on the row, exported, deleted.
	uitest.WaitFor(t, wait, "slot 9a's row showing the certificate", func() bool {
		return strings.Contains(row.Cert.Text, "CN=ada") && strings.Contains(row.Cert.Text, "Issued by CN=Example CA") && !row.Export.Disabled()
	})
	out := filepath.Join(dir, "9a.pem")
	v.Detail.Params = nil
	test.Tap(row.Export)
	params(t, v, out)
	result(t, v, "saved in "+out)
	if b, err := os.ReadFile(out); err != nil {
		t.Fatal(err)
	} else if blk, _ := pem.Decode(b); blk == nil || !bytes.Equal(blk.Bytes, slotStatus(t, env, s1, 0x9a).Certificate.Raw) {
		t.Errorf("the exported file holds %q, not slot 9a's certificate", b)
	}
	test.Tap(row.Delete)
	dlg := env.Window.Canvas().Overlays().Top()
	if dlg == nil || !uitest.HasText(dlg, fmt.Sprintf("slot 9a on key %d", s1)) {
		t.Error("the delete confirmation does not name the slot and the key")
	}
	confirm(t, env, s1)
	pinIfAsked(t, v, "123456", "is deleted")
	if st := slotStatus(t, env, s1, 0x9a); st.Certificate != nil || st.Empty {
		t.Fatalf("after deleting the certificate slot 9a holds certificate %v, key gone %v", st.Certificate, st.Empty)
	}
	uitest.WaitFor(t, wait, "slot 9a's row without a certificate", func() bool { return row.Cert.Text == "No certificate" && row.Delete.Disabled() })
}

// TestPIVImportPKCS12: a PKCS#12 file's key and certificate go into a slot
// through the slot row's Import, its password asked in the PIN dialog; a
// wrong password changes nothing.
func TestPIVImportPKCS12(t *testing.T) {
	env, v := open(t)
	s1 := uitest.Fleet.Serial(1)
	dir := t.TempDir()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "bea key management"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	pk8, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyPath, certPath, p12 := filepath.Join(dir, "k.pem"), filepath.Join(dir, "c.pem"), filepath.Join(dir, "bea.p12")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk8}), 0o600)
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	// OpenSSL 3's default (PBES2, AES-256-CBC, PBKDF2, HMAC-SHA-256), and
	// 3DES with SHA-1, as Windows and older tools export.
	out, err := exec.Command("openssl", "pkcs12", "-export", "-inkey", keyPath, "-in", certPath, "-out", p12,
		"-passout", "pass:p12-secret").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkcs12: %v: %s", err, out)
	}
	legacy := filepath.Join(dir, "bea-legacy.p12")
	out, err = exec.Command("openssl", "pkcs12", "-export", "-inkey", keyPath, "-in", certPath, "-out", legacy,
		"-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1", "-passout", "pass:p12-secret").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkcs12 (3DES): %v: %s", err, out)
	}
	if b, _ := os.ReadFile(p12); !bytes.Contains(b, []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a}) {
		t.Fatal("openssl's default PKCS#12 file is not AES-256-CBC encrypted; the test would not show AES files are read")
	}
	uitest.WaitFor(t, wait, "key "+fmt.Sprint(s1)+"'s slots", func() bool {
		h := v.HealthOf(s1)
		return h != nil && h.Report != nil && h.Report.PIV != nil && v.Select(s1)
	})
	before := slotStatus(t, env, s1, 0x9d)
	row := v.Detail.Slots[2]
	form := func() *uikit.SecretForm { return v.Detail.Form }

	v.Detail.Params, v.Detail.Form = nil, nil
	test.Tap(row.Import)
	params(t, v, p12)
	fill(t, form, "wrong-secret")
	confirm(t, env, s1)
	result(t, v, "failed")
	if !strings.Contains(v.Detail.Result.Text, "could not be opened with that password") {
		t.Errorf("a wrong password reported as %q", v.Detail.Result.Text)
	}
	if st := slotStatus(t, env, s1, 0x9d); st.Empty != before.Empty || (st.Certificate == nil) != (before.Certificate == nil) {
		t.Fatalf("slot 9d changed after a wrong password")
	}

	v.Detail.Params, v.Detail.Form = nil, nil
	test.Tap(row.Import)
	params(t, v, p12)
	fill(t, form, "p12-secret")
	confirm(t, env, s1)
	pinIfAsked(t, v, "123456", "holds the imported key")
	st := slotStatus(t, env, s1, 0x9d)
	if pub, ok := st.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&priv.PublicKey) {
		t.Errorf("slot 9d holds %T %v, not the file's key", st.PublicKey, st.PublicKey)
	}
	if st.Certificate == nil || st.Certificate.Subject.CommonName != "bea key management" {
		t.Errorf("slot 9d holds certificate %v", st.Certificate)
	}
	uitest.WaitFor(t, wait, "slot 9d's row showing the certificate", func() bool { return strings.Contains(row.Cert.Text, "CN=bea key management") })

	// The 3DES file too.
	v.Detail.Params, v.Detail.Form = nil, nil
	test.Tap(row.Import)
	params(t, v, legacy)
	fill(t, form, "p12-secret")
	confirm(t, env, s1)
	pinIfAsked(t, v, "123456", "holds the imported key")
	if st := slotStatus(t, env, s1, 0x9d); st.Certificate == nil || st.Certificate.Subject.CommonName != "bea key management" {
		t.Errorf("after the 3DES file slot 9d holds certificate %v", st.Certificate)
	}
}
