//go:build linux

package ptyhid_test

import (
	"context"
	"encoding/binary"
	"sort"
	"testing"
	"time"

	libfido2 "github.com/keys-pub/go-libfido2"
	"golang.org/x/sys/unix"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/ctap"
	"github.com/keydesk/keydesk/device/virtual/fidotest"
)

// median reports the median of per-iteration durations in microseconds.
func median(b *testing.B, d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	if len(d) > 0 {
		b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, "median-µs/op")
	}
}

// BenchmarkLibfido2Info is one go-libfido2 Device.Info call through
// libfido2 and the pty: open (CTAPHID INIT, then getInfo), getInfo, close.
func BenchmarkLibfido2Info(b *testing.B) {
	k := fidotest.Start(b, 3000001)
	dev, err := libfido2.NewDevice(k.Path)
	if err != nil {
		b.Fatal(err)
	}
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := dev.Info(); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(t0))
	}
	median(b, d)
}

// BenchmarkPTYGetInfo is one CTAPHID CBOR message (authenticatorGetInfo)
// round trip through the pseudo-terminal, written and read as libfido2
// does (65-byte reports out, 64-byte reports in), on an open channel.
func BenchmarkPTYGetInfo(b *testing.B) {
	k := fidotest.Start(b, 3000002)
	fd, err := unix.Open(k.Path, unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	xfer := func(cid uint32, cmd byte, data []byte) (byte, []byte) {
		out := make([]byte, 65)
		binary.BigEndian.PutUint32(out[1:], cid)
		out[5] = 0x80 | cmd
		binary.BigEndian.PutUint16(out[6:], uint16(len(data)))
		copy(out[8:], data)
		if _, err := unix.Write(fd, out); err != nil {
			b.Fatal(err)
		}
		in := make([]byte, 64)
		var got []byte
		for {
			if n, err := unix.Read(fd, in); err != nil || n != 64 {
				b.Fatalf("read %d %v", n, err)
			}
			if in[4] == 0x80|0x3b { // keepalive
				continue
			}
			if in[4]&0x80 != 0 {
				cmd := in[4] & 0x7f
				bcnt := int(binary.BigEndian.Uint16(in[5:]))
				got = append(got, in[7:7+min(bcnt, 57)]...)
				for seq := 0; len(got) < bcnt; seq++ {
					if _, err := unix.Read(fd, in); err != nil {
						b.Fatal(err)
					}
					got = append(got, in[5:5+min(bcnt-len(got), 59)]...)
				}
				return cmd, got
			}
		}
	}
	_, init := xfer(0xffffffff, 0x06, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	cid := binary.BigEndian.Uint32(init[8:12])
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if cmd, r := xfer(cid, 0x10, []byte{0x04}); cmd != 0x10 || r[0] != 0 {
			b.Fatalf("getInfo: %02x % x", cmd, r[:1])
		}
		d = append(d, time.Since(t0))
	}
	median(b, d)
}

// BenchmarkInProcessGetInfo is the authenticator's own cost for the same
// message, with no transport.
func BenchmarkInProcessGetInfo(b *testing.B) {
	a, err := ctap.New(virtual.NewKey(virtual.DefaultIdentity(3000003)))
	if err != nil {
		b.Fatal(err)
	}
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if r := a.CBOR(context.Background(), []byte{0x04}, nil); r[0] != 0 {
			b.Fatal("getInfo failed")
		}
		d = append(d, time.Since(t0))
	}
	median(b, d)
}
