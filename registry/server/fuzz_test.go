package server_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/regtest"
	"github.com/keydesk/keydesk/registry/server"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// fuzzReg is the real server's handlers behind a real HTTP listener in this
// process, over a SQLite store the test can read directly, with the same
// fixture as start: alice with an active key, bob with a pending one, a key
// set and a migration.
type fuzzReg struct {
	*reg
	st     *sqlstore.Store
	writes []server.Route
	toks   []string
}

// newFuzzReg builds the fixture in dir; cleanup collects what to close
// when the fuzz target ends (t ends with the first input).
func newFuzzReg(t *testing.T, dir string, cleanup *[]func()) *fuzzReg {
	tb := t
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	st, err := sqlstore.Open(context.Background(), filepath.Join(dir, "r.db"), sqlstore.Options{Signer: priv})
	if err != nil {
		tb.Fatal(err)
	}
	*cleanup = append(*cleanup, func() { st.Close() })
	srv := server.New(st, server.Options{AuthFailures: 1 << 30, AuditKey: priv.Public().(ed25519.PublicKey)})
	hs := httptest.NewServer(srv)
	*cleanup = append(*cleanup, hs.Close)
	token := func(role, name, user string) string {
		var secret [32]byte
		rand.Read(secret[:])
		tok := "kdr_" + base64.RawURLEncoding.EncodeToString(secret[:])
		if _, _, err := st.Write(context.Background(), "test", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
			return sqlstore.Result{}, tx.CreateToken(server.HashToken(tok), name, role, user)
		}); err != nil {
			tb.Fatal(err)
		}
		return tok
	}
	r := &reg{t: t, p: &regtest.Process{URL: hs.URL}, admin: token("admin", "first-admin", ""), helpdesk: token("helpdesk", "desk-1", ""), authserver: token("authserver", "idp-1", "")}
	a := r.enrol("alice", "100", true)
	b := r.enrol("bob", "200", false)
	r.userA, r.keyA = a["user"].(map[string]any)["id"].(string), a["key"].(map[string]any)["id"].(string)
	r.userB, r.keyB = b["user"].(map[string]any)["id"].(string), b["key"].(map[string]any)["id"].(string)
	r.pivA = a["piv"].([]any)[0].(map[string]any)["id"].(string)
	r.fidoA = a["fido2"].([]any)[0].(map[string]any)["id"].(string)
	r.selfA = token("self", "alice-laptop", r.userA)
	r.migrationCall("GET /v1/key-sets") // the key sets and the migration
	f := &fuzzReg{reg: r, st: st, toks: []string{r.admin, r.helpdesk, r.selfA, r.authserver}}
	for _, rt := range srv.Routes() {
		if rt.Method != "GET" {
			f.writes = append(f.writes, rt)
		}
	}
	return f
}

// path fills a route's pattern with the fixture's records.
func (f *fuzzReg) path(rt server.Route) string {
	p := rt.Pattern
	switch {
	case strings.HasPrefix(p, "/v1/keys/"):
		p = strings.Replace(p, "{id}", f.keyA, 1)
	case strings.HasPrefix(p, "/v1/migrations/"):
		p = strings.Replace(p, "{id}", f.mig.id, 1)
	case strings.HasPrefix(p, "/v1/key-sets/"):
		p = strings.Replace(p, "{name}", "yk5-2026", 1)
	}
	return strings.NewReplacer("{id}", f.userA, "{kind}", "piv-puk", "{name}", "no-such-token", "{key_id}", f.keyB).Replace(p)
}

// digest hashes every row of every table: equal digests, equal databases.
func (f *fuzzReg) digest(t *testing.T) [32]byte {
	db := f.st.DB()
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	h := sha256.New()
	for _, tb := range tables {
		fmt.Fprintf(h, "table %s\n", tb)
		if err := dumpTable(db, tb, h); err != nil {
			t.Fatal(err)
		}
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d
}

func dumpTable(db *sql.DB, table string, w interface{ Write([]byte) (int, error) }) error {
	rows, err := db.Query(`SELECT * FROM "` + table + `" ORDER BY 1`)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		fmt.Fprintf(w, "%q\n", vals)
	}
	return rows.Err()
}

