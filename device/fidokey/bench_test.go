package fidokey_test

import (
	"context"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	libfido2 "github.com/keys-pub/go-libfido2"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/fidokey/fidoc"
	"github.com/keydesk/keydesk/device/virtual/fidotest"
)

// BenchmarkOverhead measures what keydesk adds to a FIDO2 operation: each
// iteration runs the operation through fidokey and the same libfido2 calls
// directly through go-libfido2 on the same virtual key, alternating so
// drift hits both alike, and reports both times and fidokey's overhead in
// percent. Status is compared with no PIN set (getInfo only, one open
// each); GetAssertion with an allow list and no user verification.
//
// The go-libfido2 calls run under fidoc.Guard, as fidokey's do: unguarded,
// they fail now and then with FIDO_ERR_RX (see fidoc.Guard), which would end
// the benchmark. BenchmarkGuard measures what the guard itself costs.
func BenchmarkOverhead(b *testing.B) {
	k := fidotest.Start(b, 3199999)
	k.Auth.Trace = nil
	dev := fidokey.Open(k.Path)
	direct, err := libfido2.NewDevice(k.Path)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const rpID = "bench.keydesk.example"
	reg, err := dev.MakeCredential(ctx, fidokey.MakeOptions{RPID: rpID, UserID: []byte("u"), UserName: "u", Challenge: []byte("c")}, device.Callbacks{})
	if err != nil {
		b.Fatal(err)
	}

	measure := func(b *testing.B, viaFidokey, viaDirect func() error) {
		tk := make([]time.Duration, 0, b.N)
		td := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if err := viaFidokey(); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := viaDirect(); err != nil {
				b.Fatal(err)
			}
			td = append(td, time.Since(t1))
			tk = append(tk, t1.Sub(t0))
		}
		// Medians: the machine's other load lands on single iterations.
		mk, md := median(tk), median(td)
		b.ReportMetric(float64(mk.Nanoseconds()), "fidokey-median-ns")
		b.ReportMetric(float64(md.Nanoseconds()), "go-libfido2-median-ns")
		b.ReportMetric(100*(float64(mk)-float64(md))/float64(md), "overhead-%")
	}

	b.Run("Status", func(b *testing.B) {
		measure(b, func() error {
			_, err := dev.Status(ctx)
			return err
		}, func() (err error) {
			fidoc.Guard(func() { _, err = direct.Info() })
			return err
		})
	})
	b.Run("GetAssertion", func(b *testing.B) {
		chal := []byte("benchmark challenge")
		ids := [][]byte{reg.CredentialID}
		measure(b, func() error {
			_, err := dev.GetAssertion(ctx, fidokey.AssertOptions{RPID: rpID, Challenge: chal, CredentialIDs: ids}, device.Callbacks{})
			return err
		}, func() (err error) {
			// What a caller of go-libfido2 must do too: hash client data.
			cdj, _ := fidokey.ClientDataJSON("webauthn.get", chal, rpID)
			cdh := sha256.Sum256(cdj)
			fidoc.Guard(func() { _, err = direct.Assertion(rpID, cdh[:], ids, "", nil) })
			return err
		})
	})
}

// BenchmarkGuard is the cost of fidoc.Guard around one libfido2 call
// (thread lock and two pthread_sigmask calls).
func BenchmarkGuard(b *testing.B) {
	for i := 0; i < b.N; i++ {
		fidoc.Guard(func() {})
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
