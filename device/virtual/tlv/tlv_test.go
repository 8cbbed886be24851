package tlv

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	long := bytes.Repeat([]byte{0xAB}, 300)
	mid := bytes.Repeat([]byte{0xCD}, 200)
	objs := []TLV{{0x5C, []byte{0x5F, 0xC1, 0x05}}, {0x5FC105, long}, {0x7F49, mid}, {0x53, nil}}
	enc := EncodeAll(objs...)
	got, err := Parse(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(objs) {
		t.Fatalf("parsed %d objects", len(got))
	}
	for i := range objs {
		if got[i].Tag != objs[i].Tag || !bytes.Equal(got[i].Value, objs[i].Value) {
			t.Fatalf("object %d: %x/%d bytes, want %x/%d", i, got[i].Tag, len(got[i].Value), objs[i].Tag, len(objs[i].Value))
		}
	}
	if !bytes.Equal(Encode(0x5FC105, long)[:6], []byte{0x5F, 0xC1, 0x05, 0x82, 0x01, 0x2C}) {
		t.Fatalf("long form header % x", Encode(0x5FC105, long)[:6])
	}
	if !bytes.Equal(Encode(0x7F49, mid)[:4], []byte{0x7F, 0x49, 0x81, 0xC8}) {
		t.Fatalf("0x81 form header % x", Encode(0x7F49, mid)[:4])
	}
	if v, ok := Find(enc, 0x7F49); !ok || len(v) != 200 {
		t.Fatal("Find 7F49")
	}
}

func TestMalformed(t *testing.T) {
	for _, b := range [][]byte{
		{0x53},             // no length
		{0x53, 0x05, 1, 2}, // short value
		{0x5F},             // truncated tag
		{0x5F, 0xC1},       // truncated three-byte tag
		{0x5F, 0xC1, 0x85, 0x01, 0x00},
		{0x53, 0x84, 0, 0, 0, 1, 0},
		{0x53, 0x80},
		{0x53, 0x82, 0x01},
	} {
		if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(% x) = %v, want ErrMalformed", b, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(EncodeAll(TLV{0x5C, []byte{0x5F, 0xC1, 0x05}}, TLV{0x53, bytes.Repeat([]byte{1}, 130)}))
	f.Add([]byte{0x7F, 0x49, 0x82, 0x01, 0x00})
	f.Add([]byte{0x5F, 0xC1, 0x09, 0x03, 0x88, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		objs, err := Parse(b)
		if err != nil {
			return
		}
		// What parses re-encodes to something that parses the same way.
		again, err := Parse(EncodeAll(objs...))
		if err != nil || len(again) != len(objs) {
			t.Fatalf("re-encoding failed: %v", err)
		}
		for i := range objs {
			if again[i].Tag != objs[i].Tag || !bytes.Equal(again[i].Value, objs[i].Value) {
				t.Fatalf("object %d changed on re-encoding", i)
			}
		}
	})
}