// FuzzAPIWrites sends arbitrary bodies to every write route of the real
// handlers over HTTP, as each role: never a 500 or a dropped connection (a
// handler panic), every refusal a JSON error with a code and a message, and
// a refused write changes no row of the database.
func FuzzAPIWrites(f *testing.F) {
	cose := credential.COSEKeyES256(&p256.PublicKey)
	seeds := []string{
		`{"external_id":"fz-1"}`,
		`{"display_name":"x","email":"x@example.org","groups":["a"]}`,
		`{"reason":"lost key","validity":"8h"}`,
		mustMarshal(map[string]any{"user": map[string]any{"external_id": "fz-2"}, "key": map[string]any{"serial": "9001"},
			"fido2": []any{map[string]any{"credential_id": []byte("fz"), "public_key": cose, "rp_id": "example.org"}},
			"piv":   []any{map[string]any{"slot": "9c", "public_key": pkixDER(&p256.PublicKey)}}}),
		`{"status":"suspended"}`,
		`{"status":"lost","break_glass_reason":"stolen"}`,
		mustMarshal(map[string]any{"credential_id": []byte("fz-3"), "public_key": cose, "rp_id": "example.org", "cred_protect": 3}),
		mustMarshal(map[string]any{"slot": "9d", "public_key": pkixDER(&p256.PublicKey)}),
		mustMarshal(map[string]any{"blob": []byte("age-encryption.org/v1 ...")}),
		`{"key_id":"k","kind":"piv","credential_id":"c"}`,
		`{"challenge_id":"ch_unknown","piv":{"signature":"AQ=="}}`,
		`{"pass":"not-a-pass"}`,
		`{"name":"set-fz"}`,
		`{"key_id":"x"}`,
		`{"from_set":"legacy-2024","to_set":"yk5-2026","scope":{"all":true},"canary":{"percent":50}}`,
		`{"to":"dry_run"}`,
		`{"reason":"fuzz"}`,
		`{"user_id":"u","key_id":"k"}`,
		`{}`, `[]`, `null`, `{"user": {`, `{"a":1} {}`, "\x00\xff", `{"key":{"serial":900}}`,
	}
	for i, s := range seeds {
		for caller := range 3 {
			f.Add(uint8(i), uint8(caller), uint8(i%3), []byte(s))
		}
	}
	var fr *fuzzReg
	dir := f.TempDir()
	var cleanup []func()
	f.Cleanup(func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	})
	f.Fuzz(func(t *testing.T, route, caller, ifMatch uint8, body []byte) {
		if fr == nil {
			fr = newFuzzReg(t, dir, &cleanup)
		}
		fr.t = t
		rt := fr.writes[int(route)%len(fr.writes)]
		var hdr []string
		if ifMatch > 0 {
			hdr = []string{"If-Match", fmt.Sprintf(`"v%d"`, ifMatch%4)}
		}
		before := fr.digest(t)
		res := fr.do(fr.toks[int(caller)%len(fr.toks)], rt.Method, fr.path(rt), body, hdr...)
		if res.status >= 500 {
			t.Fatalf("%s %s: %d %s", rt.Method, rt.Pattern, res.status, trunc(res.raw))
		}
		if res.status >= 300 {
			if c, _ := res.body["code"].(string); c == "" || res.body["message"] == "" {
				t.Fatalf("%s %s: %d without a code and message: %s", rt.Method, rt.Pattern, res.status, trunc(res.raw))
			}
			if after := fr.digest(t); after != before {
				t.Fatalf("%s %s refused with %d %s but changed the database", rt.Method, rt.Pattern, res.status, trunc(res.raw))
			}
		}
	})
}

func mustMarshal(v any) string { b, _ := json.Marshal(v); return string(b) }
