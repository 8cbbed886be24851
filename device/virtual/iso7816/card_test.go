package iso7816

import (
	"bytes"
	"context"
	"testing"
)

type echo struct {
	aid      []byte
	selected int
	last     Command
}

func (e *echo) AID() []byte              { return e.aid }
func (e *echo) Select() ([]byte, uint16) { e.selected++; return []byte{0x61, 0x00}, SWOK }
func (e *echo) Deselect()                {}
func (e *echo) Process(_ context.Context, c Command) ([]byte, uint16) {
	e.last = c
	if c.INS == 0x01 {
		return bytes.Repeat([]byte{0x5A}, 600), SWOK
	}
	return c.Data, SWOK
}

func sw(resp []byte) uint16 { return uint16(resp[len(resp)-2])<<8 | uint16(resp[len(resp)-1]) }

func TestParseCases(t *testing.T) {
	for _, tc := range []struct {
		in     []byte
		lc, ne int
		ext    bool
		bad    bool
	}{
		{in: []byte{0, 0xA4, 4, 0}},
		{in: []byte{0, 0xCB, 0x3F, 0xFF, 0}, ne: 256},
		{in: []byte{0, 0xA4, 4, 0, 2, 1, 2}, lc: 2},
		{in: []byte{0, 0xA4, 4, 0, 2, 1, 2, 0x10}, lc: 2, ne: 16},
		{in: []byte{0, 0xCB, 0x3F, 0xFF, 0, 0x01, 0x00}, ne: 256, ext: true},
		{in: append([]byte{0, 0xDB, 0x3F, 0xFF, 0, 0x01, 0x00}, make([]byte, 256)...), lc: 256, ext: true},
		{in: append(append([]byte{0, 0xDB, 0x3F, 0xFF, 0, 0x01, 0x00}, make([]byte, 256)...), 0, 0), lc: 256, ne: 65536, ext: true},
		{in: []byte{0, 0xA4, 4}, bad: true},
		{in: []byte{0, 0xA4, 4, 0, 5, 1}, bad: true},
		{in: []byte{0, 0xA4, 4, 0, 0, 0}, bad: true},
		{in: []byte{0, 0xA4, 4, 0, 0, 0, 3, 1}, bad: true},
	} {
		c, err := ParseCommand(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("% x: parsed as %v", tc.in, c)
			}
			continue
		}
		if err != nil || len(c.Data) != tc.lc || c.Ne != tc.ne || c.Extended != tc.ext {
			t.Errorf("% x: %v ext=%v err=%v; want lc=%d ne=%d ext=%v", tc.in, c, c.Extended, err, tc.lc, tc.ne, tc.ext)
		}
	}
}

func TestSelectChainAndGetResponse(t *testing.T) {
	a := &echo{aid: []byte{0xA0, 0, 0, 3, 8, 0, 0, 0x10, 0, 1, 0}}
	b := &echo{aid: []byte{0xA0, 0, 0, 5, 0x27, 0x47, 0x11, 0x17}}
	disabled := false
	card := NewCard(func(x Applet) bool { return !(disabled && x == Applet(b)) }, a, b)
	ctx := context.Background()

	if got := sw(card.Transmit(ctx, []byte{0, 0x02, 0, 0})); got != SWInsNotSupported {
		t.Fatalf("command before select: %04X", got)
	}
	if got := sw(card.Transmit(ctx, []byte{0, 0xA4, 4, 0, 5, 0xA0, 0, 0, 3, 8})); got != SWOK || a.selected != 1 {
		t.Fatalf("partial select: %04X", got)
	}
	// Chaining: two parts, then the last.
	if got := sw(card.Transmit(ctx, []byte{0x10, 0x02, 1, 2, 2, 0xAA, 0xBB})); got != SWOK {
		t.Fatalf("chain part: %04X", got)
	}
	resp := card.Transmit(ctx, []byte{0x00, 0x02, 1, 2, 1, 0xCC})
	if !bytes.Equal(resp, []byte{0xAA, 0xBB, 0xCC, 0x90, 0x00}) {
		t.Fatalf("chained result % x", resp)
	}
	// A chain broken by another command.
	card.Transmit(ctx, []byte{0x10, 0x02, 1, 2, 1, 0xAA})
	if got := sw(card.Transmit(ctx, []byte{0x00, 0x03, 1, 2, 1, 0xCC})); got != SWLastCommandExpected {
		t.Fatalf("broken chain: %04X", got)
	}
	// A 600-byte answer to a short APDU comes in 256-byte pieces.
	resp = card.Transmit(ctx, []byte{0, 0x01, 0, 0, 0})
	var all []byte
	for sw(resp)&0xFF00 == SWBytesRemaining {
		all = append(all, resp[:len(resp)-2]...)
		resp = card.Transmit(ctx, []byte{0, 0xC0, 0, 0, 0})
	}
	all = append(all, resp[:len(resp)-2]...)
	if sw(resp) != SWOK || len(all) != 600 {
		t.Fatalf("get response gathered %d bytes, final %04X", len(all), sw(resp))
	}
	// The same answer to an extended APDU comes whole.
	if resp = card.Transmit(ctx, []byte{0, 0x01, 0, 0, 0, 0, 0}); len(resp) != 602 {
		t.Fatalf("extended answer %d bytes", len(resp))
	}
	disabled = true
	if got := sw(card.Transmit(ctx, []byte{0, 0xA4, 4, 0, 8, 0xA0, 0, 0, 5, 0x27, 0x47, 0x11, 0x17})); got != SWFileNotFound {
		t.Fatalf("select of disabled applet: %04X", got)
	}
	if got := sw(card.Transmit(ctx, []byte{0x00, 0xA4, 4})); got != SWWrongLength {
		t.Fatalf("short apdu: %04X", got)
	}
}

func FuzzTransmit(f *testing.F) {
	f.Add([]byte{0, 0xA4, 4, 0, 5, 0xA0, 0, 0, 3, 8})
	f.Add([]byte{0x10, 0x02, 1, 2, 2, 0xAA, 0xBB})
	f.Add([]byte{0, 0xC0, 0, 0, 0})
	f.Add([]byte{0, 0x01, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, apdu []byte) {
		a := &echo{aid: []byte{0xA0, 0, 0, 3, 8}}
		card := NewCard(nil, a)
		ctx := context.Background()
		card.Transmit(ctx, []byte{0, 0xA4, 4, 0, 5, 0xA0, 0, 0, 3, 8})
		for i := 0; i < 3; i++ {
			resp := card.Transmit(ctx, apdu)
			if len(resp) < 2 {
				t.Fatalf("response without status word: % x", resp)
			}
		}
		// The card still answers a well-formed command afterwards.
		card.Transmit(ctx, []byte{0, 0xA4, 4, 0, 5, 0xA0, 0, 0, 3, 8})
		if resp := card.Transmit(ctx, []byte{0, 0x02, 0, 0, 1, 0x42}); !bytes.Equal(resp, []byte{0x42, 0x90, 0}) {
			t.Fatalf("card wedged: % x", resp)
		}
	})
}
