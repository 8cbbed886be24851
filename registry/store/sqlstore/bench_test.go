package sqlstore_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// benchUsers is the import size (KEYDESK_BENCH_USERS overrides 100,000).
// Each user gets one key with two FIDO2 credentials and one PIV slot: three
// credentials per user.
func benchUsers() int {
	if n, err := strconv.Atoi(os.Getenv("KEYDESK_BENCH_USERS")); err == nil && n > 0 {
		return n
	}
	return 100000
}

const batch = 1000 // users per change set on import

func openBench(b *testing.B, backend string) *sqlstore.Store {
	b.Helper()
	var dsn string
	if backend == "sqlite" {
		dsn = filepath.Join(b.TempDir(), "bench.db")
	} else {
		dsn = pgtest.Database(b)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := sqlstore.Open(context.Background(), dsn, sqlstore.Options{Signer: priv})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

var pubKey = make([]byte, 77)

// importStore imports n users through the store: one change set per 1,000
// users, each with its feed rows, audit entries and a signed checkpoint.
func importStore(b *testing.B, s *sqlstore.Store, n int) {
	for off := 0; off < n; off += batch {
		importStoreBatch(b, s, off, n)
	}
}

// importStoreBatch imports users off up to the next 1,000 (at most n) as
// one change set.
func importStoreBatch(b *testing.B, s *sqlstore.Store, off, n int) {
	_, _, err := s.Write(context.Background(), "bench", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
		for i := off; i < off+batch && i < n; i++ {
			u := registry.User{ExternalID: "u" + strconv.Itoa(i), DisplayName: "User", Email: "u@example.org"}
			if err := tx.CreateUser(&u); err != nil {
				return sqlstore.Result{}, err
			}
			k := registry.Key{Serial: strconv.Itoa(i), OwnerID: u.ID, Status: registry.KeyActive}
			if err := tx.CreateKey(&k); err != nil {
				return sqlstore.Result{}, err
			}
			for j := 0; j < 2; j++ {
				c := registry.FIDOCredential{KeyID: k.ID, CredentialID: []byte(fmt.Sprintf("c%d-%d", i, j)), RPID: "example.org", PublicKey: pubKey}
				if err := tx.AddFIDOCredential(&c); err != nil {
					return sqlstore.Result{}, err
				}
			}
			p := registry.PIVSlot{KeyID: k.ID, Slot: "9a", PublicKey: pubKey}
			if err := tx.AddPIVSlot(&p); err != nil {
				return sqlstore.Result{}, err
			}
		}
		return sqlstore.Result{}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// importRaw inserts the same user, key and credential rows with plain SQL
// (prepared statements, the same 1,000-user transactions), and nothing else.
func importRaw(b *testing.B, s *sqlstore.Store, n int) {
	for off := 0; off < n; off += batch {
		importRawBatch(b, s, off, n)
	}
}

// importRawBatch inserts users off up to the next 1,000 (at most n) in one
// transaction.
func importRawBatch(b *testing.B, s *sqlstore.Store, off, n int) {
	db := s.DB()
	now := time.Now().UnixNano()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	prep := func(q string) *sql.Stmt {
		st, err := tx.Prepare(s.Rebind(q))
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	pu := prep("INSERT INTO users (id, external_id, display_name, email, groups_json, status, version, created_at, updated_at) VALUES (?, ?, ?, ?, '[]', 'active', 1, ?, ?)")
	pk := prep("INSERT INTO keys (id, serial, model, firmware, label, owner_id, role, status, version, created_at, updated_at) VALUES (?, ?, '', '', '', ?, 'primary', 'active', 1, ?, ?)")
	pf := prep("INSERT INTO fido_credentials (id, key_id, credential_id, rp_id, public_key, aaguid, sign_count, cred_protect, verdict, created_at) VALUES (?, ?, ?, 'example.org', ?, ?, 0, 0, 'unknown', ?)")
	pp := prep("INSERT INTO piv_slots (id, key_id, slot, public_key, verdict, created_at) VALUES (?, ?, '9a', ?, 'unknown', ?)")
	for i := off; i < off+batch && i < n; i++ {
		uid, kid := sqlstore.NewID("usr"), sqlstore.NewID("key")
		must(b, exec(pu, uid, "u"+strconv.Itoa(i), "User", "u@example.org", now, now))
		must(b, exec(pk, kid, strconv.Itoa(i), uid, now, now))
		for j := 0; j < 2; j++ {
			must(b, exec(pf, sqlstore.NewID("fc"), kid, []byte(fmt.Sprintf("c%d-%d", i, j)), pubKey, []byte{}, now))
		}
		must(b, exec(pp, sqlstore.NewID("ps"), kid, pubKey, now))
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

func exec(st *sql.Stmt, args ...any) error { _, err := st.Exec(args...); return err }

func must(b *testing.B, err error) {
	if err != nil {
		b.Fatal(err)
	}
}

var benchBackends = []string{"sqlite", "postgres"}

// BenchmarkImport: 100,000 users with 300,000 credentials, through the
// store and as plain SQL, on each backend. The two imports run into two
// databases of the same server, interleaved one 1,000-user transaction at a
// time, so that load from elsewhere on a shared machine falls on both
// alike; each is timed on its own. store-s and raw-s are seconds per
// import, ratio is store-s / raw-s.
func BenchmarkImport(b *testing.B) {
	n := benchUsers()
	for _, be := range benchBackends {
		b.Run(be, func(b *testing.B) {
			var storeT, rawT time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				st, raw := openBench(b, be), openBench(b, be)
				b.StartTimer()
				for off := 0; off < n; off += batch {
					t0 := time.Now()
					importStoreBatch(b, st, off, n)
					t1 := time.Now()
					importRawBatch(b, raw, off, n)
					storeT += t1.Sub(t0)
					rawT += time.Since(t1)
				}
			}
			per := func(d time.Duration) float64 { return d.Seconds() / float64(b.N) }
			b.ReportMetric(per(storeT), "store-s")
			b.ReportMetric(per(rawT), "raw-s")
			b.ReportMetric(storeT.Seconds()/rawT.Seconds(), "ratio")
			b.ReportMetric(float64(n)/per(storeT), "store-users/s")
			b.ReportMetric(float64(3*n)/per(storeT), "store-credentials/s")
			b.ReportMetric(float64(n)/per(rawT), "raw-users/s")
		})
	}
}

// benchDirs are removed by TestMain.
var benchDirs []string

// loaded is one imported registry per backend shared by the read benchmarks.
var loaded = map[string]*sqlstore.Store{}

func loadedStore(b *testing.B, be string) *sqlstore.Store {
	if s, ok := loaded[be]; ok {
		return s
	}
	var dsn string
	if be == "sqlite" {
		d, _ := os.MkdirTemp("", "keydesk-bench-")
		benchDirs = append(benchDirs, d)
		dsn = filepath.Join(d, "bench.db")
	} else {
		srv, err := pgtest.Shared()
		if err != nil {
			b.Skip(err)
		}
		if dsn, err = srv.NewDatabase(); err != nil {
			b.Fatal(err)
		}
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := sqlstore.Open(context.Background(), dsn, sqlstore.Options{Signer: priv})
	if err != nil {
		b.Fatal(err)
	}
	importStore(b, s, benchUsers())
	loaded[be] = s
	return s
}

// BenchmarkSync: a full sync of the feed (every change set, pages of
// 10,000) and an incremental sync of the last 1,000 changes, through the
// store and as the same SELECT in plain SQL.
func BenchmarkSync(b *testing.B) {
	for _, be := range benchBackends {
		s := loadedStore(b, be)
		_, head, err := s.Changes(context.Background(), 0, 1)
		if err != nil {
			b.Fatal(err)
		}
		// 1,000 single-change sets at the head: key status changes.
		var cursor int64
		cursor = head
		ks, _ := s.ListUsers(context.Background(), "", 1000)
		for _, u := range ks {
			keys, _ := s.KeysOfUser(context.Background(), u.ID)
			if _, _, err := s.Write(context.Background(), "bench", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
				_, err := tx.SetKeyStatus(keys[0].ID, keys[0].Version, registry.KeySuspended, "bench")
				return sqlstore.Result{}, err
			}); err != nil {
				b.Fatal(err)
			}
		}
		full := func(b *testing.B, raw bool) int {
			var after int64
			total := 0
			for {
				var page []registry.Change
				var err error
				if raw {
					page, err = rawChanges(s, after, 10000)
				} else {
					page, _, err = s.Changes(context.Background(), after, 10000)
				}
				if err != nil {
					b.Fatal(err)
				}
				if len(page) == 0 {
					return total
				}
				total += len(page)
				after = page[len(page)-1].Seq
			}
		}
		for _, mode := range []string{"store", "raw"} {
			raw := mode == "raw"
			b.Run(be+"/full/"+mode, func(b *testing.B) {
				n := 0
				for i := 0; i < b.N; i++ {
					n = full(b, raw)
				}
				b.ReportMetric(float64(n), "changes")
				b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/sync")
			})
			b.Run(be+"/incremental1000/"+mode, func(b *testing.B) {
				n := 0
				for i := 0; i < b.N; i++ {
					var page []registry.Change
					var err error
					if raw {
						page, err = rawChanges(s, cursor, 10000)
					} else {
						page, _, err = s.Changes(context.Background(), cursor, 10000)
					}
					if err != nil {
						b.Fatal(err)
					}
					n = len(page)
				}
				if n != 1000 {
					b.Fatalf("incremental sync returned %d changes", n)
				}
				b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/sync")
			})
		}
	}
}

func rawChanges(s *sqlstore.Store, after int64, limit int) ([]registry.Change, error) {
	rows, err := s.DB().Query(s.Rebind("SELECT seq, idx, entity, entity_id, op, data FROM changes WHERE seq > ? ORDER BY seq, idx LIMIT ?"), after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []registry.Change
	for rows.Next() {
		var c registry.Change
		var d string
		if err := rows.Scan(&c.Seq, &c.Index, &c.Entity, &c.EntityID, &c.Op, &d); err != nil {
			return nil, err
		}
		c.Data = []byte(d)
		out = append(out, c)
	}
	return out, rows.Err()
}

// BenchmarkValidity: the validity view for everyone, through the store (one
// snapshot with its version) and as the same query in plain SQL.
func BenchmarkValidity(b *testing.B) {
	for _, be := range benchBackends {
		s := loadedStore(b, be)
		b.Run(be+"/store", func(b *testing.B) {
			n := 0
			for i := 0; i < b.N; i++ {
				v, err := s.Validity(context.Background(), "")
				if err != nil {
					b.Fatal(err)
				}
				n = len(v.Credentials)
			}
			b.ReportMetric(float64(n), "credentials")
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/view")
		})
		b.Run(be+"/raw", func(b *testing.B) {
			n := 0
			for i := 0; i < b.N; i++ {
				rows, err := s.DB().Query(sqlstore.ValidityQuery)
				if err != nil {
					b.Fatal(err)
				}
				n = 0
				for rows.Next() {
					var c registry.ValidCredential
					if err := rows.Scan(&c.UserID, &c.ExternalID, &c.KeyID, &c.Serial, &c.Kind, &c.CredentialID, &c.RPID, &c.Slot, &c.PublicKey); err != nil {
						b.Fatal(err)
					}
					n++
				}
				rows.Close()
			}
			b.ReportMetric(float64(n), "credentials")
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/view")
		})
	}
}
