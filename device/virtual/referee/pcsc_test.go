package referee

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/pcscd"
	"github.com/keydesk/keydesk/device/virtual/pivapplet"
	"github.com/keydesk/keydesk/device/virtual/sim"
)

var daemon *pcscd.Daemon

const readers = pcscd.MaxReaders

func TestMain(m *testing.M) { pcscd.RunTests(m, readers, &daemon) }

// rig is one virtual key on one reader of the private pcscd.
type rig struct {
	y      *sim.YubiKey
	reader string
	index  int
}

func plug(t *testing.T, index int, fw virtual.Version) *rig {
	t.Helper()
	y, err := sim.New(sim.Options{Serial: uint32(sim.FirstSerial + index), Firmware: fw})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	slot, err := y.Run(ctx, daemon.Addr(index), "")
	if err != nil {
		t.Fatal(err)
	}
	// Wait until pcscd has powered this card up (a card from an earlier test
	// may have held the reader until pcscd noticed it leave).
	select {
	case <-slot.PoweredOn():
	case <-time.After(10 * time.Second):
		t.Fatalf("pcscd did not power up the card in %q within 10s", daemon.Reader(index))
	}
	r := &rig{y: y, reader: daemon.Reader(index), index: index}
	t.Cleanup(func() { cancel(); <-slot.Done() })
	r.waitPresent(t)
	return r
}

// waitPresent blocks until pcscd reports a card in the rig's reader.
func (r *rig) waitPresent(t *testing.T) {
	t.Helper()
	sc, err := scard.EstablishContext()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Release()
	rs := []scard.ReaderState{{Reader: r.reader, CurrentState: scard.StateUnaware}}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := sc.GetStatusChange(rs, 500*time.Millisecond); err != nil && err != scard.ErrTimeout {
			t.Fatal(err)
		}
		if rs[0].EventState&scard.StatePresent != 0 {
			return
		}
		rs[0].CurrentState = rs[0].EventState
	}
	t.Fatalf("no card in %q after 10s", r.reader)
}

// tool runs a referee and fails the test with its command line, output and
// the APDU trace when it does not succeed.
func (r *rig) tool(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	out, err := r.try(stdin, name, args...)
	if err != nil {
		t.Fatalf("%s failed: %v\ncommand: %s %s\noutput:\n%s\nAPDU exchange (newest last):\n%s",
			name, err, name, strings.Join(args, " "), out, r.y.Card.TraceString())
	}
	return out
}

