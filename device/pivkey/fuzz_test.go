package pivkey

import (
	"bytes"
	"testing"
)

// The fuzz targets below cover what the host reads from a key's PIV
// application: GET METADATA answers, GET DATA's 53 wrapper, and the PIVMAN
// and PRINTED objects ykman's protected management key lives in. A key (or
// something pretending to be one) controls every byte; none may panic the
// host, and what parses must mean what it says.

func FuzzReadTLV(f *testing.F) {
	f.Add([]byte{0x53, 0x02, 0x01, 0x02})
	f.Add([]byte{0x53, 0x81, 0x01, 0xFF})
	f.Add([]byte{0x53, 0x82, 0x00, 0x01, 0xFF, 0xAA})
	f.Add([]byte{0x53, 0x83, 0x00})
	f.Add([]byte{0x53})
	f.Fuzz(func(t *testing.T, b []byte) {
		tag, v, rest, err := readTLV(b)
		if err != nil {
			return
		}
		if tag != b[0] || len(v)+len(rest) > len(b)-2 {
			t.Fatalf("tag %02x value %d rest %d from %d bytes", tag, len(v), len(rest), len(b))
		}
		// What was read re-encodes to the bytes it came from (one of the
		// three length forms).
		head := len(b) - len(rest) - len(v)
		if enc := tlv(tag, v); len(v) < 0x80 && head == 2 && !bytes.Equal(enc, b[:len(b)-len(rest)]) {
			t.Fatalf("re-encoding %x gives %x", b[:len(b)-len(rest)], enc)
		}
	})
}

func FuzzParseMetadata(f *testing.F) {
	// Slot 9A, ECC P-256, PIN once, touch never, generated, with a key;
	// the PIN's retries; the management key's default flag.
	f.Add(append([]byte{0x01, 0x01, 0x11, 0x02, 0x02, 0x02, 0x01, 0x03, 0x01, 0x01, 0x04, 0x43, 0x86, 0x41, 0x04}, bytes.Repeat([]byte{0x11}, 64)...))
	f.Add([]byte{0x01, 0x01, 0xFF, 0x05, 0x01, 0x01, 0x06, 0x02, 0x03, 0x03})
	f.Add([]byte{0x01, 0x01, 0x0A, 0x02, 0x02, 0x00, 0x01, 0x05, 0x01, 0x00})
	f.Add([]byte{0x06, 0x01, 0x03})
	f.Add([]byte{0x04, 0x82, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMetadata(b)
		if err != nil {
			if m != nil {
				t.Fatal("metadata and an error")
			}
			return
		}
		if m.Remaining > 255 || m.Total > 255 || m.Total < 0 || m.Remaining < 0 {
			t.Fatalf("retries %d of %d", m.Remaining, m.Total)
		}
		if len(m.PublicKey) > len(b) || (len(m.PublicKey) > 0 && !bytes.Contains(b, m.PublicKey)) {
			t.Fatal("public key not taken from the answer")
		}
	})
}

func FuzzUnwrapObject(f *testing.F) {
	f.Add(tlv(0x53, tlv(0x80, tlv(0x81, []byte{0x02}))))
	f.Add(tlv(0x53, bytes.Repeat([]byte{0x30}, 300)))
	f.Add([]byte{0x54, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := unwrapObject(b)
		if err == nil && (b[0] != 0x53 || len(v) > len(b)) {
			t.Fatalf("unwrapped %d bytes from %x", len(v), b)
		}
	})
}

func FuzzParsePIVMAN(f *testing.F) {
	f.Add(tlv(0x80, append(tlv(0x81, []byte{0x01}), tlv(0x82, bytes.Repeat([]byte{7}, 16))...)))
	f.Add(tlv(0x80, tlv(0x81, []byte{0x02})))
	f.Add(tlv(0x80, append(tlv(0x83, []byte{0, 0, 0, 1}), tlv(0x81, []byte{0x03})...)))
	f.Add([]byte{0x80, 0x00})
	f.Add([]byte{0x80, 0x05, 0x81})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePIVMAN(b)
		if err != nil {
			return
		}
		// A rewrite (as SetProtected does) keeps the flags and every other
		// inner TLV.
		q, err := parsePIVMAN(p.encode())
		if err != nil {
			t.Fatalf("re-parsing our own encoding %x: %v", p.encode(), err)
		}
		if q.Flags != p.Flags || !bytes.Equal(q.rest, p.rest) {
			t.Fatalf("rewrite changed the object: %+v -> %+v", p, q)
		}
	})
}

func FuzzParsePrinted(f *testing.F) {
	f.Add(encodePrinted(bytes.Repeat([]byte{0xA5}, 24)))
	f.Add(encodePrinted(bytes.Repeat([]byte{0x5A}, 32)))
	f.Add(tlv(0x88, append(tlv(0x8A, []byte{1}), tlv(0x89, []byte{1, 2, 3})...)))
	f.Add(tlv(0x88, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parsePrinted(b)
		if err != nil {
			return
		}
		if len(k) > len(b) || !bytes.Contains(b, k) {
			t.Fatal("key not taken from the object")
		}
		if len(k) < 0x80 {
			if got, err := parsePrinted(encodePrinted(k)); err != nil || !bytes.Equal(got, k) {
				t.Fatalf("round trip of %x: %x %v", k, got, err)
			}
		}
	})
}
