package pivkey

import (
	"bytes"
	"testing"
)

func TestPIVMANRoundTrip(t *testing.T) {
	// flags 0x01 plus a salt, as the deprecated PIN-derived mode writes it.
	in := tlv(0x80, append(tlv(0x81, []byte{0x01}), tlv(0x82, bytes.Repeat([]byte{7}, 16))...))
	p, err := parsePIVMAN(in)
	if err != nil || !p.HasFlags || p.Flags != 0x01 {
		t.Fatalf("parse: %+v %v", p, err)
	}
	p.Flags |= pivmanMgmStored
	out := p.encode()
	q, err := parsePIVMAN(out)
	if err != nil || q.Flags != 0x03 || !bytes.Equal(q.rest, p.rest) || len(q.rest) != 18 {
		t.Fatalf("reparse: %+v %v", q, err)
	}
	if _, err := parsePIVMAN([]byte{0x80, 0x05, 0x81}); err == nil {
		t.Error("truncated object parsed")
	}
}

func TestPrintedRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{0xA5}, 24)
	enc := encodePrinted(key)
	want := append([]byte{0x88, 26, 0x89, 24}, key...)
	if !bytes.Equal(enc, want) {
		t.Fatalf("encoding %x, want %x", enc, want)
	}
	got, err := parsePrinted(enc)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("parse: %x %v", got, err)
	}
	if _, err := parsePrinted(tlv(0x88, nil)); err == nil {
		t.Error("empty printed object gave a key")
	}
}
