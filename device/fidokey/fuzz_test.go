package fidokey

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/keydesk/keydesk/device"
)

// The fuzz targets below cover what the host reads from a FIDO key itself:
// authenticator data (WebAuthn L2 §6.1), Yubico's READ_CONFIG answer, and
// CTAPHID framing (CTAP 2.1 §11.2.4). A key, or a device pretending to be
// one, controls every byte.

// es256Key is a COSE_Key (RFC 9053) for P-256 with zero coordinates: enough
// for framing, parseAuthData does not check the point.
var es256Key = append(append([]byte{0xA5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21, 0x58, 0x20}, make([]byte, 32)...), append([]byte{0x22, 0x58, 0x20}, make([]byte, 32)...)...)

func authDataBytes(flags byte, count uint32, credID []byte, key []byte, ext []byte) []byte {
	b := append(bytes.Repeat([]byte{0x11}, 32), flags, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[33:], count)
	if flags&flagAT != 0 {
		b = append(b, bytes.Repeat([]byte{0xAA}, 16)...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(credID)))
		b = append(append(b, credID...), key...)
	}
	return append(b, ext...)
}

func FuzzParseAuthData(f *testing.F) {
	f.Add(authDataBytes(flagUP|flagUV|flagAT, 0, []byte("credential-id-0001"), es256Key, nil))
	f.Add(authDataBytes(flagUP|flagAT|flagED, 7, bytes.Repeat([]byte{1}, 64), es256Key, []byte{0xA1, 0x6B, 'c', 'r', 'e', 'd', 'P', 'r', 'o', 't', 'e', 'c', 't', 0x02}))
	f.Add(authDataBytes(flagUP, 42, nil, nil, nil))
	f.Add(authDataBytes(flagUP|flagAT, 0, []byte{1, 2, 3}, []byte{0xA5}, nil))
	f.Add(make([]byte, 36))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseAuthData(b)
		if err != nil {
			if a != nil {
				t.Fatal("authenticator data and an error")
			}
			return
		}
		if a.signCount != binary.BigEndian.Uint32(b[33:37]) || a.flags != b[32] || !bytes.Equal(a.rpIDHash, b[:32]) {
			t.Fatalf("header misread: %+v", a)
		}
		if a.flags&flagAT == 0 && (a.credID != nil || a.coseKey != nil) {
			t.Fatal("a credential without the AT flag")
		}
		// Without extensions, the parts are the whole: nothing skipped,
		// nothing invented.
		if a.flags&flagED == 0 {
			again := authDataBytes(a.flags, a.signCount, a.credID, a.coseKey, nil)
			copy(again, a.rpIDHash)
			if a.flags&flagAT != 0 {
				copy(again[37:], a.aaguid[:])
			}
			if !bytes.Equal(again, b) {
				t.Fatalf("parts %x do not make up %x", again, b)
			}
		}
	})
}

func readConfig(tlvs ...byte) []byte { return append([]byte{byte(len(tlvs))}, tlvs...) }

func FuzzParseReadConfig(f *testing.F) {
	f.Add(readConfig(tagSerial, 4, 0x00, 0xBC, 0x61, 0x4E, tagVersion, 3, 5, 7, 1, 0x01, 2, 0x02, 0x3B))
	f.Add(readConfig(tagVersion, 3, 5, 4, 3))
	f.Add(readConfig(tagSerial, 2, 1, 2))
	f.Add(readConfig(tagSerial, 4, 1, 2))
	f.Add([]byte{0xFF, 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		fw := device.Version{Major: 9, Minor: 9, Patch: 9}
		serial, ok, err := parseReadConfig(data, &fw)
		if err != nil {
			if ok {
				t.Fatal("ok with an error")
			}
			return
		}
		if ok {
			var s [4]byte
			binary.BigEndian.PutUint32(s[:], serial)
			if !bytes.Contains(data, append([]byte{tagSerial, 4}, s[:]...)) {
				t.Fatalf("serial %d not in %x", serial, data)
			}
		} else if serial != 0 {
			t.Fatalf("serial %d without ok", serial)
		}
		if fw != (device.Version{Major: 9, Minor: 9, Patch: 9}) && !bytes.Contains(data, []byte{tagVersion, 3, fw.Major, fw.Minor, fw.Patch}) {
			t.Fatalf("firmware %v not in %x", fw, data)
		}
	})
}

// reports is a HID device that answers with fixed bytes and swallows writes.
type reports struct{ io.Reader }

func (reports) Write(p []byte) (int, error) { return len(p), nil }

func FuzzHIDRecv(f *testing.F) {
	const cid = 0x01020304
	var one bytes.Buffer // a READ_CONFIG answer over an init and a continuation packet
	h := &hidConn{rw: &struct {
		io.Reader
		io.Writer
	}{nil, &one}}
	h.send(cid, hidReadConfig, bytes.Repeat([]byte{0x5A}, 100))
	var frames []byte // the 65-byte writes become 64-byte reports
	for p := one.Bytes(); len(p) >= 65; p = p[65:] {
		frames = append(frames, p[1:65]...)
	}
	f.Add(frames)
	keepalive := make([]byte, 64)
	binary.BigEndian.PutUint32(keepalive, cid)
	keepalive[4] = 0x80 | hidKeepalive
	f.Add(append(keepalive, frames...))
	f.Add(frames[:64])
	f.Add([]byte{1, 2, 3, 4, 0x86, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, b []byte) {
		h := &hidConn{rw: reports{bytes.NewReader(b)}}
		cmd, data, err := h.recv(cid)
		if err != nil {
			return
		}
		if cmd&0x80 != 0 || len(data) > 0xFFFF || len(data) > len(b) {
			t.Fatalf("command %#x with %d bytes from %d", cmd, len(data), len(b))
		}
	})
}
