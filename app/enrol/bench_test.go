package enrol

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/roster"
)

// BenchmarkBatchEnrol measures keydesk's own time per key in a batch: a
// roster of b.N users with two keys each on practice keys that touch
// themselves, against a real registry process on loopback. The desk has
// two ports; when a fresh key is needed an enrolled one is swapped for a
// factory-fresh one (the admin's hands: not counted). keydesk-ms/key is the
// batch's wall time less the time in device calls (Timing.Device, which
// includes waiting for a swapped key to show up) and less the swaps, per
// key; it includes the registry's round trips.
func BenchmarkBatchEnrol(b *testing.B) {
	d := newDesk(b)
	var csv strings.Builder
	csv.WriteString("external_id,display_name,email,keys\n")
	for i := range b.N {
		fmt.Fprintf(&csv, "b%d,User %d,u%d@example.org,2\n", i, i, i)
	}
	r, err := roster.Parse(strings.NewReader(csv.String()))
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(Config{Settings: d.set, Keys: d.svc, Registry: d.cl, JournalPath: d.data + "/journal.db"})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	var swaps time.Duration
	ui := testUI(nil)
	ui.InsertKey = func(ctx context.Context, _ InsertRequest) error {
		t0 := time.Now()
		defer func() { swaps += time.Since(t0) }()
		for _, y := range d.fleet.Keys {
			if done, _ := e.Finished(ctx, y.Serial()); done {
				_, err := d.fleet.Replace(y.Serial())
				return err
			}
		}
		return fmt.Errorf("no enrolled key to swap")
	}
	b.ResetTimer()
	start := time.Now()
	rep, err := e.Batch(context.Background(), r, "bench", ui)
	total := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	var device time.Duration
	keys := 0
	for _, u := range rep.Users {
		if !u.OK() {
			b.Fatalf("%s", u.Describe())
		}
		for _, k := range u.Keys {
			device += k.Timing.Device
			keys++
		}
	}
	per := func(d time.Duration) float64 { return float64(d) / float64(keys) / 1e6 }
	b.ReportMetric(per(total-device-swaps), "keydesk-ms/key")
	b.ReportMetric(per(device), "device-ms/key")
	b.ReportMetric(float64(keys), "keys")
}
