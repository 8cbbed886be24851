package pcsc_test

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/keydesk/keydesk/device/pcsc"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/pcscd"
	"github.com/keydesk/keydesk/device/virtual/sim"
)

var daemon *pcscd.Daemon

func TestMain(m *testing.M) { pcscd.RunTests(m, 1, &daemon) }

// plug runs a virtual key on the private pcscd's reader until the test ends.
func plug(t *testing.T) string {
	t.Helper()
	y, err := sim.New(sim.Options{Serial: sim.FirstSerial, Firmware: virtual.Version{Major: 5, Minor: 7, Patch: 2}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	slot, err := y.Run(ctx, daemon.Addr(0), "")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-slot.Done()
		wctx, done := context.WithTimeout(context.Background(), 10*time.Second)
		daemon.WaitCard(wctx, 0, false)
		done()
	})
	select {
	case <-slot.PoweredOn():
	case <-time.After(10 * time.Second):
		t.Fatalf("pcscd did not power up the card in %q within 10s", daemon.Reader(0))
	}
	wctx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	if err := daemon.WaitCard(wctx, 0, true); err != nil {
		t.Fatal(err)
	}
	return daemon.Reader(0)
}

// The APDUs of a PIN-state read (NIST SP 800-73-4 §3.1.1 SELECT; Yubico's
// GET VERSION, GET SERIAL and GET METADATA for the PIN and the PUK), and
// one the card refuses (GET DATA of an object never written).
var apdus = []struct {
	ins, p1, p2 byte
	data        []byte
}{
	{0xA4, 0x04, 0x00, pcsc.AIDPIV},
	{0xFD, 0x00, 0x00, nil},
	{0xF8, 0x00, 0x00, nil},
	{0xF7, 0x00, 0x80, nil},
	{0xF7, 0x00, 0x81, nil},
	{0xCB, 0x3F, 0xFF, []byte{0x5C, 0x03, 0x5F, 0xC1, 0x0D}},
}

// raw is the short APDU Transmit sends for a (ISO 7816-4 §5.1).
func raw(ins, p1, p2 byte, data []byte) []byte {
	b := []byte{0x00, ins, p1, p2}
	if len(data) > 0 {
		b = append(append(b, byte(len(data))), data...)
	}
	return append(b, 0x00)
}

// TestTransmit checks that a Session's exchange answers as scard's own
// Transmit does, and that it costs about what the answers hold: scard's
// Transmit makes a 64 KiB buffer for every APDU, which a key's PIN state
// read every half second turned into megabytes of garbage a second.
func TestTransmit(t *testing.T) {
	reader := plug(t)

	var want [][]byte
	func() {
		sc, err := scard.EstablishContext()
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Release()
		card, err := sc.Connect(reader, scard.ShareExclusive, scard.ProtocolT1)
		if err != nil {
			t.Fatal(err)
		}
		defer card.Disconnect(scard.LeaveCard)
		for _, a := range apdus {
			out, err := card.Transmit(raw(a.ins, a.p1, a.p2, a.data))
			if err != nil {
				t.Fatalf("scard's Transmit of instruction %02X: %v", a.ins, err)
			}
			want = append(want, out)
		}
	}()

	s, err := pcsc.Dial(context.Background(), reader)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	exchange := func() [][]byte {
		var got [][]byte
		for _, a := range apdus {
			resp, sw, err := s.Transmit(a.ins, a.p1, a.p2, a.data)
			if err != nil {
				t.Fatalf("Transmit of instruction %02X: %v", a.ins, err)
			}
			got = append(got, append(resp, byte(sw>>8), byte(sw)))
		}
		return got
	}
	got := exchange()
	for i := range apdus {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("instruction %02X answered % X; scard's Transmit had % X", apdus[i].ins, got[i], want[i])
		}
	}
	if sw := want[len(want)-1]; sw[len(sw)-2] == 0x90 {
		t.Fatalf("the card answered instruction %02X with success; the test needs a refusal", apdus[len(apdus)-1].ins)
	}

	const rounds = 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range rounds {
		exchange()
	}
	runtime.ReadMemStats(&after)
	perAPDU := (after.TotalAlloc - before.TotalAlloc) / uint64(rounds*len(apdus))
	t.Logf("%d bytes allocated per APDU (this process holds the virtual card too)", perAPDU)
	if perAPDU > 8<<10 {
		t.Errorf("%d bytes allocated per APDU exchanged; want a few hundred, not a 64 KiB buffer each", perAPDU)
	}
}
