package pivapplet

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"testing"
	"time"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/iso7816"
	"github.com/keydesk/keydesk/device/virtual/tlv"
)

type harness struct {
	t    *testing.T
	key  *virtual.Key
	app  *Applet
	card *iso7816.Card
}

func newHarness(t testing.TB, fw virtual.Version) *harness {
	id := virtual.DefaultIdentity(12345678)
	id.Firmware = fw
	key := virtual.NewKey(id)
	app, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{key: key, app: app, card: iso7816.NewCard(nil, app)}
	h.send(append([]byte{0, 0xA4, 4, 0, byte(len(AID))}, AID...))
	return h
}

func (h *harness) send(apdu []byte) ([]byte, uint16) {
	r := h.card.Transmit(context.Background(), apdu)
	return r[:len(r)-2], uint16(r[len(r)-2])<<8 | uint16(r[len(r)-1])
}

func apdu(ins, p1, p2 byte, data []byte) []byte {
	return append([]byte{0, ins, p1, p2, byte(len(data))}, data...)
}

func pad8(s string) []byte {
	b := bytes.Repeat([]byte{0xFF}, 8)
	copy(b, s)
	return b
}

func (h *harness) mustSW(t *testing.T, want uint16, a []byte) []byte {
	t.Helper()
	data, sw := h.send(a)
	if sw != want {
		t.Fatalf("% x: SW %04X, want %04X", a[:4], sw, want)
	}
	return data
}

