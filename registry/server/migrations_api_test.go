package server_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/csv"
	"fmt"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/credential"
)

// migFixture is a migration the role matrix can call every endpoint on.
type migFixture struct {
	id string
	n  int
}

// migrationCall gives the role matrix a path and body for the migration
// routes; ok is false for other routes.
func (r *reg) migrationCall(route string) (string, any, bool) {
	if r.mig == nil {
		r.mig = &migFixture{}
		r.must(r.do(r.admin, "POST", "/v1/key-sets", map[string]any{"name": "legacy-2024"}), 201)
		r.must(r.do(r.admin, "POST", "/v1/key-sets/legacy-2024/keys", map[string]any{"key_id": r.keyB}), 201)
		m := r.must(r.do(r.admin, "POST", "/v1/migrations", map[string]any{"from_set": "legacy-2024", "to_set": "yk5-2026",
			"scope": map[string]any{"all": true}, "canary": map[string]any{"users": []string{r.userA}}}), 201)
		r.mig.id = m["id"].(string)
	}
	r.mig.n++
	mp := "/v1/migrations/" + r.mig.id
	switch route {
	case "POST /v1/key-sets":
		return "/v1/key-sets", map[string]any{"name": fmt.Sprintf("set-%d", r.mig.n)}, true
	case "GET /v1/key-sets":
		return "/v1/key-sets", nil, true
	case "POST /v1/key-sets/{name}/keys":
		return "/v1/key-sets/yk5-2026/keys", map[string]any{"key_id": r.keyB}, true
	case "DELETE /v1/key-sets/{name}/keys/{key_id}":
		return "/v1/key-sets/yk5-2026/keys/" + r.keyB, nil, true
	case "POST /v1/migrations":
		return "/v1/migrations", map[string]any{"from_set": "legacy-2024", "to_set": "nope", "scope": map[string]any{"all": true}, "canary": map[string]any{"percent": 50}}, true
	case "GET /v1/migrations":
		return "/v1/migrations", nil, true
	case "GET /v1/migrations/{id}":
		return mp, nil, true
	case "POST /v1/migrations/{id}/advance":
		return mp + "/advance", map[string]any{"to": "dry_run"}, true
	case "POST /v1/migrations/{id}/halt":
		return mp + "/halt", map[string]any{"reason": "matrix"}, true
	case "POST /v1/migrations/{id}/rollback":
		return mp + "/rollback", map[string]any{"reason": "matrix"}, true
	case "GET /v1/migrations/{id}/readiness":
		return mp + "/readiness", nil, true
	case "GET /v1/migrations/{id}/readiness.csv":
		return mp + "/readiness.csv", nil, true
	case "GET /v1/migrations/{id}/dry-run":
		return mp + "/dry-run", nil, true
	case "POST /v1/signals/lockout":
		return "/v1/signals/lockout", map[string]any{"user_id": r.userA, "key_id": r.keyA}, true
	}
	return "", nil, false
}

type enrolled struct{ user, key, piv string }

// enrolIn registers an active key in the given sets, with a FIDO2
// credential and a PIV 9a slot holding p256's public key.
func (r *reg) enrolIn(ext, serial string, sets ...string) enrolled {
	r.t.Helper()
	res := r.must(r.do(r.admin, "POST", "/v1/enrolments", map[string]any{
		"user":  map[string]any{"external_id": ext, "email": ext + "@example.org"},
		"key":   map[string]any{"serial": serial, "key_sets": sets},
		"fido2": []any{map[string]any{"credential_id": []byte(ext + serial), "public_key": credential.COSEKeyES256(&p256.PublicKey), "rp_id": "example.org"}},
		"piv":   []any{map[string]any{"slot": "9a", "public_key": pkixDER(&p256.PublicKey)}},
	}), 201)
	e := enrolled{res["user"].(map[string]any)["id"].(string), res["key"].(map[string]any)["id"].(string), res["piv"].([]any)[0].(map[string]any)["id"].(string)}
	// Active without a verification, so that readiness still reports the
	// key unverified: an admin's break glass, as for keys issued before
	// keydesk.
	r.must(r.do(r.admin, "POST", "/v1/keys/"+e.key+"/status", map[string]any{"status": "active", "break_glass_reason": "issued before the registry"}, "If-Match", `"v1"`), 200)
	return e
}

// verifyPIV proves possession of key e's PIV 9a slot through the API.
func (r *reg) verifyPIV(e enrolled, k *ecdsa.PrivateKey) bool {
	r.t.Helper()
	c := r.must(r.do(r.admin, "POST", "/v1/challenges", map[string]any{"key_id": e.key, "kind": "piv", "credential_id": e.piv}), 201)["challenge"].(map[string]any)
	h := sha256.Sum256(b64(r.t, c["nonce"]))
	sig, _ := ecdsa.SignASN1(rand.Reader, k, h[:])
	v := r.must(r.do(r.admin, "POST", "/v1/verifications", map[string]any{"challenge_id": c["id"], "piv": map[string]any{"signature": sig}}), 201)
	return v["ok"] == true
}

