package vpcd_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/iso7816"
	"github.com/keydesk/keydesk/device/virtual/pivapplet"
	"github.com/keydesk/keydesk/device/virtual/vpcd"
)

var getVersion = []byte{0x00, 0xFD, 0x00, 0x00, 0x00}

func reportMedian(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "median-ns/apdu")
	b.ReportMetric(float64(d[len(d)*9/10].Nanoseconds()), "p90-ns/apdu")
}

// BenchmarkAPDURoundTrip is one PIV GET VERSION through libpcsclite → pcscd →
// the vpcd driver → the virtual key and back: the cost of the transport that
// every keydesk PC/SC operation pays per APDU.
func BenchmarkAPDURoundTrip(b *testing.B) {
	d := daemon
	key := virtual.NewKey(virtual.DefaultIdentity(1))
	app, _ := pivapplet.New(key)
	card := iso7816.NewCard(nil, app)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slot := vpcd.Attach(ctx, d.Addr(1), key, card)
	defer func() { cancel(); <-slot.Done() }()
	<-slot.PoweredOn()
	sc, err := scard.EstablishContext()
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Release()
	var c *scard.Card
	for i := 0; i < 100 && c == nil; i++ {
		if c, err = sc.Connect(d.Reader(1), scard.ShareShared, scard.ProtocolAny); err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if c == nil {
		b.Fatal(err)
	}
	defer c.Disconnect(scard.LeaveCard)
	if _, err := c.Transmit(append([]byte{0, 0xA4, 4, 0, byte(len(pivapplet.AID))}, pivapplet.AID...)); err != nil {
		b.Fatal(err)
	}
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		r, err := c.Transmit(getVersion)
		times = append(times, time.Since(t0))
		if err != nil || len(r) != 5 {
			b.Fatalf("transmit: % x %v", r, err)
		}
	}
	reportMedian(b, times)
}

// BenchmarkAPDUInProcess is the same APDU handled by the virtual card with no
// transport, to separate the card's own time from the stack's.
func BenchmarkAPDUInProcess(b *testing.B) {
	key := virtual.NewKey(virtual.DefaultIdentity(1))
	app, _ := pivapplet.New(key)
	card := iso7816.NewCard(nil, app)
	ctx := context.Background()
	card.Transmit(ctx, append([]byte{0, 0xA4, 4, 0, byte(len(pivapplet.AID))}, pivapplet.AID...))
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		card.Transmit(ctx, getVersion)
		times = append(times, time.Since(t0))
	}
	reportMedian(b, times)
}