// authMgm performs the mutual authentication with key.
func (h *harness) authMgm(t *testing.T, alg byte, key []byte) uint16 {
	t.Helper()
	data := h.mustSW(t, iso7816.SWOK, apdu(insAuthenticate, alg, RefManagement, []byte{0x7C, 0x02, 0x80, 0x00}))
	tmpl, _ := tlv.Find(data, 0x7C)
	enc, _ := tlv.Find(tmpl, 0x80)
	var block cipher.Block
	var err error
	if alg == Alg3DES {
		block, err = des.NewTripleDESCipher(key)
	} else {
		block, err = aes.NewCipher(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	witness := make([]byte, len(enc))
	block.Decrypt(witness, enc)
	chal := bytes.Repeat([]byte{0x42}, len(enc))
	_, sw := h.send(apdu(insAuthenticate, alg, RefManagement, tlv.Encode(0x7C, append(tlv.Encode(0x80, witness), tlv.Encode(0x81, chal)...))))
	return sw
}

func TestPINRetriesBlockAndUnblock(t *testing.T) {
	h := newHarness(t, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	h.mustSW(t, 0x63C3, apdu(insVerify, 0, RefPIN, nil))
	h.mustSW(t, 0x63C2, apdu(insVerify, 0, RefPIN, pad8("000000")))
	h.mustSW(t, iso7816.SWOK, apdu(insVerify, 0, RefPIN, pad8("123456")))
	h.mustSW(t, iso7816.SWOK, apdu(insVerify, 0, RefPIN, nil)) // verified
	h.mustSW(t, iso7816.SWOK, apdu(insVerify, 0xFF, RefPIN, nil))
	h.mustSW(t, 0x63C3, apdu(insVerify, 0, RefPIN, nil)) // forgotten, and the good PIN refilled the counter
	h.mustSW(t, 0x63C2, apdu(insVerify, 0, RefPIN, pad8("000000")))
	h.mustSW(t, 0x63C1, apdu(insVerify, 0, RefPIN, pad8("000000")))
	h.mustSW(t, iso7816.SWAuthBlocked, apdu(insVerify, 0, RefPIN, pad8("000000")))
	h.mustSW(t, iso7816.SWAuthBlocked, apdu(insVerify, 0, RefPIN, pad8("123456")))
	// Reset needs both blocked.
	h.mustSW(t, iso7816.SWConditionsNotSatisfied, apdu(insReset, 0, 0, nil))
	// A wrong PUK counts down; a short new PIN is refused without spending a try.
	h.mustSW(t, 0x63C2, apdu(insResetRetry, 0, RefPIN, append(pad8("00000000"), pad8("654321")...)))
	h.mustSW(t, iso7816.SWWrongData, apdu(insResetRetry, 0, RefPIN, append(pad8("12345678"), pad8("123")...)))
	h.mustSW(t, iso7816.SWOK, apdu(insResetRetry, 0, RefPIN, append(pad8("12345678"), pad8("654321")...)))
	h.mustSW(t, iso7816.SWOK, apdu(insVerify, 0, RefPIN, pad8("654321")))
	meta := h.mustSW(t, iso7816.SWOK, apdu(insGetMetadata, 0, RefPUK, nil))
	if v, _ := tlv.Find(meta, 0x06); !bytes.Equal(v, []byte{3, 3}) {
		t.Fatalf("PUK retries after a good PUK: % x", v)
	}
	if v, _ := tlv.Find(meta, 0x05); !bytes.Equal(v, []byte{1}) {
		t.Fatalf("PUK default flag: % x", v)
	}
}

func TestResetOnlyWhenBothBlocked(t *testing.T) {
	h := newHarness(t, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	if sw := h.authMgm(t, AlgAES192, DefaultManagementKey); sw != iso7816.SWOK {
		t.Fatalf("mgm auth: %04X", sw)
	}
	h.mustSW(t, iso7816.SWOK, apdu(insGenerate, 0, SlotAuth, tlv.Encode(0xAC, tlv.Encode(0x80, []byte{AlgECCP256}))))
	for i := 0; i < 3; i++ {
		h.send(apdu(insVerify, 0, RefPIN, pad8("999999")))
		h.send(apdu(insChangeRef, 0, RefPUK, append(pad8("99999999"), pad8("99999999")...)))
	}
	h.mustSW(t, iso7816.SWOK, apdu(insReset, 0, 0, nil))
	h.mustSW(t, iso7816.SWFileNotFound, apdu(insGetMetadata, 0, SlotAuth, nil))
	h.mustSW(t, iso7816.SWOK, apdu(insGetMetadata, 0, SlotAttest, nil))
	h.mustSW(t, iso7816.SWOK, apdu(insVerify, 0, RefPIN, pad8("123456")))
}

func TestManagementKeyAndAccessControl(t *testing.T) {
	h := newHarness(t, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	gen := apdu(insGenerate, 0, SlotSign, tlv.Encode(0xAC, tlv.Encode(0x80, []byte{AlgECCP256})))
	h.mustSW(t, iso7816.SWSecurityStatus, gen)
	if sw := h.authMgm(t, AlgAES192, bytes.Repeat([]byte{9}, 24)); sw != iso7816.SWSecurityStatus {
		t.Fatalf("wrong management key: %04X", sw)
	}
	h.mustSW(t, iso7816.SWWrongData, apdu(insAuthenticate, Alg3DES, RefManagement, []byte{0x7C, 0x02, 0x80, 0x00}))
	if sw := h.authMgm(t, AlgAES192, DefaultManagementKey); sw != iso7816.SWOK {
		t.Fatalf("mgm auth: %04X", sw)
	}
	h.mustSW(t, iso7816.SWOK, gen)
	// 9C defaults to PIN policy "always": a VERIFY must come right before.
	sign := apdu(insAuthenticate, AlgECCP256, SlotSign, tlv.Encode(0x7C, append([]byte{0x82, 0x00}, tlv.Encode(0x81, bytes.Repeat([]byte{1}, 32))...)))
	h.mustSW(t, iso7816.SWSecurityStatus, sign)
	h.mustSW(t, iso7816.SWOK, apdu(insVerify, 0, RefPIN, pad8("123456")))
	h.mustSW(t, iso7816.SWOK, sign)
	h.mustSW(t, iso7816.SWSecurityStatus, sign)
	// PRINTED is readable only with the PIN.
	h.mustSW(t, iso7816.SWOK, apdu(insPutData, 0x3F, 0xFF, append([]byte{0x5C, 0x03, 0x5F, 0xC1, 0x09}, tlv.Encode(0x53, []byte{0x88, 0x02, 0x89, 0x00})...)))
	h.send(apdu(insVerify, 0xFF, RefPIN, nil))
	h.mustSW(t, iso7816.SWSecurityStatus, apdu(insGetData, 0x3F, 0xFF, []byte{0x5C, 0x03, 0x5F, 0xC1, 0x09}))
	h.mustSW(t, iso7816.SWOK, apdu(insVerify, 0, RefPIN, pad8("123456")))
	h.mustSW(t, iso7816.SWOK, apdu(insGetData, 0x3F, 0xFF, []byte{0x5C, 0x03, 0x5F, 0xC1, 0x09}))
	// Objects larger than the key holds are refused.
	big := append([]byte{0x5C, 0x03, 0x5F, 0xC1, 0x05}, tlv.Encode(0x53, make([]byte, MaxObjectSize+1))...)
	h.mustSW(t, iso7816.SWNotEnoughMemory, append(append([]byte{0, insPutData, 0x3F, 0xFF, 0}, byte(len(big)>>8), byte(len(big))), big...))
	// Deselecting forgets the management key.
	h.send(append([]byte{0, 0xA4, 4, 0, byte(len(AID))}, AID...))
	h.app.Deselect()
	h.mustSW(t, iso7816.SWSecurityStatus, gen)
}

func TestTouchPolicy(t *testing.T) {
	h := newHarness(t, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	h.authMgm(t, AlgAES192, DefaultManagementKey)
	body := tlv.Encode(0xAC, append(append(tlv.Encode(0x80, []byte{AlgEd25519}), tlv.Encode(0xAA, []byte{PINPolicyNever})...), tlv.Encode(0xAB, []byte{TouchPolicyAlways})...))
	h.mustSW(t, iso7816.SWOK, apdu(insGenerate, 0, SlotCardAuth, body))
	sign := apdu(insAuthenticate, AlgEd25519, SlotCardAuth, tlv.Encode(0x7C, append([]byte{0x82, 0x00}, tlv.Encode(0x81, []byte("hello"))...)))
	h.key.Presence.SetMode(virtual.TouchNever)
	h.key.Presence.SetTimeout(10 * time.Millisecond)
	h.mustSW(t, iso7816.SWConditionsNotSatisfied, sign)
	h.key.Presence.SetMode(virtual.TouchManual)
	h.key.Presence.SetTimeout(5 * time.Second)
	waiting := h.key.Presence.Waiting()
	go func() { <-waiting; h.key.Presence.Touch() }()
	h.mustSW(t, iso7816.SWOK, sign)
}

func TestFirmwareGates(t *testing.T) {
	h := newHarness(t, virtual.Version{Major: 5, Minor: 2, Patch: 7})
	h.mustSW(t, iso7816.SWInsNotSupported, apdu(insGetMetadata, 0, RefPIN, nil))
	h.mustSW(t, iso7816.SWWrongData, apdu(insAuthenticate, AlgAES192, RefManagement, []byte{0x7C, 0x02, 0x80, 0x00}))
	if v := h.mustSW(t, iso7816.SWOK, apdu(insGetVersion, 0, 0, nil)); !bytes.Equal(v, []byte{5, 2, 7}) {
		t.Fatalf("version % x", v)
	}
}

func TestStateSurvivesMarshal(t *testing.T) {
	h := newHarness(t, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	h.authMgm(t, AlgAES192, DefaultManagementKey)
	for _, alg := range []byte{AlgECCP384, AlgX25519} {
		h.mustSW(t, iso7816.SWOK, apdu(insGenerate, 0, SlotKeyMgmt, tlv.Encode(0xAC, tlv.Encode(0x80, []byte{alg}))))
	}
	h.mustSW(t, iso7816.SWOK, apdu(insChangeRef, 0, RefPIN, append(pad8("123456"), pad8("24682468")...)))
	before := h.mustSW(t, iso7816.SWOK, apdu(insGetMetadata, 0, SlotKeyMgmt, nil))
	b, err := h.app.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	app, err := Restore(h.key, b)
	if err != nil {
		t.Fatal(err)
	}
	h2 := &harness{key: h.key, app: app, card: iso7816.NewCard(nil, app)}
	h2.send(append([]byte{0, 0xA4, 4, 0, byte(len(AID))}, AID...))
	if after := h2.mustSW(t, iso7816.SWOK, apdu(insGetMetadata, 0, SlotKeyMgmt, nil)); !bytes.Equal(before, after) {
		t.Fatal("slot metadata changed across save and load")
	}
	h2.mustSW(t, iso7816.SWOK, apdu(insVerify, 0, RefPIN, pad8("24682468")))
}

// FuzzApplet feeds arbitrary APDUs after a realistic prefix. Whatever comes,
// the applet answers with a status word, never panics, and a factory PIN
// still works unless the fuzz input itself changed or blocked it.
func FuzzApplet(f *testing.F) {
	f.Add([]byte{0, 0x87, 0x0A, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00})
	f.Add([]byte{0, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x05})
	f.Add([]byte{0, 0x47, 0x00, 0x9A, 0x05, 0xAC, 0x03, 0x80, 0x01, 0x11})
	f.Add([]byte{0, 0xFE, 0x11, 0x9A, 0x04, 0x06, 0x02, 0x01, 0x02})
	f.Add([]byte{0, 0xF7, 0x00, 0x9B, 0x00})
	f.Add([]byte{0, 0x24, 0x00, 0x80, 0x10, '1', '2', '3', '4', '5', '6', 0xFF, 0xFF, '1', 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, in []byte) {
		h := newHarness(t, virtual.Version{Major: 5, Minor: 7, Patch: 2})
		h.authMgm(t, AlgAES192, DefaultManagementKey)
		for _, a := range [][]byte{in, in} {
			r := h.card.Transmit(context.Background(), a)
			if len(r) < 2 {
				t.Fatal("no status word")
			}
		}
		if _, err := h.app.MarshalState(); err != nil {
			t.Fatalf("state no longer serialises: %v", err)
		}
		if h.app.st.PINLeft > h.app.st.PINTries || h.app.st.PUKLeft > h.app.st.PUKTries || h.app.st.PINLeft < 0 {
			t.Fatalf("retry counters out of range: %+v", h.app.st)
		}
	})
}
