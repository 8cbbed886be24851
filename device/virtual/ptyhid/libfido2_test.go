//go:build linux

package ptyhid_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	libfido2 "github.com/keys-pub/go-libfido2"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/ctap"
	"github.com/keydesk/keydesk/device/virtual/fidotest"
)

const (
	testPIN  = "246810"
	testPIN2 = "13579ab"
	wrongPIN = "000000"
)

func open(t *testing.T, k *fidotest.Key) *libfido2.Device {
	t.Helper()
	dev, err := libfido2.NewDevice(k.Path)
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

func isCode(err error, code int) bool {
	var e libfido2.Error
	return errors.As(err, &e) && e.Code == code
}

func TestLibfido2Info(t *testing.T) {
	k := fidotest.Start(t, 1000001)
	dev := open(t, k)
	info, err := dev.Info()
	if err != nil {
		t.Fatalf("libfido2 getInfo: %v", err)
	}
	if !bytes.Equal(info.AAGUID, ctap.AAGUID[:]) {
		t.Errorf("aaguid %x", info.AAGUID)
	}
	want := map[string]string{"rk": "true", "up": "true", "plat": "false", "clientPin": "false", "credMgmt": "true", "alwaysUv": "false"}
	for _, o := range info.Options {
		if w, ok := want[o.Name]; ok {
			if string(o.Value) != w {
				t.Errorf("option %s = %s, want %s", o.Name, o.Value, w)
			}
			delete(want, o.Name)
		}
	}
	if len(want) != 0 {
		t.Errorf("options missing: %v", want)
	}
	if !bytes.Equal(info.Protocols, []byte{2, 1}) {
		t.Errorf("pin protocols %v", info.Protocols)
	}
	hid, err := dev.CTAPHIDInfo()
	if err != nil {
		t.Fatal(err)
	}
	if hid.Protocol != 2 || hid.Major != 5 || hid.Minor != 7 || hid.Build != 2 || hid.Flags != 5 {
		t.Errorf("ctaphid info %+v", hid)
	}
}

func TestLibfido2PINLifecycle(t *testing.T) {
	k := fidotest.Start(t, 1000002)
	dev := open(t, k)
	if _, err := dev.RetryCount(); err != nil {
		t.Fatalf("retries before a pin is set: %v", err)
	}
	if err := dev.SetPIN("123", ""); !errors.Is(err, libfido2.ErrPinPolicyViolation) {
		t.Fatalf("3-digit pin: %v, want pin policy violation", err)
	}
	if err := dev.SetPIN(testPIN, ""); err != nil {
		t.Fatalf("set pin: %v", err)
	}
	if err := dev.SetPIN(testPIN, ""); !errors.Is(err, libfido2.ErrNotAllowed) {
		t.Fatalf("set pin twice: %v, want not allowed", err)
	}
	if err := dev.SetPIN(testPIN2, testPIN); err != nil {
		t.Fatalf("change pin: %v", err)
	}
	retries := func(want int) {
		t.Helper()
		n, err := dev.RetryCount()
		if err != nil || n != want {
			t.Fatalf("retries %d (%v), want %d", n, err, want)
		}
	}
	retries(8)
	if _, err := dev.CredentialsInfo(testPIN); !errors.Is(err, libfido2.ErrPinInvalid) {
		t.Fatalf("old pin: %v, want pin invalid", err)
	}
	retries(7)
	if _, err := dev.CredentialsInfo(testPIN2); err != nil {
		t.Fatalf("new pin: %v", err)
	}
	retries(8) // a correct pin refills the retries

	// Three wrong in a row block until a power cycle.
	for i, want := range []error{libfido2.ErrPinInvalid, libfido2.ErrPinInvalid, libfido2.ErrPinAuthBlocked, libfido2.ErrPinAuthBlocked} {
		if _, err := dev.CredentialsInfo(wrongPIN); !errors.Is(err, want) {
			t.Fatalf("wrong pin %d: %v, want %v", i+1, err, want)
		}
	}
	retries(5)
	if _, err := dev.CredentialsInfo(testPIN2); !errors.Is(err, libfido2.ErrPinAuthBlocked) {
		t.Fatalf("right pin while auth-blocked: %v", err)
	}
	k.Key.PowerCycle()
	if _, err := dev.CredentialsInfo(testPIN2); err != nil {
		t.Fatalf("right pin after power cycle: %v", err)
	}
	retries(8)

	// Down to zero: blocked until reset. Remove and insert count as a power cycle.
	for round := 0; round < 3; round++ {
		for i := 0; i < 3 && (round < 2 || i < 2); i++ {
			_, err := dev.CredentialsInfo(wrongPIN)
			if err == nil {
				t.Fatal("wrong pin accepted")
			}
		}
		k.Key.Remove()
		if _, err := os.Stat(k.Path); !os.IsNotExist(err) {
			t.Fatalf("device path after remove: %v", err)
		}
		if _, err := dev.RetryCount(); err == nil {
			t.Fatal("removed key answered")
		}
		k.Key.Insert()
	}
	retries(0)
	if _, err := dev.CredentialsInfo(testPIN2); !isCode(err, 0x32) {
		t.Fatalf("right pin when blocked: %v, want CTAP2_ERR_PIN_BLOCKED", err)
	}
	if err := dev.Reset(); err != nil {
		t.Fatalf("reset within the window: %v", err)
	}
	if err := dev.SetPIN(testPIN, ""); err != nil {
		t.Fatalf("set pin after reset: %v", err)
	}
	retries(8)
}

func TestLibfido2ResetWindow(t *testing.T) {
	k := fidotest.Start(t, 1000003)
	clock := fidotest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	k.Key.SetClock(clock.Now)
	dev := open(t, k)
	if err := dev.SetPIN(testPIN, ""); err != nil {
		t.Fatal(err)
	}
	clock.Advance(11 * time.Second)
	if err := dev.Reset(); !errors.Is(err, libfido2.ErrNotAllowed) {
		t.Fatalf("reset 11 s after power-up: %v, want not allowed", err)
	}
	k.Key.PowerCycle()
	clock.Advance(9 * time.Second)
	k.Key.Presence.SetMode(virtual.TouchNever)
	k.Key.Presence.SetTimeout(50 * time.Millisecond)
	if err := dev.Reset(); !isCode(err, 0x2f) {
		t.Fatalf("reset without a touch: %v, want CTAP2_ERR_USER_ACTION_TIMEOUT", err)
	}
	k.Key.Presence.SetMode(virtual.TouchAuto)
	if err := dev.Reset(); err != nil {
		t.Fatalf("reset 9 s after power-up: %v", err)
	}
	if _, err := dev.CredentialsInfo(testPIN); !errors.Is(err, libfido2.ErrPinNotSet) {
		t.Fatalf("pin after reset: %v, want pin not set", err)
	}
}

func makeCred(t *testing.T, dev *libfido2.Device, typ libfido2.CredentialType, rk bool, user string, pin string) (*libfido2.Attestation, *fidotest.AuthData, []byte) {
	t.Helper()
	cdh := sha256.Sum256([]byte("make credential " + user))
	opts := &libfido2.MakeCredentialOpts{}
	if rk {
		opts.RK = libfido2.True
	}
	att, err := dev.MakeCredential(cdh[:], libfido2.RelyingParty{ID: "keydesk.example", Name: "keydesk"},
		libfido2.User{ID: []byte("uid-" + user), Name: user, DisplayName: "User " + user}, typ, pin, opts)
	if err != nil {
		t.Fatalf("make credential %v: %v", typ, err)
	}
	var authData []byte
	if err := cbor.Unmarshal(att.AuthData, &authData); err != nil {
		t.Fatalf("authdata: %v", err)
	}
	if att.Format != "packed" {
		t.Fatalf("format %q", att.Format)
	}
	ad, err := fidotest.VerifyPackedAttestation(authData, cdh[:], att.Sig, att.Cert)
	if err != nil {
		t.Fatalf("packed attestation: %v", err)
	}
	if !bytes.Equal(ad.CredID, att.CredentialID) {
		t.Fatal("credential id differs from authenticator data")
	}
	rpHash := sha256.Sum256([]byte("keydesk.example"))
	if !bytes.Equal(ad.RPIDHash, rpHash[:]) || ad.Flags&0x01 == 0 {
		t.Fatalf("rp id hash or UP flag wrong: %x %02x", ad.RPIDHash, ad.Flags)
	}
	return att, ad, cdh[:]
}

func assertWith(t *testing.T, dev *libfido2.Device, ad *fidotest.AuthData, ids [][]byte, pin string) (*libfido2.Assertion, *fidotest.AuthData) {
	t.Helper()
	cdh := sha256.Sum256([]byte("assertion"))
	as, err := dev.Assertion("keydesk.example", cdh[:], ids, pin, nil)
	if err != nil {
		t.Fatalf("assertion: %v", err)
	}
	var authData []byte
	if err := cbor.Unmarshal(as.AuthDataCBOR, &authData); err != nil {
		t.Fatal(err)
	}
	if err := fidotest.VerifySignature(ad.PublicKey, authData, cdh[:], as.Sig); err != nil {
		t.Fatalf("assertion signature: %v", err)
	}
	aad, err := fidotest.ParseAuthData(authData)
	if err != nil {
		t.Fatal(err)
	}
	return as, aad
}

func TestLibfido2MakeCredentialAndAssert(t *testing.T) {
	k := fidotest.Start(t, 1000004)
	dev := open(t, k)
	for _, typ := range []libfido2.CredentialType{libfido2.ES256, libfido2.EDDSA} {
		att, ad, _ := makeCred(t, dev, typ, false, "alice", "")
		_, a1 := assertWith(t, dev, ad, [][]byte{att.CredentialID}, "")
		_, a2 := assertWith(t, dev, ad, [][]byte{att.CredentialID}, "")
		if a2.SignCount <= a1.SignCount || a1.SignCount <= ad.SignCount {
			t.Errorf("%v sign counter %d, %d, %d not increasing", typ, ad.SignCount, a1.SignCount, a2.SignCount)
		}
		if a1.Flags&0x04 != 0 {
			t.Errorf("UV set without a PIN")
		}
	}
	// With a PIN: UV flag set, and a wrong credential id is refused.
	if err := dev.SetPIN(testPIN, ""); err != nil {
		t.Fatal(err)
	}
	att, ad, _ := makeCred(t, dev, libfido2.ES256, false, "bob", testPIN)
	if ad.Flags&0x04 == 0 {
		t.Error("UV flag missing on a PIN-verified credential")
	}
	if _, a := assertWith(t, dev, ad, [][]byte{att.CredentialID}, testPIN); a.Flags&0x04 == 0 {
		t.Error("UV flag missing on a PIN-verified assertion")
	}
	bad := append([]byte(nil), att.CredentialID...)
	bad[len(bad)-1] ^= 1
	cdh := sha256.Sum256([]byte("x"))
	if _, err := dev.Assertion("keydesk.example", cdh[:], [][]byte{bad}, "", nil); !errors.Is(err, libfido2.ErrNoCredentials) {
		t.Fatalf("assertion with a tampered id: %v, want no credentials", err)
	}
	if _, err := dev.Assertion("other.example", cdh[:], [][]byte{att.CredentialID}, "", nil); !errors.Is(err, libfido2.ErrNoCredentials) {
		t.Fatalf("assertion for another rp: %v, want no credentials", err)
	}
	// excludeList is not reachable through go-libfido2; discoverable creation without PIN is refused.
	if _, err := dev.MakeCredential(cdh[:], libfido2.RelyingParty{ID: "keydesk.example"}, libfido2.User{ID: []byte("u"), Name: "u"}, libfido2.ES256, "", &libfido2.MakeCredentialOpts{RK: libfido2.True}); !errors.Is(err, libfido2.ErrPinRequired) {
		t.Fatalf("resident key without pin: %v, want pin required", err)
	}
}

func TestLibfido2CredentialManagement(t *testing.T) {
	k := fidotest.Start(t, 1000005)
	dev := open(t, k)
	if err := dev.SetPIN(testPIN, ""); err != nil {
		t.Fatal(err)
	}
	var ids [][]byte
	var ads []*fidotest.AuthData
	for _, u := range []string{"carol", "dave"} {
		att, ad, _ := makeCred(t, dev, libfido2.ES256, true, u, testPIN)
		ids = append(ids, att.CredentialID)
		ads = append(ads, ad)
	}
	info, err := dev.CredentialsInfo(testPIN)
	if err != nil || info.RKExisting != 2 || info.RKRemaining != 98 {
		t.Fatalf("credentials info %+v %v", info, err)
	}
	rps, err := dev.RelyingParties(testPIN)
	if err != nil || len(rps) != 1 || rps[0].ID != "keydesk.example" || rps[0].Name != "keydesk" {
		t.Fatalf("relying parties %+v %v", rps, err)
	}
	creds, err := dev.Credentials("keydesk.example", testPIN)
	if err != nil || len(creds) != 2 {
		t.Fatalf("credentials %+v %v", creds, err)
	}
	for i, c := range creds {
		if !bytes.Equal(c.ID, ids[i]) || c.User.Name != []string{"carol", "dave"}[i] {
			t.Errorf("credential %d: %x %+v", i, c.ID, c.User)
		}
	}
	// A discoverable assertion (no allow list) finds both, newest first.
	as, _ := assertWith(t, dev, ads[1], nil, testPIN)
	if !bytes.Equal(as.CredentialID, ids[1]) || string(as.User.ID) != "uid-dave" { // go-libfido2 fills only the user id
		t.Fatalf("discoverable assertion picked %x %+v", as.CredentialID, as.User)
	}
	if err := dev.DeleteCredential(ids[1], testPIN); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := dev.DeleteCredential(ids[1], testPIN); !errors.Is(err, libfido2.ErrNoCredentials) {
		t.Fatalf("delete twice: %v", err)
	}
	creds, err = dev.Credentials("keydesk.example", testPIN)
	if err != nil || len(creds) != 1 || !bytes.Equal(creds[0].ID, ids[0]) {
		t.Fatalf("after delete %+v %v", creds, err)
	}
	as, _ = assertWith(t, dev, ads[0], nil, testPIN)
	if !bytes.Equal(as.CredentialID, ids[0]) {
		t.Fatalf("discoverable assertion after delete picked %x", as.CredentialID)
	}
	if _, err := dev.RelyingParties(wrongPIN); !errors.Is(err, libfido2.ErrPinInvalid) {
		t.Fatalf("enumerate with a wrong pin: %v", err)
	}
}

func TestLibfido2CredProtect(t *testing.T) {
	k := fidotest.Start(t, 1000006)
	dev := open(t, k)
	if err := dev.SetPIN(testPIN, ""); err != nil {
		t.Fatal(err)
	}
	cdh := sha256.Sum256([]byte("cp"))
	for _, c := range []struct {
		level         libfido2.CredProtect
		withIDNoPIN   bool // assertion with the id and no PIN works
		discoverNoPIN bool
	}{
		{libfido2.CredProtectUVOptional, true, true},
		{libfido2.CredProtectUVOptionalWithID, true, false},
		{libfido2.CredProtectUVRequired, false, false},
	} {
		rp := "cp" + string(c.level) + ".example"
		att, err := dev.MakeCredential(cdh[:], libfido2.RelyingParty{ID: rp}, libfido2.User{ID: []byte("u"), Name: "u"}, libfido2.ES256, testPIN,
			&libfido2.MakeCredentialOpts{RK: libfido2.True, CredProtect: c.level, Extensions: []libfido2.Extension{libfido2.CredProtectExtension}})
		if err != nil {
			t.Fatalf("%s: %v", c.level, err)
		}
		_, err = dev.Assertion(rp, cdh[:], [][]byte{att.CredentialID}, "", nil)
		if (err == nil) != c.withIDNoPIN {
			t.Errorf("%s: assertion with id, no pin: %v", c.level, err)
		}
		_, err = dev.Assertion(rp, cdh[:], nil, "", nil)
		if (err == nil) != c.discoverNoPIN {
			t.Errorf("%s: discoverable assertion, no pin: %v", c.level, err)
		}
		if _, err := dev.Assertion(rp, cdh[:], nil, testPIN, nil); err != nil {
			t.Errorf("%s: discoverable assertion with pin: %v", c.level, err)
		}
	}
}

func TestLibfido2TouchTimeoutAndCancel(t *testing.T) {
	k := fidotest.Start(t, 1000007)
	dev := open(t, k)
	cdh := sha256.Sum256([]byte("touch"))
	rp, user := libfido2.RelyingParty{ID: "keydesk.example"}, libfido2.User{ID: []byte("u"), Name: "u"}

	k.Key.Presence.SetMode(virtual.TouchNever)
	k.Key.Presence.SetTimeout(300 * time.Millisecond)
	if _, err := dev.MakeCredential(cdh[:], rp, user, libfido2.ES256, "", nil); !isCode(err, 0x2f) {
		t.Fatalf("no touch: %v, want CTAP2_ERR_USER_ACTION_TIMEOUT", err)
	}

	k.Key.Presence.SetMode(virtual.TouchManual)
	k.Key.Presence.SetTimeout(30 * time.Second)
	waiting := k.Key.Presence.Waiting()
	done := make(chan error, 1)
	go func() {
		_, err := dev.MakeCredential(cdh[:], rp, user, libfido2.ES256, "", nil)
		done <- err
	}()
	<-waiting
	if err := dev.Cancel(); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if err := <-done; !errors.Is(err, libfido2.ErrKeepaliveCancel) {
		t.Fatalf("cancelled: %v, want keepalive cancel", err)
	}

	waiting = k.Key.Presence.Waiting()
	go func() {
		_, err := dev.MakeCredential(cdh[:], rp, user, libfido2.EDDSA, "", nil)
		done <- err
	}()
	<-waiting
	if !k.Key.Presence.Touch() {
		t.Fatal("touch found nobody waiting")
	}
	if err := <-done; err != nil {
		t.Fatalf("touched: %v", err)
	}
}

// A client that leaves halfway (a request half sent, a reply never read)
// must not disturb the next one.
func TestLibfido2AfterAbandonedClient(t *testing.T) {
	k := fidotest.Start(t, 1000008)
	report := func(cid uint32, cmd byte, bcnt int, data []byte) []byte {
		p := make([]byte, 65)
		p[1], p[2], p[3], p[4] = byte(cid>>24), byte(cid>>16), byte(cid>>8), byte(cid)
		p[5] = 0x80 | cmd
		p[6], p[7] = byte(bcnt>>8), byte(bcnt)
		copy(p[8:], data)
		return p
	}
	for i, reqs := range [][][]byte{
		// INIT whose reply is never read.
		{report(0xffffffff, 0x06, 8, []byte{1, 2, 3, 4, 5, 6, 7, 8})},
		// INIT, then half a PING on the new channel (channel 1 of a fresh key).
		{report(0xffffffff, 0x06, 8, []byte{1, 2, 3, 4, 5, 6, 7, 8}), report(1, 0x01, 500, nil)},
		// Half a report.
		{report(0xffffffff, 0x06, 8, nil)[:30]},
	} {
		departed := k.Dev.Departed()
		f, err := os.OpenFile(k.Path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reqs {
			if _, err := f.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
		<-departed
		departed = k.Dev.Departed()
		if _, err := open(t, k).Info(); err != nil {
			t.Fatalf("getInfo after abandoned client %d: %v", i, err)
		}
		<-departed
	}
}

func TestLibfido2HMACSecret(t *testing.T) {
	k := fidotest.Start(t, 1000009)
	dev := open(t, k)
	cdh := sha256.Sum256([]byte("hmac"))
	rp, user := libfido2.RelyingParty{ID: "keydesk.example"}, libfido2.User{ID: []byte("u"), Name: "u"}
	att, err := dev.MakeCredential(cdh[:], rp, user, libfido2.ES256, "", &libfido2.MakeCredentialOpts{Extensions: []libfido2.Extension{libfido2.HMACSecretExtension}})
	if err != nil {
		t.Fatal(err)
	}
	var authData []byte
	cbor.Unmarshal(att.AuthData, &authData)
	ad, err := fidotest.ParseAuthData(authData)
	if err != nil || ad.Ext["hmac-secret"] != true {
		t.Fatalf("hmac-secret not acknowledged: %v %v", ad.Ext, err)
	}
	get := func(salt []byte) []byte {
		t.Helper()
		as, err := dev.Assertion("keydesk.example", cdh[:], [][]byte{att.CredentialID}, "", &libfido2.AssertionOpts{Extensions: []libfido2.Extension{libfido2.HMACSecretExtension}, HMACSalt: salt})
		if err != nil {
			t.Fatalf("assertion with hmac-secret: %v", err)
		}
		if len(as.HMACSecret) != 32 {
			t.Fatalf("hmac secret of %d bytes", len(as.HMACSecret))
		}
		return as.HMACSecret
	}
	s1, s2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	a, b, c := get(s1), get(s1), get(s2)
	if !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Fatalf("hmac-secret outputs: same salt equal %v, other salt different %v", bytes.Equal(a, b), !bytes.Equal(a, c))
	}
}
