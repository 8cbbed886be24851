package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/server"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// fakeClock is a clock the test moves by hand, shared by store and server.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestJanitorExpiresRows: idempotency rows, expired challenges and ended
// rate-limit windows are removed once older than their TTL, and not before.
func TestJanitorExpiresRows(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	st, err := sqlstore.Open(t.Context(), filepath.Join(t.TempDir(), "r.db"), sqlstore.Options{Signer: priv, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const tok = "kdr_janitor-test"
	var keyID, slotID string
	if _, _, err := st.Write(t.Context(), "test", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
		if err := tx.CreateToken(server.HashToken(tok), "janitor", "admin", ""); err != nil {
			return sqlstore.Result{}, err
		}
		u := registry.User{ExternalID: "u"}
		if err := tx.CreateUser(&u); err != nil {
			return sqlstore.Result{}, err
		}
		k := registry.Key{Serial: "1", OwnerID: u.ID}
		if err := tx.CreateKey(&k); err != nil {
			return sqlstore.Result{}, err
		}
		p := registry.PIVSlot{KeyID: k.ID, Slot: "9a", PublicKey: pkixDER(&p256.PublicKey)}
		keyID = k.ID
		err := tx.AddPIVSlot(&p)
		slotID = p.ID
		return sqlstore.Result{}, err
	}); err != nil {
		t.Fatal(err)
	}
	srv := server.New(st, server.Options{Now: clk.Now, IdempotencyTTL: 24 * time.Hour, AuthFailures: 3, AuthWindow: time.Minute, ChallengeTTL: 2 * time.Minute})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	post := func(tok, path, idem, body string) int {
		req, _ := http.NewRequest("POST", ts.URL+path, bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Idempotency-Key", idem)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	count := func(table string) int {
		var n int
		if err := st.DB().QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if s := post(tok, "/v1/users", "old", `{"external_id":"a"}`); s != 201 {
		t.Fatalf("create user: %d", s)
	}
	// A used challenge leaves a row until it expires.
	ch := postJSON(t, ts.URL+"/v1/challenges", tok, "", map[string]any{"key_id": keyID, "kind": "piv", "credential_id": slotID})["challenge"].(map[string]any)
	nonce, _ := base64.StdEncoding.DecodeString(ch["nonce"].(string))
	h := sha256.Sum256(nonce)
	sig, _ := ecdsa.SignASN1(rand.Reader, p256, h[:])
	if v := postJSON(t, ts.URL+"/v1/verifications", tok, "ver", map[string]any{"challenge_id": ch["id"], "piv": map[string]any{"signature": sig}}); v["ok"] != true {
		t.Fatalf("verification: %v", v)
	}
	for i := 0; i < 3; i++ {
		post("wrong", "/v1/users", "x", `{}`)
	}
	if s := post(tok, "/v1/users", "y", `{"external_id":"b"}`); s != 429 {
		t.Fatalf("locked out address: %d", s)
	}
	clk.Add(23 * time.Hour)
	if s := post(tok, "/v1/users", "new", `{"external_id":"c"}`); s != 201 {
		t.Fatalf("create user: %d", s)
	}
	// 23 h later: the challenge (2 min) and the rate-limit window (1 min)
	// have ended; no idempotency row is 24 h old yet.
	sw, err := srv.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sw.Idempotency != 0 || sw.Challenges != 1 || sw.AuthWindows != 1 || count("idempotency") != 3 || count("challenges") != 0 {
		t.Fatalf("after 23 h: %+v, %d idempotency rows", sw, count("idempotency"))
	}
	clk.Add(2 * time.Hour)
	sw, err = srv.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The first user's and the verification's rows are over 24 h old; the
	// write 2 h ago is kept and still replays.
	if sw.Idempotency != 2 || count("idempotency") != 1 {
		t.Fatalf("after 25 h: %+v, %d idempotency rows", sw, count("idempotency"))
	}
	if s := post(tok, "/v1/users", "new", `{"external_id":"c"}`); s != 201 {
		t.Fatalf("replay of a kept key: %d", s)
	}
	if n := count("users"); n != 3 {
		t.Fatalf("%d users", n)
	}
}

func postJSON(t *testing.T, url, tok, idem string, body any) map[string]any {
	t.Helper()
	j, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(j))
	req.Header.Set("Authorization", "Bearer "+tok)
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 201 {
		t.Fatalf("%s: %d %v %v", url, res.StatusCode, out, err)
	}
	return out
}
