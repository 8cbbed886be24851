package simulation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/simulation"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

func open(tb testing.TB, backend string) *sqlstore.Store {
	tb.Helper()
	dsn := filepath.Join(tb.TempDir(), "sim.db")
	if backend == "postgres" {
		dsn = pgtest.Database(tb)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	st, err := sqlstore.Open(context.Background(), dsn, sqlstore.Options{Signer: priv})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// check holds a report to the done-when rules of a safe migration.
func check(t testing.TB, rep *simulation.Report, threshold float64) {
	t.Helper()
	for _, p := range rep.Problems() {
		t.Error(p)
	}
	if rep.Threshold != threshold {
		t.Errorf("threshold %g, want %g", rep.Threshold, threshold)
	}
	last := rep.Stages[len(rep.Stages)-1]
	if last.Stage != "complete" || last.Plan != 2 || last.Signals != 0 {
		t.Errorf("last stage %+v", last)
	}
	for _, s := range rep.Stages[1:] {
		if s.Halted || s.Signals != 0 {
			t.Errorf("after the sweep, stage %s had %d failure reports (halted %v)", s.Stage, s.Signals, s.Halted)
		}
	}
	if want := rep.Users - rep.Broken - rep.NoBKey; rep.RollbackUsers != want {
		t.Errorf("rollback moved %d users back, want %d (every user with a working new key)", rep.RollbackUsers, want)
	}
	if rep.SweepFailed != rep.Broken {
		t.Errorf("sweep found %d broken keys of %d", rep.SweepFailed, rep.Broken)
	}
}

// TestSimulate is the short run of the done-when simulation for make test:
// 1,000 users on SQLite (canary 25%) and 500 on PostgreSQL (canary 50%),
// so that each canary cohort has about 250 users and a 1% threshold halts
// at the second affected user; 3% broken new keys, 1% without one. Never a user
// without a valid credential, the canary halts by itself at no more than
// 1% of its cohort affected, the resumed migration completes without a
// failure report, and rollback restores the view from before the
// migration in one version. BenchmarkSimulate100k is the full size.
func TestSimulate(t *testing.T) {
	for _, c := range []struct {
		backend string
		users   int
		canary  float64
		stages  []float64
	}{{"sqlite", 1000, 25, []float64{50, 75}}, {"postgres", 500, 50, []float64{70, 85}}} {
		t.Run(c.backend, func(t *testing.T) {
			st := open(t, c.backend)
			rep, err := simulation.Run(t.Context(), st, simulation.Options{Users: c.users, Broken: 0.03, NoBKey: 0.01, Canary: c.canary, Stages: c.stages, Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			check(t, rep, 0.01)
			if rep.Broken < c.users*3/100-5 || rep.Broken > c.users*3/100+5 {
				t.Errorf("%d broken of %d", rep.Broken, c.users)
			}
			t.Logf("\n%s", simulation.Format(rep))
		})
	}
}

// BenchmarkSimulate100k is the done-when run: 100,000 users, 3% broken, a
// 1% canary, halt threshold 1% (KEYDESK_SIM_USERS overrides the size).
func BenchmarkSimulate100k(b *testing.B) {
	n := 100000
	if v := os.Getenv("KEYDESK_SIM_USERS"); v != "" {
		if n, _ = strconv.Atoi(v); n < 1 {
			b.Fatalf("KEYDESK_SIM_USERS=%q", v)
		}
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			for range b.N {
				st := open(b, backend)
				rep, err := simulation.Run(context.Background(), st, simulation.Options{Users: n, Broken: 0.03, Canary: 1, Seed: 1})
				if err != nil {
					b.Fatal(err)
				}
				check(b, rep, 0.01)
				b.ReportMetric(float64(rep.RollbackTime.Microseconds())/1000, "rollback-ms")
				b.ReportMetric(100*rep.HaltShare, "halt-affected-%")
				b.ReportMetric(float64(rep.MaxLockedOut), "max-locked-out")
				b.Logf("%s", simulation.Format(rep))
			}
		})
	}
}
