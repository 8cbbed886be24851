package server_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/regtest"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// TestSecretsAtRestAndInLogs drives a real registry process through writes,
// reads, failed authentications and an access pass, then reads what it left
// behind: its log (stdout and stderr) holds no token and no pass; the
// database files hold no token, only SHA-256 hashes of each; the access
// pass table holds the pass's hash, not the pass. (Every other registry
// process of this test binary is scanned for every token at exit by
// regtest.RunTests.)
func TestSecretsAtRestAndInLogs(t *testing.T) {
	r := start(t, "--janitor-interval", "100ms")
	var wrong [32]byte
	rand.Read(wrong[:])
	bad := "kdr_" + base64.RawURLEncoding.EncodeToString(wrong[:])
	regtest.Secret(bad)
	for range 3 {
		if res := r.do(bad, "GET", "/v1/users", nil); res.status != 401 {
			t.Fatalf("unknown token: %d", res.status)
		}
	}
	pass := r.must(r.do(r.helpdesk, "POST", "/v1/users/"+r.userB+"/access-passes", map[string]any{"reason": "left at home", "validity": "1h"}), 201)["pass"].(string)
	regtest.Secret(pass)
	r.must(r.do(r.admin, "POST", "/v1/users", map[string]any{"external_id": "log-scan"}), 201)
	r.must(r.do(r.selfA, "GET", "/v1/users/"+r.userA+"/keys", nil), 200)
	r.must(r.do(r.authserver, "GET", "/v1/validity", nil), 200)
	r.do(r.selfA, "GET", "/v1/users", nil) // 403
	r.must(r.do(r.helpdesk, "POST", "/v1/access-passes/redeem", map[string]any{"pass": pass}), 200)
	r.p.Stop()

	tokens := map[string]string{"admin": r.admin, "helpdesk": r.helpdesk, "self": r.selfA, "authserver": r.authserver, "unknown": bad}
	log := r.p.Log()
	if !strings.Contains(log, "listening on") {
		t.Fatalf("the process log was not captured: %q", log)
	}
	for who, tok := range tokens {
		if strings.Contains(log, tok) {
			t.Errorf("the registry logged the %s token", who)
		}
	}
	if strings.Contains(log, pass) {
		t.Error("the registry logged an access pass")
	}

	// At rest: the raw bytes of the database and its journal files.
	files, _ := filepath.Glob(filepath.Join(r.p.State, "registry.db*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for who, tok := range tokens {
			secret, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, "kdr_"))
			if bytes.Contains(b, []byte(tok)) || bytes.Contains(b, secret) {
				t.Errorf("%s holds the %s token", filepath.Base(f), who)
			}
		}
	}
	st, err := sqlstore.Open(t.Context(), filepath.Join(r.p.State, "registry.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stored := map[string]string{}
	rows, err := st.DB().Query("SELECT hash, name FROM tokens")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h []byte
		var name string
		if err := rows.Scan(&h, &name); err != nil {
			t.Fatal(err)
		}
		stored[string(h)] = name
	}
	rows.Close()
	for who, tok := range map[string]string{"admin": r.admin, "helpdesk": r.helpdesk, "self": r.selfA, "authserver": r.authserver} {
		h := sha256.Sum256([]byte(tok))
		if _, ok := stored[string(h[:])]; !ok {
			t.Errorf("the %s token is not stored as its SHA-256", who)
		}
	}
	var passHash []byte
	if err := st.DB().QueryRow("SELECT pass_hash FROM access_passes WHERE user_id = ?", r.userB).Scan(&passHash); err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256([]byte(pass)); !bytes.Equal(passHash, h[:]) {
		t.Error("the access pass is not stored as its SHA-256")
	}
}
