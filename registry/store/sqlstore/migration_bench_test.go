package sqlstore_test

import (
	"context"
	"fmt"
	"github.com/keydesk/keydesk/internal/cpuclock"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// fillMigration writes n users straight in SQL (generated rows, no feed or
// audit: the fixture is not what is measured). Each user has an active key
// in set A with two FIDO2 credentials, and a key in set B with a FIDO2
// credential and a PIV slot: four credentials per user. The B key passed a
// verification 0-59 days ago (rows in verifications and key_health);
// every 50th is lost and every 40th last failed a verification.
func fillMigration(tb testing.TB, s *sqlstore.Store, n int) {
	tb.Helper()
	now := time.Now().UnixNano()
	day := int64(24 * time.Hour)
	series, from := fmt.Sprintf("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < %d) ", n-1), "n"
	blob := func(e string) string { return "CAST(" + e + " AS BLOB)" }
	one := "x'01'"
	if s.Dialect() == sqlstore.Postgres {
		series, from = "", fmt.Sprintf("generate_series(0, %d) AS n(i)", n-1)
		blob = func(e string) string { return "convert_to(" + e + ", 'UTF8')" }
		one = "'\\x01'::bytea"
	}
	stmts := []string{
		fmt.Sprintf("INSERT INTO key_sets (name, description, created_at) VALUES ('%s', '', %d), ('%s', '', %d)", setA, now, setB, now),
		"INSERT INTO users (id, external_id, display_name, email, groups_json, status, version, created_at, updated_at) {series}SELECT 'usr_' || i, 'ext' || i, 'User', 'u' || i || '@example.org', '[]', 'active', 1, {now}, {now} FROM {from}",
		"INSERT INTO keys (id, serial, model, firmware, label, owner_id, role, status, version, created_at, updated_at) {series}SELECT 'ka_' || i, 'A' || i, '', '', '', 'usr_' || i, 'primary', 'active', 1, {now}, {now} FROM {from}",
		"INSERT INTO keys (id, serial, model, firmware, label, owner_id, role, status, version, created_at, updated_at) {series}SELECT 'kb_' || i, 'B' || i, '', '', '', 'usr_' || i, 'primary', CASE WHEN i % 50 = 0 THEN 'lost' ELSE 'active' END, 1, {now}, {now} FROM {from}",
		"INSERT INTO key_set_members (set_name, key_id) {series}SELECT '" + setA + "', 'ka_' || i FROM {from}",
		"INSERT INTO key_set_members (set_name, key_id) {series}SELECT '" + setB + "', 'kb_' || i FROM {from}",
		"INSERT INTO fido_credentials (id, key_id, credential_id, rp_id, public_key, aaguid, sign_count, cred_protect, verdict, created_at) {series}SELECT 'fa1_' || i, 'ka_' || i, " + blob("'fa1_' || i") + ", 'example.org', " + one + ", " + one + ", 0, 2, 'unknown', {now} FROM {from}",
		"INSERT INTO fido_credentials (id, key_id, credential_id, rp_id, public_key, aaguid, sign_count, cred_protect, verdict, created_at) {series}SELECT 'fa2_' || i, 'ka_' || i, " + blob("'fa2_' || i") + ", 'example.org', " + one + ", " + one + ", 0, 2, 'unknown', {now} FROM {from}",
		"INSERT INTO fido_credentials (id, key_id, credential_id, rp_id, public_key, aaguid, sign_count, cred_protect, verdict, created_at) {series}SELECT 'fb_' || i, 'kb_' || i, " + blob("'fb_' || i") + ", 'example.org', " + one + ", " + one + ", 0, 2, 'unknown', {now} FROM {from}",
		"INSERT INTO piv_slots (id, key_id, slot, public_key, verdict, created_at) {series}SELECT 'pb_' || i, 'kb_' || i, '9a', " + one + ", 'unknown', {now} FROM {from}",
		"INSERT INTO verifications (id, challenge_id, key_id, kind, credential_id, ok, reason, clone_suspected, at) {series}SELECT 'v_' || i, 'ch', 'kb_' || i, 'fido2', 'fb_' || i, CASE WHEN i % 40 = 0 THEN 0 ELSE 1 END, '', 0, {now} - (i % 60) * {day} FROM {from}",
		"INSERT INTO key_health (key_id, last_ok_at, last_fail_at, last_signal_at, last_pin_at) {series}SELECT 'kb_' || i, {now} - (i % 60) * {day} - 1, CASE WHEN i % 40 = 0 THEN {now} ELSE 0 END, 0, 0 FROM {from}",
		"ANALYZE",
	}
	r := strings.NewReplacer("{series}", series, "{from}", from, "{now}", strconv.FormatInt(now, 10), "{day}", strconv.FormatInt(day, 10))
	for _, q := range stmts {
		q = r.Replace(q)
		if _, err := s.DB().Exec(q); err != nil {
			tb.Fatalf("%v\n%s", err, q)
		}
	}
}

func migrationUsers(def int) int {
	if n, err := strconv.Atoi(os.Getenv("KEYDESK_BENCH_MIGRATION_USERS")); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkReadiness: the readiness report for every user of a plan over
// 1,000,000 credentials (250,000 users × 4; KEYDESK_BENCH_MIGRATION_USERS
// overrides the user count). Target: under 2 s on both databases.
func BenchmarkReadiness(b *testing.B) {
	n := migrationUsers(250000)
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			s := openBench(b, backend)
			fillMigration(b, s, n)
			m := &registry.Migration{From: setA, To: setB, Scope: registry.Cohort{All: true}, Canary: registry.Cohort{Percent: 1}, Stages: []float64{10, 50},
				Policy: registry.MigrationPolicy{MaxVerificationAgeDays: 30}}
			if _, _, err := s.Write(context.Background(), "bench", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) { return sqlstore.Result{}, tx.CreateMigration(m) }); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var rd registry.Readiness
			cpu0, tree0 := cpuclock.Self(), cpuclock.Tree()
			for range b.N {
				var err error
				if rd, err = s.Readiness(context.Background(), m.ID); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// CPU spent per report: by this process (on SQLite all of the
			// work, on PostgreSQL the client's share) and by it with the
			// PostgreSQL server it started. On a shared machine these move
			// far less than the wall time.
			b.ReportMetric(float64((cpuclock.Self()-cpu0).Milliseconds())/float64(b.N), "process-cpu-ms/op")
			b.ReportMetric(float64((cpuclock.Tree()-tree0).Milliseconds())/float64(b.N), "tree-cpu-ms/op")
			ready := 0
			for _, u := range rd.Users {
				if u.Ready {
					ready++
				}
			}
			if len(rd.Users) != n || ready == 0 || ready == n {
				b.Fatalf("readiness of %d users, %d ready", len(rd.Users), ready)
			}
			b.ReportMetric(float64(4*n), "credentials")
			b.ReportMetric(float64(ready), "ready")
		})
	}
}

