package client_test

import (
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

// TestRegistryTLSSuites starts the real keydesk-registry over TLS (its
// self-signed certificate) and connects with clients offering one kind of
// cipher suite each: TLS 1.2 with only CBC (SHA-1 and SHA-256) suites is
// refused; TLS 1.2 with an ECDHE AEAD suite and TLS 1.3 are accepted.
func TestRegistryTLSSuites(t *testing.T) {
	state := t.TempDir()
	p, err := regtest.StartArgs(bin, state, "serve", "--listen", "127.0.0.1:0", "--state", state)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	u, err := url.Parse(p.URL)
	if err != nil || u.Scheme != "https" {
		t.Fatalf("registry URL %q (%v), want https", p.URL, err)
	}
	dial := func(cfg *tls.Config) (*tls.ConnectionState, error) {
		cfg.InsecureSkipVerify = true // the registry's own self-signed certificate
		c, err := tls.Dial("tcp", u.Host, cfg)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		st := c.ConnectionState()
		return &st, nil
	}
	cbc := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	}
	if st, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbc}); err == nil {
		t.Fatalf("a TLS 1.2 client offering only CBC suites was accepted with %s", tls.CipherSuiteName(st.CipherSuite))
	} else {
		t.Logf("TLS 1.2, CBC suites only: %v", err)
	}
	st, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
	if err != nil {
		t.Fatalf("TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256: %v", err)
	}
	t.Logf("TLS 1.2 AEAD: %s", tls.CipherSuiteName(st.CipherSuite))
	if st, err = dial(&tls.Config{MinVersion: tls.VersionTLS13}); err != nil || st.Version != tls.VersionTLS13 {
		t.Fatalf("TLS 1.3: %v", err)
	}
}

