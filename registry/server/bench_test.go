package server_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/server"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

var benchWorkers = 32

func benchStore(b *testing.B, be string) *sqlstore.Store {
	var dsn string
	if be == "sqlite" {
		dsn = filepath.Join(b.TempDir(), "r.db")
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

func percentiles(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	at := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.95), "p95-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkVerification: full verifications (POST /v1/challenges, sign with
// the PIV P-256 key, POST /v1/verifications) over HTTP on loopback with 32
// concurrent clients, beside the raw database writing the same rows
// (challenge insert, challenge consume, verification insert) in plain SQL.
func BenchmarkVerification(b *testing.B) {
	for _, be := range []string{"sqlite", "postgres"} {
		b.Run(be+"/api", func(b *testing.B) {
			st := benchStore(b, be)
			tok := "bench-token"
			key := ecdsaKey()
			var keyID, slotID string
			_, _, err := st.Write(context.Background(), "bench", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
				if err := tx.CreateToken(server.HashToken(tok), "bench", "admin", ""); err != nil {
					return sqlstore.Result{}, err
				}
				u := registry.User{ExternalID: "bench"}
				if err := tx.CreateUser(&u); err != nil {
					return sqlstore.Result{}, err
				}
				k := registry.Key{Serial: "1", OwnerID: u.ID, Status: registry.KeyActive}
				if err := tx.CreateKey(&k); err != nil {
					return sqlstore.Result{}, err
				}
				p := registry.PIVSlot{KeyID: k.ID, Slot: "9a", PublicKey: pkixDER(&key.PublicKey)}
				keyID, slotID = k.ID, p.ID
				err := tx.AddPIVSlot(&p)
				slotID = p.ID
				return sqlstore.Result{}, err
			})
			if err != nil {
				b.Fatal(err)
			}
			ts := httptest.NewServer(server.New(st, server.Options{AuthFailures: 1 << 30}))
			defer ts.Close()
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchWorkers}}
			var seq atomic.Int64
			post := func(path string, body any) map[string]any {
				j, _ := json.Marshal(body)
				req, _ := http.NewRequest("POST", ts.URL+path, bytes.NewReader(j))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Idempotency-Key", fmt.Sprint(seq.Add(1)))
				res, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return nil
				}
				defer res.Body.Close()
				var out map[string]any
				json.NewDecoder(res.Body).Decode(&out)
				if res.StatusCode != 201 {
					b.Errorf("%s: %d %v", path, res.StatusCode, out)
				}
				return out
			}
			one := func() {
				c := post("/v1/challenges", map[string]any{"key_id": keyID, "kind": "piv", "credential_id": slotID})
				if c == nil {
					return
				}
				ch := c["challenge"].(map[string]any)
				var nonce []byte
				json.Unmarshal([]byte(`"`+ch["nonce"].(string)+`"`), &nonce)
				h := sha256.Sum256(nonce)
				sig, _ := key.Sign(rand.Reader, h[:], crypto.SHA256)
				v := post("/v1/verifications", map[string]any{"challenge_id": ch["id"], "piv": map[string]any{"signature": sig}})
				if v != nil && v["ok"] != true {
					b.Errorf("verification failed: %v", v)
				}
			}
			runConcurrent(b, one)
		})
		b.Run(be+"/raw", func(b *testing.B) {
			st := benchStore(b, be)
			db := st.DB()
			_, _, err := st.Write(context.Background(), "bench", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
				u := registry.User{ExternalID: "bench"}
				if err := tx.CreateUser(&u); err != nil {
					return sqlstore.Result{}, err
				}
				k := registry.Key{ID: "", Serial: "1", OwnerID: u.ID, Status: registry.KeyActive}
				err := tx.CreateKey(&k)
				rawKey = k.ID
				return sqlstore.Result{}, err
			})
			if err != nil {
				b.Fatal(err)
			}
			one := func() {
				// The rows a verification writes: the used challenge and
				// the verification, in one transaction.
				id := sqlstore.NewID("ch")
				exp := time.Now().Add(time.Minute).UnixNano()
				tx, err := db.Begin()
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := tx.Exec(st.Rebind("INSERT INTO challenges (id, key_id, kind, credential_id, nonce, expires_at, used) VALUES (?, ?, 'piv', 'x', ?, ?, 1)"), id, rawKey, make([]byte, 32), exp); err != nil {
					b.Error(err)
				}
				if _, err := tx.Exec(st.Rebind("INSERT INTO verifications (id, challenge_id, key_id, kind, credential_id, ok, reason, clone_suspected, at) VALUES (?, ?, ?, 'piv', 'x', 1, '', 0, ?)"), sqlstore.NewID("ver"), id, rawKey, exp); err != nil {
					b.Error(err)
				}
				if err := tx.Commit(); err != nil {
					b.Error(err)
				}
			}
			runConcurrent(b, one)
		})
	}
}

var rawKey string

func ecdsaKey() *ecdsa.PrivateKey { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }

func runConcurrent(b *testing.B, one func()) {
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < benchWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				one()
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "verifications/s")
	percentiles(b, lat)
}
