package pivapplet

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/iso7816"
	"github.com/keydesk/keydesk/device/virtual/tlv"
)

func objectID(tag uint32, n int) []byte {
	id := []byte{byte(tag >> 16), byte(tag >> 8), byte(tag)}[3-n:]
	return tlv.Encode(0x5C, id)
}

func putObject(tag uint32, n int, value []byte) []byte {
	return apdu(insPutData, 0x3F, 0xFF, append(objectID(tag, n), tlv.Encode(0x53, value)...))
}

// TestPutDataWholeRange writes every tag from 0x5F0000 to 0x5FFFFF, as a
// YubiKey accepts, reads each back, and finds tags outside the range
// refused with 6A80 and left unwritten.
func TestPutDataWholeRange(t *testing.T) {
	h := newHarness(t, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	if sw := h.authMgm(t, AlgAES192, DefaultManagementKey); sw != iso7816.SWOK {
		t.Fatalf("mgm auth: %04X", sw)
	}
	value := func(tag uint32) []byte { return []byte{0xC0, byte(tag >> 8), byte(tag)} }
	for tag := uint32(0x5F0000); tag <= 0x5FFFFF; tag++ {
		if _, sw := h.send(putObject(tag, 3, value(tag))); sw != iso7816.SWOK {
			t.Fatalf("PUT DATA %06X: SW %04X, want 9000", tag, sw)
		}
	}
	for tag := uint32(0x5F0000); tag <= 0x5FFFFF; tag++ {
		if tag == tagPrinted {
			continue // readable only after VERIFY; checked below
		}
		got, sw := h.send(apdu(insGetData, 0x3F, 0xFF, objectID(tag, 3)))
		if sw != iso7816.SWOK || !bytes.Equal(got, tlv.Encode(0x53, value(tag))) {
			t.Fatalf("GET DATA %06X: % x SW %04X, want what was written", tag, got, sw)
		}
	}
	h.mustSW(t, iso7816.SWOK, apdu(insVerify, 0, RefPIN, pad8("123456")))
	if got := h.mustSW(t, iso7816.SWOK, apdu(insGetData, 0x3F, 0xFF, objectID(tagPrinted, 3))); !bytes.Equal(got, tlv.Encode(0x53, value(tagPrinted))) {
		t.Fatalf("PRINTED: % x", got)
	}
	// An empty value deletes, at both ends of the range too.
	for _, tag := range []uint32{0x5F0000, 0x5F0001, 0x5FC124, 0x5FFF16, 0x5FFFFF} {
		h.mustSW(t, iso7816.SWOK, putObject(tag, 3, nil))
		h.mustSW(t, iso7816.SWFileNotFound, apdu(insGetData, 0x3F, 0xFF, objectID(tag, 3)))
	}

	outside := []struct {
		tag uint32
		n   int
	}{{0x5EFFFF, 3}, {0x600000, 3}, {0xFFFFFF, 3}, {0x7F60, 2}, {0x7F62, 2}, {0x5FC1, 2}, {0x5F, 1}, {tagDiscovery, 1}, {0x7F, 1}}
	for _, o := range outside {
		t.Run(fmt.Sprintf("%X", o.tag), func(t *testing.T) {
			h.mustSW(t, iso7816.SWWrongData, putObject(o.tag, o.n, []byte{1, 2, 3}))
			if o.tag == tagDiscovery {
				return // GET DATA answers the fixed discovery object
			}
			h.mustSW(t, iso7816.SWFileNotFound, apdu(insGetData, 0x3F, 0xFF, objectID(o.tag, o.n)))
		})
	}
	if got := h.mustSW(t, iso7816.SWOK, apdu(insGetData, 0x3F, 0xFF, objectID(tagDiscovery, 1))); !bytes.Equal(got, discovery) {
		t.Fatalf("discovery object changed: % x", got)
	}
	// The BIT group template stays writable.
	h.mustSW(t, iso7816.SWOK, putObject(0x7F61, 2, []byte{0x02, 0x01, 0x00}))
}

// TestManagementKeyDefaultNeedsFactoryAlgorithm: GET METADATA reports the
// management key as default only when both its algorithm and its bytes are
// the factory key's for the firmware: 3DES before 5.7, AES-192 from 5.7.
func TestManagementKeyDefaultNeedsFactoryAlgorithm(t *testing.T) {
	for _, tc := range []struct {
		fw      virtual.Version
		factory byte
		other   byte
	}{
		{virtual.Version{Major: 5, Minor: 4, Patch: 3}, Alg3DES, AlgAES192},
		{virtual.Version{Major: 5, Minor: 7, Patch: 2}, AlgAES192, Alg3DES},
	} {
		t.Run(tc.fw.String(), func(t *testing.T) {
			h := newHarness(t, tc.fw)
			meta := func() (alg, def byte) {
				t.Helper()
				m := h.mustSW(t, iso7816.SWOK, apdu(insGetMetadata, 0, RefManagement, nil))
				a, _ := tlv.Find(m, 0x01)
				d, _ := tlv.Find(m, 0x05)
				if len(a) != 1 || len(d) != 1 {
					t.Fatalf("metadata % x", m)
				}
				return a[0], d[0]
			}
			set := func(alg byte, key []byte) {
				t.Helper()
				h.mustSW(t, iso7816.SWOK, apdu(insSetMgmKey, 0xFF, 0xFF, append([]byte{alg, RefManagement, byte(len(key))}, key...)))
			}
			if alg, def := meta(); alg != tc.factory || def != 1 {
				t.Fatalf("factory-fresh: algorithm %02X default %d, want %02X and 1", alg, def, tc.factory)
			}
			if sw := h.authMgm(t, tc.factory, DefaultManagementKey); sw != iso7816.SWOK {
				t.Fatalf("factory key refused: %04X", sw)
			}
			// The factory bytes under the other algorithm are not the factory key.
			set(tc.other, DefaultManagementKey)
			if alg, def := meta(); alg != tc.other || def != 0 {
				t.Fatalf("%02X key with the factory bytes: algorithm %02X default %d, want not default", tc.other, alg, def)
			}
			// Other bytes under the factory algorithm are not either.
			if sw := h.authMgm(t, tc.other, DefaultManagementKey); sw != iso7816.SWOK {
				t.Fatalf("auth with the %02X key: %04X", tc.other, sw)
			}
			set(tc.factory, bytes.Repeat([]byte{7}, 24))
			if _, def := meta(); def != 0 {
				t.Fatal("a random key reported as default")
			}
			// Back to the factory key: default again.
			if sw := h.authMgm(t, tc.factory, bytes.Repeat([]byte{7}, 24)); sw != iso7816.SWOK {
				t.Fatalf("auth: %04X", sw)
			}
			set(tc.factory, DefaultManagementKey)
			if alg, def := meta(); alg != tc.factory || def != 1 {
				t.Fatalf("factory key restored: algorithm %02X default %d", alg, def)
			}
		})
	}
}