// TestRegistryStateFileModes gives the registry a state directory that is
// already 0755, under a umask of 022: every file it creates there (the
// database with its write-ahead log and shared-memory index, the audit
// key, the TLS key and certificate) is 0600. A database loosened to 0644
// by hand is set back to 0600 at the next start, with a warning.
func TestRegistryStateFileModes(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o755); err != nil {
		t.Fatal(err)
	}
	tok, err := regtest.Token(bin, state, "admin", "desk", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.StartArgs(bin, state, "serve", "--listen", "127.0.0.1:0", "--state", state)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	n := 0
	// check writes through p, so the write-ahead log and its index
	// exist, then checks every file's mode.
	check := func() {
		t.Helper()
		n++
		req, _ := http.NewRequest("POST", p.URL+"/v1/users", strings.NewReader(fmt.Sprintf(`{"external_id":"mode-%d"}`, n)))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Idempotency-Key", fmt.Sprint("mode-", n))
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("creating a user: %d", res.StatusCode)
		}
		for _, name := range []string{"registry.db", "registry.db-wal", "registry.db-shm", "audit-signing-key.pem", "tls-key.pem", "tls-cert.pem"} {
			fi, err := os.Stat(filepath.Join(state, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s is %v, want 0600", name, fi.Mode().Perm())
			}
		}
	}
	check()
	p.Stop()
	if err := os.Chmod(filepath.Join(state, "registry.db"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err = regtest.StartArgs(bin, state, "serve", "--listen", "127.0.0.1:0", "--state", state); err != nil {
		t.Fatal(err)
	}
	check()
	p.Stop()
	if log := p.Stderr(); !strings.Contains(log, "set to 0600") || !strings.Contains(log, "registry.db") {
		t.Fatalf("no warning about the loosened database:\n%s", log)
	}
}

// TestRegistryLookAlikeExternalIDs creates users through the real registry
// with external ids that look alike on screen: the decomposed "café"
// names the user the precomposed one created (409 duplicate, and an
// enrolment under it lands on that user); ids holding a zero-width space,
// a right-to-left override, a byte-order mark or NUL are refused with
// invalid_external_id, on create, enrolment and import.
func TestRegistryLookAlikeExternalIDs(t *testing.T) {
	r := startRegistry(t)
	c := r.Client
	tok, err := regtest.Token(bin, r.State, "admin", "raw", "")
	if err != nil {
		t.Fatal(err)
	}
	post := func(path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", r.P.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Idempotency-Key", fmt.Sprintf("%x", sha256.Sum256([]byte(path+body))))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var e struct{ Code string }
		json.NewDecoder(res.Body).Decode(&e)
		return res.StatusCode, e.Code
	}
	if st, code := post("/v1/users", `{"external_id":"caf\u00e9"}`); st != http.StatusCreated {
		t.Fatalf("precomposed café: %d %s", st, code)
	}
	if st, code := post("/v1/users", `{"external_id":"cafe\u0301"}`); st != http.StatusConflict || code != "duplicate" {
		t.Fatalf("decomposed café after the precomposed one: %d %s, want 409 duplicate", st, code)
	}
	for name, id := range map[string]string{
		"zero-width space": `ali\u200bce`, "right-to-left override": `\u202eecila`, "byte-order mark": `\ufeffalice`,
		"NUL": `alice\u0000`, "newline": `alice\nbob`, "zero-width joiner": `al\u200dice`,
	} {
		if st, code := post("/v1/users", `{"external_id":"`+id+`"}`); st != http.StatusUnprocessableEntity || code != "invalid_external_id" {
			t.Errorf("%s: %d %s, want 422 invalid_external_id", name, st, code)
		}
	}
	e := enrolment(1)
	e.User.ExternalID = "cafe\u0301"
	got, err := c.Enrol(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if got.User.ExternalID != "caf\u00e9" {
		t.Fatalf("enrolment under the decomposed id: user %q, want the precomposed user", got.User.ExternalID)
	}
	if u, err := c.FindUser(ctx, "cafe\u0301"); err != nil || u.ID != got.User.ID {
		t.Fatalf("FindUser by the decomposed id: %v %v", u.ID, err)
	}
	e = enrolment(2)
	e.User.ExternalID = "b\u200bob"
	if _, err := c.Enrol(ctx, e); err == nil || !strings.Contains(err.Error(), "invalid_external_id") {
		t.Fatalf("enrolment with a zero-width space: %v, want invalid_external_id", err)
	}
	users, _, err := c.Users(ctx, "", 100)
	if err != nil || len(users) != 1 {
		t.Fatalf("%d users (%v), want 1", len(users), err)
	}
	// Import into an empty registry: a bundle with a format character in
	// an external id is refused and nothing is written.
	fresh := startRegistry(t)
	x := registry.Export{Format: registry.ExportFormat, Scope: "user", Users: []registry.User{{ID: "usr_1", ExternalID: "e\u202eve", Status: registry.UserActive, Version: 1}}}
	if _, err := fresh.Client.Import(ctx, x); err == nil || !strings.Contains(err.Error(), "invalid_external_id") {
		t.Fatalf("import with a right-to-left override: %v, want invalid_external_id", err)
	}
}

// TestRegistryLogsAuthFailures checks the records a real registry writes
// for failed authentications, the lockout they lead to and a lockout
// signal: each says who (a token's name, or "unknown" with a hash prefix),
// from where and why, and none holds the token that was tried.
func TestRegistryLogsAuthFailures(t *testing.T) {
	state := t.TempDir()
	admin, err := regtest.Token(bin, state, "admin", "desk", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.Start(bin, state, "--auth-failures", "3", "--log-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(p.URL, admin, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	en, err := c.Enrol(ctx, enrolment(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReportLockout(ctx, registry.LockoutSignal{UserID: en.User.ID, KeyID: en.Key.ID, Reason: "failed_signin"}); err != nil {
		t.Fatal(err)
	}
	wrong := "kdr_not-a-token-" + fmt.Sprint(os.Getpid())
	regtest.Secret(wrong)
	for i := 0; i < 4; i++ {
		req, _ := http.NewRequest("GET", p.URL+"/v1/whoami", nil)
		if i > 0 {
			req.Header.Set("Authorization", "Bearer "+wrong)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	p.Stop()
	var fails, lockouts, signals int
	for _, line := range strings.Split(p.Stderr(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch rec["msg"] {
		case "authentication failed":
			fails++
			if rec["remote_addr"] != "127.0.0.1" || rec["reason"] == nil || !strings.HasPrefix(fmt.Sprint(rec["token"]), "unknown") {
				t.Errorf("authentication record without who, where or why: %s", line)
			}
		case "address locked out":
			lockouts++
		case "lockout signal":
			signals++
			if rec["user_id"] != en.User.ID || rec["reason"] != "failed_signin" || rec["token"] != "desk" {
				t.Errorf("lockout signal record: %s", line)
			}
		}
	}
	// The 4th request is refused by the lockout before authentication.
	if fails != 3 || lockouts != 1 || signals != 1 {
		t.Fatalf("%d failed-authentication, %d lockout and %d signal records, want 3, 1, 1:\n%s", fails, lockouts, signals, p.Stderr())
	}
	if strings.Contains(p.Stderr(), wrong) {
		t.Fatal("the log holds the token that was tried")
	}
}

// TestRegistryWarnsOfOldExternalIDs: a user stored before external ids
// were normalised (written here straight into the database, as an older
// registry would have) is named in a warning when the registry starts.
func TestRegistryWarnsOfOldExternalIDs(t *testing.T) {
	state := t.TempDir()
	if _, err := regtest.Token(bin, state, "admin", "desk", ""); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(state, "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range [][2]string{{"usr_nfd", "cafe\u0301"}, {"usr_zwsp", "b\u200bob"}, {"usr_fine", "alice"}} {
		if _, err := db.Exec("INSERT INTO users (id, external_id, display_name, email, groups_json, status, version, created_at, updated_at) VALUES (?, ?, '', '', '[]', 'active', 1, 0, 0)", u[0], u[1]); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	p, err := regtest.Start(bin, state)
	if err != nil {
		t.Fatal(err)
	}
	p.Stop()
	log := p.Stderr()
	if !strings.Contains(log, "not NFC") || !strings.Contains(log, "count=2") || !strings.Contains(log, "usr_nfd") || !strings.Contains(log, "usr_zwsp") || strings.Contains(log, "usr_fine") {
		t.Fatalf("start-up warning about the two old external ids missing:\n%s", log)
	}
}
