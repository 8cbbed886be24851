package vpcd_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/iso7816"
	"github.com/keydesk/keydesk/device/virtual/pcscd"
	"github.com/keydesk/keydesk/device/virtual/vpcd"
)

type echoApplet struct{}

func (echoApplet) AID() []byte              { return []byte{0xA0, 0, 0, 0, 0x99} }
func (echoApplet) Select() ([]byte, uint16) { return nil, iso7816.SWOK }
func (echoApplet) Deselect()                {}
func (echoApplet) Process(_ context.Context, c iso7816.Command) ([]byte, uint16) {
	return c.Data, iso7816.SWOK
}

var daemon *pcscd.Daemon

// TestMain starts one private pcscd for the package: libpcsclite reads
// PCSCLITE_CSOCK_NAME once per process. Reader 0 is for tests, 1 for
// benchmarks.
func TestMain(m *testing.M) { pcscd.RunTests(m, 2, &daemon) }

func waitState(t *testing.T, sc *scard.Context, reader string, present bool) {
	t.Helper()
	rs := []scard.ReaderState{{Reader: reader, CurrentState: scard.StateUnaware}}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := sc.GetStatusChange(rs, time.Second); err != nil && err != scard.ErrTimeout {
			t.Fatalf("GetStatusChange: %v", err)
		}
		if (rs[0].EventState&scard.StatePresent != 0) == present {
			return
		}
		rs[0].CurrentState = rs[0].EventState
	}
	t.Fatalf("reader %q: card present != %v after 5s", reader, present)
}

func TestCardThroughPCSCD(t *testing.T) {
	d := daemon
	key := virtual.NewKey(virtual.DefaultIdentity(1))
	card := iso7816.NewCard(nil, echoApplet{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slot := vpcd.Attach(ctx, d.Addr(0), key, card)
	<-slot.Connected()

	sc, err := scard.EstablishContext()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Release()
	readers, err := sc.ListReaders()
	found := false
	for _, r := range readers {
		found = found || r == d.Reader(0)
	}
	if err != nil || !found {
		t.Fatalf("readers %q (%v), want %q among them", readers, err, d.Reader(0))
	}
	waitState(t, sc, d.Reader(0), true)
	c, err := sc.Connect(d.Reader(0), scard.ShareShared, scard.ProtocolAny)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status()
	if err != nil || !bytes.Equal(st.Atr, vpcd.YubiKey5ATR) {
		t.Fatalf("ATR % x (%v)", st.Atr, err)
	}
	resp, err := c.Transmit([]byte{0, 0xA4, 4, 0, 5, 0xA0, 0, 0, 0, 0x99})
	if err != nil || !bytes.Equal(resp, []byte{0x90, 0}) {
		t.Fatalf("select: % x %v", resp, err)
	}
	resp, err = c.Transmit([]byte{0, 0x01, 0, 0, 3, 1, 2, 3})
	if err != nil || !bytes.Equal(resp, []byte{1, 2, 3, 0x90, 0}) {
		t.Fatalf("echo: % x %v", resp, err)
	}

	// Pulling the key ends the connection and empties the reader.
	key.Remove()
	if _, err := c.Transmit([]byte{0, 0x01, 0, 0, 1, 9}); err == nil {
		t.Fatal("transmit to a removed card succeeded")
	}
	c.Disconnect(scard.LeaveCard)
	waitState(t, sc, d.Reader(0), false)
	connected := slot.Connected()
	key.Insert()
	<-connected
	waitState(t, sc, d.Reader(0), true)
	c, err = sc.Connect(d.Reader(0), scard.ShareShared, scard.ProtocolAny)
	if err != nil {
		t.Fatalf("connect after reinsertion: %v", err)
	}
	defer c.Disconnect(scard.LeaveCard)
	// Reinsertion is a fresh power-up: nothing is selected.
	resp, _ = c.Transmit([]byte{0, 0x01, 0, 0, 1, 9})
	if !bytes.Equal(resp, []byte{0x6D, 0x00}) {
		t.Fatalf("after reinsertion an applet was still selected: % x", resp)
	}
}