// BenchmarkRollback: rolling back a complete migration of every user
// (100,000 by default) in one change set. Target: under 1 s.
func BenchmarkRollback(b *testing.B) {
	n := migrationUsers(100000)
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			s := openBench(b, backend)
			fillMigration(b, s, n)
			ctx := context.Background()
			write := func(fn func(tx *sqlstore.Tx) error) {
				if _, _, err := s.Write(ctx, "bench", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) { return sqlstore.Result{}, fn(tx) }); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			b.StopTimer()
			reverted := 0
			var cpu, tree time.Duration
			for range b.N {
				m := &registry.Migration{From: setA, To: setB, Scope: registry.Cohort{All: true}, Canary: registry.Cohort{Percent: 1}}
				write(func(tx *sqlstore.Tx) error { return tx.CreateMigration(m) })
				for _, to := range []registry.MigrationState{registry.MigrationDryRun, registry.MigrationCanary, registry.MigrationComplete} {
					write(func(tx *sqlstore.Tx) error { _, _, _, err := tx.AdvanceMigration(m.ID, to, 0, false); return err })
				}
				v0, err := s.Validity(ctx, "usr_1")
				if err != nil {
					b.Fatal(err)
				}
				cpu0, tree0 := cpuclock.Self(), cpuclock.Tree()
				b.StartTimer()
				write(func(tx *sqlstore.Tx) error {
					_, users, err := tx.RollbackMigration(m.ID, "bench")
					reverted = len(users)
					return err
				})
				b.StopTimer()
				cpu += cpuclock.Self() - cpu0
				tree += cpuclock.Tree() - tree0
				v1, err := s.Validity(ctx, "usr_1")
				if err != nil || v1.Version != v0.Version+1 || len(v1.Credentials) != 4 {
					b.Fatalf("after rollback: %+v %v", v1, err)
				}
			}
			b.ReportMetric(float64(reverted), "users-reverted")
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "process-cpu-ms/op")
			b.ReportMetric(float64(tree.Milliseconds())/float64(b.N), "tree-cpu-ms/op")
		})
	}
}