func (r *rig) try(stdin string, name string, args ...string) (string, error) {
	if _, err := exec.LookPath(name); err != nil {
		return "", fmt.Errorf("%s is not installed (packaging/install-deps.sh installs it): %w", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), daemon.Env())
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func want(t *testing.T, tool, out string, substrings ...string) {
	t.Helper()
	for _, s := range substrings {
		if !strings.Contains(out, s) {
			t.Fatalf("%s output lacks %q:\n%s", tool, s, out)
		}
	}
}

// The default management key, PIN and PUK of a factory-fresh virtual key.
// Referee tools accept them only as arguments; they are public defaults of a
// throwaway key, never real secrets.
var (
	defaultMK  = hex.EncodeToString(pivapplet.DefaultManagementKey)
	defaultPIN = string(pivapplet.DefaultPIN)
)

func TestYkmanInfo(t *testing.T) {
	r := plug(t, 0, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	id := r.y.Key.Identity()
	out := r.tool(t, "", "ykman", "-r", r.reader, "info")
	want(t, "ykman info", out,
		"Device type: "+id.Name(),
		fmt.Sprintf("Serial number: %d", id.Serial),
		"Firmware version: "+id.Firmware.String(),
		"Form factor: Keychain (USB-C)")

	// Disable OATH over USB: ykman writes the configuration, the key
	// restarts, and both ykman and the key's own state agree afterwards.
	r.config(t, "--disable", "OATH")
	if r.y.Key.Identity().EnabledUSB.Has(virtual.CapOATH) {
		t.Fatal("OATH still enabled in the key's state after ykman disabled it")
	}
	out = r.tool(t, "", "ykman", "-r", r.reader, "info")
	if !strings.Contains(out, "OATH        \tDisabled") {
		t.Fatalf("ykman info after disabling OATH:\n%s", out)
	}

	// A disabled PIV application cannot be selected.
	r.config(t, "--disable", "PIV")
	if out, err := r.try("", "ykman", "-r", r.reader, "piv", "info"); err == nil {
		t.Fatalf("ykman piv info succeeded with PIV disabled:\n%s", out)
	}
	r.config(t, "--enable", "PIV", "--enable", "OATH")
	r.tool(t, "", "ykman", "-r", r.reader, "piv", "info")

	// Disabling OATH over NFC changes only the NFC set, and ykman info
	// reports it in the NFC column.
	r.tool(t, "", "ykman", "-r", r.reader, "config", "nfc", "--disable", "OATH", "--force")
	id = r.y.Key.Identity()
	if id.EnabledNFC.Has(virtual.CapOATH) || !id.EnabledUSB.Has(virtual.CapOATH) {
		t.Fatalf("after ykman config nfc --disable OATH: usb %v nfc %v", id.EnabledUSB, id.EnabledNFC)
	}
	out = r.tool(t, "", "ykman", "-r", r.reader, "info")
	if !regexp.MustCompile(`(?m)^OATH\s+Enabled\s+Disabled\s*$`).MatchString(out) {
		t.Fatalf("ykman info after disabling OATH over NFC:\n%s", out)
	}
}

// config runs `ykman config usb ... --force`. ykman asks the key to restart
// only when the set of USB interfaces changes, which switching OATH or PIV
// (with OpenPGP still on CCID) does not; the test fails if it did.
func (r *rig) config(t *testing.T, args ...string) {
	t.Helper()
	restarted := false
	cancel := r.y.Key.Subscribe(func(e virtual.Event) { restarted = restarted || e == virtual.PowerCycled })
	r.tool(t, "", "ykman", append(append([]string{"-r", r.reader, "config", "usb"}, args...), "--force")...)
	cancel()
	if restarted {
		t.Fatal("the key restarted although its USB interfaces did not change")
	}
}

func TestYkmanPIV(t *testing.T) {
	r := plug(t, 1, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	dir := t.TempDir()
	pub := filepath.Join(dir, "pub.pem")

	out := r.tool(t, "", "ykman", "-r", r.reader, "piv", "info")
	want(t, "ykman piv info", out, "PIV version: 5.7.2", "PIN tries remaining: 3/3", "Management key algorithm: AES192", "Using default Management key")

	r.tool(t, "", "ykman", "-r", r.reader, "piv", "keys", "generate", "-a", "ECCP256", "-m", defaultMK, "9a", pub)
	r.tool(t, "", "ykman", "-r", r.reader, "piv", "certificates", "generate", "-s", "CN=keydesk referee", "-m", defaultMK, "-P", defaultPIN, "9a", pub)
	out = r.tool(t, "", "ykman", "-r", r.reader, "piv", "info")
	want(t, "ykman piv info", out, "Slot 9a", "CN=keydesk referee")

	// PIN-protected management key, the way ykman stores it.
	r.tool(t, "", "ykman", "-r", r.reader, "piv", "access", "change-management-key", "--protect", "-m", defaultMK, "-P", defaultPIN, "--force")
	out = r.tool(t, "", "ykman", "-r", r.reader, "piv", "info")
	want(t, "ykman piv info", out, "Management key is stored on the YubiKey, protected by PIN")
	if strings.Contains(out, "Using default Management key") {
		t.Fatalf("management key still default after --protect:\n%s", out)
	}
	// Now only the PIN is needed: ykman fetches the key from the PRINTED object.
	r.tool(t, "", "ykman", "-r", r.reader, "piv", "certificates", "generate", "-s", "CN=second", "-P", defaultPIN, "9a", pub)
	out = r.tool(t, "", "ykman", "-r", r.reader, "piv", "info")
	want(t, "ykman piv info", out, "CN=second")
}

func TestYubicoPIVTool(t *testing.T) {
	// yubico-piv-tool 2.2.0 predates AES management keys, so it is refereed
	// on firmware 5.4, whose default management key is 3DES (as on hardware).
	r := plug(t, 0, virtual.Version{Major: 5, Minor: 4, Patch: 3})
	out := r.tool(t, "", "yubico-piv-tool", "-r", r.reader, "-a", "status")
	want(t, "yubico-piv-tool -a status", out, "Version:\t5.4.3", fmt.Sprintf("Serial Number:\t%d", r.y.Serial()), "PIN tries left:\t3")

	out = r.tool(t, "", "yubico-piv-tool", "-r", r.reader, "-a", "verify-pin", "-P", defaultPIN)
	want(t, "yubico-piv-tool -a verify-pin", out, "Successfully verified PIN")
	if out, err := r.try("", "yubico-piv-tool", "-r", r.reader, "-a", "verify-pin", "-P", "99999999"); err == nil {
		t.Fatalf("wrong PIN accepted:\n%s", out)
	}

	out = r.tool(t, "", "yubico-piv-tool", "-r", r.reader, "-a", "generate", "-s", "9a", "-A", "ECCP256", "--key="+defaultMK)
	pub, err := x509.ParsePKIXPublicKey(pemBlock(t, out))
	if err != nil {
		t.Fatal(err)
	}
	out = r.tool(t, "", "yubico-piv-tool", "-r", r.reader, "-a", "attest", "-s", "9a")
	slotCert, err := x509.ParseCertificate(pemBlock(t, out))
	if err != nil {
		t.Fatal(err)
	}
	if !publicKeysEqual(slotCert.PublicKey, pub) {
		t.Fatalf("attestation certifies a different key than the one generated: %#v vs %#v", slotCert.PublicKey, pub)
	}
	out = r.tool(t, "", "yubico-piv-tool", "-r", r.reader, "-a", "read-certificate", "-s", "f9")
	attCert, err := x509.ParseCertificate(pemBlock(t, out))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(pivapplet.VirtualRoot())
	inter := x509.NewCertPool()
	inter.AddCert(attCert)
	if _, err := slotCert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("attestation does not chain to the virtual root: %v", err)
	}
}

func pemBlock(t *testing.T, out string) []byte {
	t.Helper()
	i := strings.Index(out, "-----BEGIN")
	if i < 0 {
		t.Fatalf("no PEM in output:\n%s", out)
	}
	b, _ := pem.Decode([]byte(out[i:]))
	if b == nil {
		t.Fatalf("bad PEM in output:\n%s", out)
	}
	return b.Bytes
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(x crypto.PublicKey) bool }
	ea, ok := a.(eq)
	return ok && ea.Equal(b)
}

func TestOpenSCSignatureVerifiedByOpenSSL(t *testing.T) {
	const module = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
	if _, err := os.Stat(module); err != nil {
		t.Fatalf("OpenSC PKCS#11 module missing (install opensc): %v", err)
	}
	r := plug(t, 1, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	dir := t.TempDir()
	pub, certPEM := filepath.Join(dir, "pub.pem"), filepath.Join(dir, "cert.pem")
	r.tool(t, "", "ykman", "-r", r.reader, "piv", "keys", "generate", "-a", "ECCP256", "-m", defaultMK, "9a", pub)
	r.tool(t, "", "ykman", "-r", r.reader, "piv", "certificates", "generate", "-s", "CN=opensc referee", "-m", defaultMK, "-P", defaultPIN, "9a", pub)
	r.tool(t, "", "ykman", "-r", r.reader, "piv", "certificates", "export", "9a", certPEM)

	out := r.tool(t, "", "pkcs11-tool", "--module", module, "--list-slots")
	want(t, "pkcs11-tool --list-slots", out, r.reader)

	data := filepath.Join(dir, "data")
	os.WriteFile(data, []byte("keydesk signs this"), 0o600)
	hash := filepath.Join(dir, "hash")
	r.tool(t, "", "openssl", "dgst", "-sha256", "-binary", "-out", hash, data)
	sig := filepath.Join(dir, "sig")
	// PIV "Authentication" key 9a is object id 01 in OpenSC's PIV driver.
	r.tool(t, "", "pkcs11-tool", "--module", module, "--slot-description", r.reader, "--login", "--pin", defaultPIN,
		"--sign", "--mechanism", "ECDSA", "--id", "01", "--signature-format", "openssl", "--input-file", hash, "--output-file", sig)
	certPub := filepath.Join(dir, "certpub.pem")
	r.tool(t, "", "openssl", "x509", "-in", certPEM, "-pubkey", "-noout", "-out", certPub)
	out = r.tool(t, "", "openssl", "pkeyutl", "-verify", "-pubin", "-inkey", certPub, "-in", hash, "-sigfile", sig)
	want(t, "openssl pkeyutl -verify", out, "Signature Verified Successfully")

	// Different data must not verify.
	other := filepath.Join(dir, "other")
	os.WriteFile(other, bytes.Repeat([]byte{1}, 32), 0o600)
	if out, err := r.try("", "openssl", "pkeyutl", "-verify", "-pubin", "-inkey", certPub, "-in", other, "-sigfile", sig); err == nil {
		t.Fatalf("openssl verified a signature over different data:\n%s", out)
	}
}

// TestYkmanObjectsAndFactoryKey, at firmware 5.4.3: ykman writes and reads
// back data objects across the range a YubiKey accepts (5F0000–5FFFFF, "the
// Yubico writable PIV objects" in ykman's own help), and stops calling the
// management key default once it is AES-192 with the factory bytes, since
// the factory key below 5.7 is 3DES.
func TestYkmanObjectsAndFactoryKey(t *testing.T) {
	r := plug(t, 0, virtual.Version{Major: 5, Minor: 4, Patch: 3})
	for _, tag := range []string{"5f0000", "5f0001", "5fc102", "5fc124", "5fff16", "5fffff"} {
		data := "keydesk referee object " + tag
		r.tool(t, data, "ykman", "-r", r.reader, "piv", "objects", "import", "-m", defaultMK, tag, "-")
		if out := r.tool(t, "", "ykman", "-r", r.reader, "piv", "objects", "export", tag, "-"); out != data {
			t.Fatalf("object %s read back as %q, want %q", tag, out, data)
		}
	}
	if out, err := r.try("x", "ykman", "-r", r.reader, "piv", "objects", "import", "-m", defaultMK, "600000", "-"); err == nil {
		t.Fatalf("object 600000 written:\n%s", out)
	}

	out := r.tool(t, "", "ykman", "-r", r.reader, "piv", "info")
	want(t, "ykman piv info", out, "PIV version: 5.4.3", "Management key algorithm: TDES", "Using default Management key")
	r.tool(t, "", "ykman", "-r", r.reader, "piv", "access", "change-management-key", "-a", "AES192", "-m", defaultMK, "-n", defaultMK, "--force")
	out = r.tool(t, "", "ykman", "-r", r.reader, "piv", "info")
	want(t, "ykman piv info", out, "Management key algorithm: AES192")
	if strings.Contains(out, "default Management key") {
		t.Fatalf("an AES-192 key with the factory bytes reported as default at 5.4.3:\n%s", out)
	}
}