func validKeysOf(r *reg, tok, user string) (float64, []string) {
	v := r.must(r.do(tok, "GET", "/v1/validity?user_id="+user, nil), 200)
	var keys []string
	for _, c := range v["credentials"].([]any) {
		k := c.(map[string]any)["key_id"].(string)
		if len(keys) == 0 || keys[len(keys)-1] != k {
			keys = append(keys, k)
		}
	}
	return v["version"].(float64), keys
}

// TestMigrationAPI drives a migration through a real registry process:
// bad plans refused with nothing written, the canary switching the view in
// one version, an auth server's lockout report halting it and moving the
// user back, the readiness CSV, and rollback.
func TestMigrationAPI(t *testing.T) {
	r := start(t)
	r.must(r.do(r.admin, "POST", "/v1/key-sets", map[string]any{"name": "legacy-2024", "description": "2024 keys"}), 201)
	if res := r.do(r.admin, "POST", "/v1/key-sets", map[string]any{"name": "legacy-2024"}); res.status != 409 {
		t.Fatalf("duplicate set: %d %s", res.status, res.raw)
	}
	a1, b1 := r.enrolIn("uma", "u1-a", "legacy-2024"), r.enrolIn("uma", "u1-b", "yk5-2026")
	a2, _ := r.enrolIn("vic", "u2-a", "legacy-2024"), r.enrolIn("vic", "u2-b", "yk5-2026")
	if !r.verifyPIV(b1, p256) {
		t.Fatal("verification of uma's new key failed")
	}
	plan := func(mod func(map[string]any)) map[string]any {
		m := map[string]any{"name": "yk5 rollout", "from_set": "legacy-2024", "to_set": "yk5-2026", "scope": map[string]any{"users": []string{a1.user, a2.user}},
			"canary": map[string]any{"users": []string{a1.user}}, "stages": []float64{50}, "policy": map[string]any{"verification_max_age_days": 30}}
		mod(m)
		return m
	}
	before := r.head()
	for _, c := range []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"unknown set", plan(func(m map[string]any) { m["to_set"] = "yk6" }), 422, "unknown_key_set"},
		{"empty scope", plan(func(m map[string]any) { m["scope"] = map[string]any{} }), 422, "empty_cohort"},
		{"empty canary", plan(func(m map[string]any) { m["canary"] = map[string]any{"groups": []string{"nobody"}} }), 422, "empty_cohort"},
		{"percent", plan(func(m map[string]any) { m["stages"] = []float64{0, 120} }), 422, "percent_out_of_range"},
		{"wrong type", plan(func(m map[string]any) { m["stages"] = "ten" }), 400, "wrong_type"},
	} {
		if res := r.do(r.admin, "POST", "/v1/migrations", c.body); res.status != c.status || res.body["code"] != c.code || res.body["message"] == "" {
			t.Errorf("%s: %d %s", c.name, res.status, res.raw)
		}
	}
	if h := r.head(); h != before {
		t.Fatalf("refused plans wrote: head %s → %s", before, h)
	}
	m := r.must(r.do(r.admin, "POST", "/v1/migrations", plan(func(map[string]any) {})), 201)
	id := m["id"].(string)
	if res := r.do(r.admin, "POST", "/v1/migrations", plan(func(map[string]any) {})); res.status != 409 || res.body["code"] != "overlapping_migration" {
		t.Fatalf("overlap: %d %s", res.status, res.raw)
	}
	if res := r.do(r.admin, "POST", "/v1/migrations/"+id+"/advance", map[string]any{"to": "canary"}); res.status != 409 || res.body["code"] != "invalid_transition" {
		t.Fatalf("skipping the dry run: %d %s", res.status, res.raw)
	}
	r.must(r.do(r.admin, "POST", "/v1/migrations/"+id+"/advance", map[string]any{"to": "dry_run"}), 200)
	dr := r.must(r.do(r.helpdesk, "GET", "/v1/migrations/"+id+"/dry-run", nil), 200)
	for _, s := range dr["stages"].([]any) {
		if lo := s.(map[string]any)["locked_out"].([]any); len(lo) != 0 {
			t.Fatalf("dry run locks out %v", lo)
		}
	}
	v0, keys := validKeysOf(r, r.authserver, a1.user)
	if len(keys) != 2 {
		t.Fatalf("before: %v", keys)
	}
	adv := r.must(r.do(r.admin, "POST", "/v1/migrations/"+id+"/advance", map[string]any{"to": "canary"}), 200)
	if adv["cut_over"].(float64) != 1 || adv["held_back"].(float64) != 0 {
		t.Fatalf("canary: %v", adv)
	}
	v1, keys := validKeysOf(r, r.authserver, a1.user)
	if v1 != v0+1 || len(keys) != 1 || keys[0] != b1.key {
		t.Fatalf("after the canary: v%v → v%v, %v", v0, v1, keys)
	}
	if res := r.do(r.admin, "POST", "/v1/migrations/"+id+"/advance", map[string]any{"to": "dry_run"}); res.status != 409 || res.body["code"] != "invalid_transition" {
		t.Fatalf("backwards: %d %s", res.status, res.raw)
	}
	if res := r.do(r.admin, "POST", "/v1/migrations/"+id+"/advance", map[string]any{"to": "staged", "percent": 101}); res.status != 422 || res.body["code"] != "percent_out_of_range" {
		t.Fatalf("101%%: %d %s", res.status, res.raw)
	}
	if res := r.do(r.authserver, "POST", "/v1/signals/lockout", map[string]any{"user_id": a1.user, "key_id": a2.key}); res.status != 422 || res.body["code"] != "unknown_credential" {
		t.Fatalf("someone else's key: %d %s", res.status, res.raw)
	}
	sig := r.must(r.do(r.authserver, "POST", "/v1/signals/lockout", map[string]any{"user_id": a1.user, "key_id": b1.key, "reason": "failed_signin"}), 201)
	if sig["user_reverted"] != true || sig["halted"] != true {
		t.Fatalf("signal: %v", sig)
	}
	if _, keys := validKeysOf(r, r.authserver, a1.user); len(keys) != 2 {
		t.Fatalf("after the halt uma has %v", keys)
	}
	got := r.must(r.do(r.admin, "GET", "/v1/migrations/"+id, nil), 200)
	if got["halted"] != true || !strings.Contains(got["halt_reason"].(string), "halted by itself") {
		t.Fatalf("migration: %v", got)
	}
	if res := r.do(r.admin, "POST", "/v1/migrations/"+id+"/advance", map[string]any{"to": "complete"}); res.status != 409 || res.body["code"] != "migration_halted" {
		t.Fatalf("advance while halted: %d %s", res.status, res.raw)
	}
	feed := r.must(r.do(r.admin, "GET", "/v1/changes?after="+fmt.Sprint(v1), nil), 200)["changes"].([]any)
	if last := feed[len(feed)-1].(map[string]any); last["entity"] != "migration" || last["op"] != "halt" {
		t.Fatalf("feed: %v", feed)
	}
	res := r.do(r.helpdesk, "GET", "/v1/migrations/"+id+"/readiness.csv", nil)
	rows, err := csv.NewReader(strings.NewReader(string(res.raw))).ReadAll()
	if res.status != 200 || err != nil || len(rows) != 3 || strings.Join(rows[0], ",") != "user_id,external_id,email,cohort,ready,reasons,good_b_keys,cut_over" {
		t.Fatalf("csv: %d %v %q", res.status, err, res.raw)
	}
	reasons := map[string]string{}
	for _, row := range rows[1:] {
		reasons[row[1]] = row[5]
	}
	if reasons["uma"] != "b_key_failing" || reasons["vic"] != "b_key_unverified" {
		t.Fatalf("csv reasons: %v", reasons)
	}
	rb := r.must(r.do(r.admin, "POST", "/v1/migrations/"+id+"/rollback", map[string]any{"reason": "canary failed"}), 200)
	if rb["migration"].(map[string]any)["state"] != "rolled_back" {
		t.Fatalf("rollback: %v", rb)
	}
	if out := r.must(r.do(r.admin, "GET", "/v1/audit/verify", nil), 200); out["ok"] != true {
		t.Fatalf("audit: %v", out)
	}
}

// TestLockoutSignalRateLimit: an auth server's token is held to its signal
// rate; the refusal writes nothing.
func TestLockoutSignalRateLimit(t *testing.T) {
	r := start(t, "--signal-rate", "0.001", "--signal-burst", "2")
	body := map[string]any{"user_id": r.userA, "key_id": r.keyA}
	for range 2 {
		r.must(r.do(r.authserver, "POST", "/v1/signals/lockout", body), 201)
	}
	before := r.head()
	res := r.do(r.authserver, "POST", "/v1/signals/lockout", body)
	if res.status != 429 || res.body["code"] != "rate_limited" || res.hdr.Get("Retry-After") == "" {
		t.Fatalf("third signal: %d %s", res.status, res.raw)
	}
	if h := r.head(); h != before {
		t.Fatalf("refused signal wrote: %s → %s", before, h)
	}
	// Other tokens have their own budget.
	r.must(r.do(r.admin, "POST", "/v1/signals/lockout", body), 201)
}
