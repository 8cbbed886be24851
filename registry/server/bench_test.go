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
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keydesk/keydesk/internal/cpuclock"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/regtest"
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

// BenchmarkVerification: full verifications over HTTP on loopback with 32
// concurrent clients in this process, beside the raw database writing the
// same rows (the used challenge and the verification) in plain SQL. One
// verification is a challenge (POST /v1/challenges), a signature by the PIV
// P-256 key, and POST /v1/verifications. "api" asks for one challenge per
// verification; "api-batch" asks for 32 at a time (count), so a
// verification costs one request and a thirty-second of another.
func BenchmarkVerification(b *testing.B) {
	for _, be := range []string{"sqlite", "postgres"} {
		for _, batch := range []int{1, 32} {
			name := be + "/api"
			if batch > 1 {
				name += "-batch"
			}
			b.Run(name, func(b *testing.B) { benchAPIVerification(b, be, batch) })
		}
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
			runConcurrent(b, func() func() { return one })
		})
	}
}

// benchAPIVerification measures verifications through the API, asking for
// batch challenges at a time.
func benchAPIVerification(b *testing.B, be string, batch int) {
	// The server runs with the collector target keydesk-registry serve sets.
	defer server.TuneGC()()
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
		err := tx.AddPIVSlot(&p)
		keyID, slotID = k.ID, p.ID
		return sqlstore.Result{}, err
	})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(server.New(st, server.Options{AuthFailures: 1 << 30}))
	defer ts.Close()
	if be == "postgres" {
		pgStatReset(st.DB())
		defer func() { pgStatDump(st.DB(), b.N) }()
	}
	verifyLoad(b, ts.URL, tok, &http.Transport{}, key, keyID, slotID, batch)
}

// verifyLoad runs b.N verifications of the PIV slot slotID of key keyID
// (whose private key is key) against the registry at url with benchWorkers
// clients, each asking for batch challenges at a time.
func verifyLoad(b *testing.B, url, tok string, tr *http.Transport, key *ecdsa.PrivateKey, keyID, slotID string, batch int) {
	// Keep-alive: every client keeps its connection.
	tr.MaxIdleConnsPerHost = benchWorkers
	hc := &http.Client{Transport: tr}
	var seq atomic.Int64
	post := func(path string, body, out any) bool {
		j, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", url+path, bytes.NewReader(j))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Idempotency-Key", strconv.FormatInt(seq.Add(1), 10))
		res, err := hc.Do(req)
		if err != nil {
			b.Error(err)
			return false
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode != 201 {
			b.Errorf("%s: %d %s", path, res.StatusCode, raw)
			return false
		}
		if err := json.Unmarshal(raw, out); err != nil {
			b.Errorf("%s: %v", path, err)
			return false
		}
		return true
	}
	type challenge struct {
		ID    string `json:"id"`
		Nonce []byte `json:"nonce"`
	}
	ask := map[string]any{"key_id": keyID, "kind": "piv", "credential_id": slotID}
	if batch > 1 {
		ask["count"] = batch
	}
	type pivSig struct {
		Signature []byte `json:"signature"`
	}
	type verifyIn struct {
		ChallengeID string `json:"challenge_id"`
		PIV         pivSig `json:"piv"`
	}
	runConcurrent(b, func() func() {
		var ready []challenge // this client's unused challenges
		return func() {
			if len(ready) == 0 {
				var c struct {
					Challenge  challenge   `json:"challenge"`
					Challenges []challenge `json:"challenges"`
				}
				if !post("/v1/challenges", ask, &c) {
					return
				}
				ready = append(ready, c.Challenge)
				if batch > 1 {
					ready = c.Challenges
				}
			}
			ch := ready[0]
			ready = ready[1:]
			h := sha256.Sum256(ch.Nonce)
			sig, _ := key.Sign(rand.Reader, h[:], crypto.SHA256)
			var v struct {
				OK bool `json:"ok"`
			}
			if post("/v1/verifications", verifyIn{ch.ID, pivSig{sig}}, &v) && !v.OK {
				b.Errorf("verification failed")
			}
		}
	})
}

