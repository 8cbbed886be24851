package pivkey_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/iso7816"
)

// BenchmarkOverhead measures what keydesk adds to a PIV operation above the
// transport round trips it needs. Each iteration runs the operation through
// pivkey, then replays the very APDUs that call sent to the virtual key —
// recorded from the key's own trace — over a bare PC/SC connection opened
// and released the same way (exclusive, one transaction). The two alternate
// so that drift hits both alike; medians are reported, with the overhead in
// percent and the number of round trips.
//
// The replay is the floor for the operation as keydesk performs it: an
// operation that sent needless APDUs would look cheap here, so the round
// trips are reported too and docs/device.md lists what each one is for.
func BenchmarkOverhead(b *testing.B) {
	r := plugB(b)
	ctx := context.Background()
	cb := device.Callbacks{PIN: func(context.Context, string) (string, error) { return defPIN, nil }}
	pub, err := r.card.Generate(ctx, cb, 0x9a, pivkey.KeySpec{Algorithm: "ECCP256", PINPolicy: "once", TouchPolicy: "never"})
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("benchmark challenge"))

	b.Run("Status", func(b *testing.B) {
		op := func() error { _, err := r.card.Status(ctx); return err }
		measure(b, r, op)
	})
	b.Run("Sign", func(b *testing.B) {
		op := func() error { _, err := r.card.Sign(ctx, cb, 0x9a, pub, digest[:]); return err }
		measure(b, r, op)
	})
}

// measure records op's APDUs once, then times op against their replay.
func measure(b *testing.B, r *rig, op func() error) {
	apdus, sws := record(b, r.y.Card, op)
	raw := func() error { return replay(r.card.Reader, apdus, sws) }
	tk := make([]time.Duration, 0, b.N)
	tr := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := raw(); err != nil {
			b.Fatal(err)
		}
		tr = append(tr, time.Since(t1))
		tk = append(tk, t1.Sub(t0))
	}
	mk, mr := medianOf(tk), medianOf(tr)
	b.ReportMetric(float64(mk.Nanoseconds()), "pivkey-median-ns")
	b.ReportMetric(float64(mr.Nanoseconds()), "raw-median-ns")
	b.ReportMetric(100*(float64(mk)-float64(mr))/float64(mr), "overhead-%")
	b.ReportMetric(float64(len(apdus)), "round-trips")
}

// record runs op once and returns the command APDUs the card received and
// the status words it answered. A redacted PIN verification is rebuilt with
// the PIN the benchmark uses.
func record(b *testing.B, card *iso7816.Card, op func() error) ([][]byte, []string) {
	start := time.Now()
	if err := op(); err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	var sws []string
	for _, e := range card.Trace() {
		if e.At.Before(start) {
			continue
		}
		cmd := e.Command
		if head, ok := strings.CutSuffix(cmd, "<redacted>"); ok {
			if !strings.HasPrefix(head, "00200080") {
				b.Fatalf("cannot replay redacted command %s", cmd)
			}
			pin := append([]byte(defPIN), 0xFF, 0xFF)
			cmd = "0020008008" + hex.EncodeToString(pin)
		}
		apdu, err := hex.DecodeString(cmd)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, apdu)
		sws = append(sws, e.Response[len(e.Response)-4:])
	}
	if len(out) == 0 || len(out) >= 64 {
		b.Fatalf("recorded %d APDUs: the trace holds at most 64", len(out))
	}
	return out, sws
}

// replay sends apdus over a fresh exclusive connection in one transaction,
// as pivkey connects, and checks each answer's status word is the one
// recorded.
func replay(reader string, apdus [][]byte, sws []string) error {
	sc, err := scard.EstablishContext()
	if err != nil {
		return err
	}
	defer sc.Release()
	c, err := sc.Connect(reader, scard.ShareExclusive, scard.ProtocolT1)
	if err != nil {
		return err
	}
	defer c.Disconnect(scard.LeaveCard)
	if err := c.BeginTransaction(); err != nil {
		return err
	}
	defer c.EndTransaction(scard.LeaveCard)
	for i, a := range apdus {
		resp, err := c.Transmit(a)
		if err != nil {
			return err
		}
		n := len(resp)
		if n < 2 {
			return fmt.Errorf("replaying % x: answer % x", a, resp)
		}
		sw := hex.EncodeToString(resp[n-2:])
		// Asking for the PIN's state (VERIFY without data) answers 90 00
		// while the PIN stays verified from an earlier call, 63 Cx when not.
		if hex.EncodeToString(a) == "0020008000" && (sw == "9000" || strings.HasPrefix(sw, "63c")) {
			continue
		}
		if sw != sws[i] {
			return fmt.Errorf("replaying % x: answer % x, recorded status %s", a, resp, sws[i])
		}
	}
	return nil
}

func plugB(b *testing.B) *rig {
	return plug(b, 0, virtual.Version{Major: 5, Minor: 7, Patch: 2})
}

func medianOf(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