var rawKey string

func ecdsaKey() *ecdsa.PrivateKey { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }

// runConcurrent runs b.N calls over benchWorkers clients, each running the
// function that client() returned for it.
func runConcurrent(b *testing.B, client func() func()) {
	var mu sync.Mutex
	lat := make([]time.Duration, 0, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0, self0 := cpuclock.Tree(), cpuclock.Self()
	start := time.Now()
	for w := 0; w < benchWorkers; w++ {
		wg.Add(1)
		one := client()
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
	// Reading /proc costs this process CPU too: what the last reading
	// cost is not counted.
	selfEnd := cpuclock.Self()
	tree := cpuclock.Tree()
	scan := cpuclock.Self() - selfEnd
	cpu, self := tree-cpu0-scan, selfEnd-self0
	b.ReportMetric(float64(b.N)/el.Seconds(), "verifications/s")
	// CPU per verification, client, server and database together: 2 CPUs
	// divided by it bounds the rate this machine reaches when idle.
	b.ReportMetric(cpu.Seconds()*1000/float64(b.N), "cpu-ms/verification")
	b.ReportMetric(self.Seconds()*1000/float64(b.N), "go-cpu-ms/verification")
	percentiles(b, lat)
}

// BenchmarkVerificationProcess: the same load as BenchmarkVerification
// against keydesk-registry itself, as deployed: the built binary in its
// own process (`serve`, with its own collector setting), TLS with its
// self-signed certificate, PostgreSQL. The clients trust that certificate
// and keep their TLS connections.
func BenchmarkVerificationProcess(b *testing.B) {
	for _, batch := range []int{1, 32} {
		name := "postgres-tls/api"
		if batch > 1 {
			name += "-batch"
		}
		b.Run(name, func(b *testing.B) { benchProcessVerification(b, batch) })
	}
}

func benchProcessVerification(b *testing.B, batch int) {
	state := b.TempDir()
	dsn := pgtest.Database(b)
	out, err := exec.Command(bin, "token", "create", "--state", state, "--db", dsn, "--role", "admin", "--name", "bench").Output()
	if err != nil {
		b.Fatalf("token create: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	p, err := regtest.StartArgs(bin, state, "serve", "--listen", "127.0.0.1:0", "--state", state, "--db", dsn, "--auth-failures", "1000000")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Stop)
	pemCert, err := os.ReadFile(filepath.Join(state, "tls-cert.pem"))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCert) {
		b.Fatal("no certificate in tls-cert.pem")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}

	// One user with one key whose PIV 9a slot holds key's public half,
	// enrolled through the API and made active by its first verification.
	key := ecdsaKey()
	hc := &http.Client{Transport: tr}
	call := func(path string, body, into any) {
		j, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", p.URL+path, bytes.NewReader(j))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Idempotency-Key", "setup-"+path+strconv.FormatInt(time.Now().UnixNano(), 10))
		res, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode != 201 {
			b.Fatalf("%s: %d %s", path, res.StatusCode, raw)
		}
		if err := json.Unmarshal(raw, into); err != nil {
			b.Fatal(err)
		}
	}
	var enrolled struct {
		Key struct {
			ID string `json:"id"`
		} `json:"key"`
		PIV []struct {
			ID string `json:"id"`
		} `json:"piv"`
	}
	call("/v1/enrolments", map[string]any{
		"user": map[string]any{"external_id": "bench", "display_name": "Bench"},
		"key":  map[string]any{"serial": "1"},
		"piv":  []any{map[string]any{"slot": "9a", "public_key": pkixDER(&key.PublicKey)}},
	}, &enrolled)
	if len(enrolled.PIV) != 1 {
		b.Fatalf("enrolment returned %d PIV slots", len(enrolled.PIV))
	}
	verifyLoad(b, p.URL, tok, tr, key, enrolled.Key.ID, enrolled.PIV[0].ID, batch)
}
