package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/regtest"
)

// The tests in this file run against the real keydesk-registry process on
// SQLite and on PostgreSQL: who may take a credential out of the validity
// view, bring a key back, add a credential, and act for a user who is no
// longer active (docs/registry.md, "Invariants the server enforces").

// onBackends runs fn against a registry on SQLite and one on PostgreSQL.
func onBackends(t *testing.T, fn func(t *testing.T, r *reg)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, startOn(t, "")) })
	t.Run("postgres", func(t *testing.T) { fn(t, startOn(t, pgtest.Database(t))) })
}

// startOn is start with the database at dsn ("" for SQLite in the state
// dir): alice (active key with a FIDO2 credential and a PIV slot), bob
// (pending key), and tokens for every role.
func startOn(t *testing.T, dsn string) *reg {
	t.Helper()
	if dsn == "" {
		return start(t)
	}
	state := t.TempDir()
	token := func(role, name, user string) string {
		args := []string{"token", "create", "--state", state, "--db", dsn, "--role", role, "--name", name}
		if user != "" {
			args = append(args, "--user", user)
		}
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("token create: %v: %s", err, ee.Stderr)
			}
			t.Fatal(err)
		}
		tok := strings.TrimSpace(string(out))
		regtest.Secret(tok)
		return tok
	}
	r := &reg{t: t, admin: token("admin", "first-admin", ""), helpdesk: token("helpdesk", "desk-1", ""), authserver: token("authserver", "idp-1", "")}
	p, err := regtest.Start(bin, state, "--db", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	r.p = p
	a := r.enrol("alice", "100", true)
	b := r.enrol("bob", "200", false)
	r.userA, r.keyA = a["user"].(map[string]any)["id"].(string), a["key"].(map[string]any)["id"].(string)
	r.userB, r.keyB = b["user"].(map[string]any)["id"].(string), b["key"].(map[string]any)["id"].(string)
	r.pivA = a["piv"].([]any)[0].(map[string]any)["id"].(string)
	r.fidoA = a["fido2"].([]any)[0].(map[string]any)["id"].(string)
	r.selfA = token("self", "alice-laptop", r.userA)
	return r
}

// validCount is how many credentials of user the validity view lists.
func (r *reg) validCount(user string) int {
	r.t.Helper()
	v := r.must(r.do(r.authserver, "GET", "/v1/validity?user_id="+user, nil), 200)
	return len(v["credentials"].([]any))
}

// auditActions counts the audit entries with action whose payload holds
// every string in want.
func (r *reg) auditActions(action string, want ...string) int {
	r.t.Helper()
	n := 0
	for _, e := range r.must(r.do(r.admin, "GET", "/v1/audit?action="+action, nil), 200)["entries"].([]any) {
		raw, _ := json.Marshal(e.(map[string]any)["payload"])
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(string(raw), w)
		}
		if ok {
			n++
		}
	}
	return n
}

// setStatus posts a status change of key id at its current version.
func (r *reg) setStatus(tok, id string, body map[string]any) resp {
	r.t.Helper()
	k := r.must(r.do(r.admin, "GET", "/v1/keys/"+id, nil), 200)
	return r.do(tok, "POST", "/v1/keys/"+id+"/status", body, "If-Match", etagOf(k))
}

// etagOf is the ETag of a user or key as the API returned it.
func etagOf(v map[string]any) string { return fmt.Sprintf(`"v%d"`, int64(v["version"].(float64))) }

// TestPendingSideDoor: moving a user's only active key to pending takes
// their credentials out of the validity view, so it needs a break-glass
// reason like any other move out of service, and is audited as
// key.break_glass.
func TestPendingSideDoor(t *testing.T) {
	onBackends(t, func(t *testing.T, r *reg) {
		if n := r.validCount(r.userA); n != 2 {
			t.Fatalf("alice starts with %d valid credentials", n)
		}
		for _, to := range []string{"pending", "suspended", "retired"} {
			res := r.setStatus(r.helpdesk, r.keyA, map[string]any{"status": to})
			if res.status != 409 || res.body["code"] != "last_active_key" {
				t.Fatalf("helpdesk moving the only active key to %s: %d %s", to, res.status, res.raw)
			}
		}
		if n := r.validCount(r.userA); n != 2 {
			t.Fatalf("refused moves changed the validity view: %d credentials", n)
		}
		r.must(r.setStatus(r.helpdesk, r.keyA, map[string]any{"status": "pending", "break_glass_reason": "re-enrolling after a firmware fault"}), 200)
		if n := r.validCount(r.userA); n != 0 {
			t.Fatalf("pending key still valid: %d credentials", n)
		}
		if n := r.auditActions("key.break_glass", r.keyA, `"to":"pending"`, "re-enrolling after a firmware fault"); n != 1 {
			t.Fatalf("%d key.break_glass entries for the move to pending", n)
		}
		if out := r.must(r.do(r.admin, "GET", "/v1/audit/verify", nil), 200); out["ok"] != true {
			t.Fatalf("audit: %v", out)
		}
	})
}

// TestRevokedNeedsFreshProof: a revoked key comes back to active only
// after a verification made since it was revoked; no break-glass reason
// stands in for it, no detour through pending or suspended exists, and it
// takes no new credentials. A self token cannot move it at all.
func TestRevokedNeedsFreshProof(t *testing.T) {
	onBackends(t, func(t *testing.T, r *reg) {
		r.must(r.setStatus(r.helpdesk, r.keyA, map[string]any{"status": "revoked", "break_glass_reason": "reported stolen"}), 200)
		for _, body := range []map[string]any{{"status": "active"}, {"status": "active", "break_glass_reason": "user says it is back"}} {
			res := r.setStatus(r.admin, r.keyA, body)
			if res.status != 409 || res.body["code"] != "proof_required" {
				t.Fatalf("revoked to active without a fresh verification (%v): %d %s", body, res.status, res.raw)
			}
		}
		for _, to := range []string{"pending", "suspended", "lost"} {
			res := r.setStatus(r.helpdesk, r.keyA, map[string]any{"status": to})
			if res.status != 409 || res.body["code"] != "invalid_transition" {
				t.Fatalf("revoked to %s: %d %s", to, res.status, res.raw)
			}
		}
		for _, to := range []string{"suspended", "lost", "active", "retired", "pending"} {
			res := r.setStatus(r.selfA, r.keyA, map[string]any{"status": to})
			if res.status != 403 || res.body["code"] != "forbidden" {
				t.Fatalf("self token moving its revoked key to %s: %d %s", to, res.status, res.raw)
			}
		}
		res := r.do(r.helpdesk, "POST", "/v1/keys/"+r.keyA+"/fido2", map[string]any{"credential_id": []byte("late"), "public_key": credential.COSEKeyES256(&p256.PublicKey), "rp_id": "example.org"})
		if res.status != 409 || res.body["code"] != "key_not_in_service" {
			t.Fatalf("credential added to a revoked key: %d %s", res.status, res.raw)
		}
		if k := r.must(r.do(r.admin, "GET", "/v1/keys/"+r.keyA, nil), 200); k["status"] != "revoked" {
			t.Fatalf("key is %v", k["status"])
		}
		// The key signs a challenge now: that is the fresh proof.
		v := r.provePIV(r.helpdesk, r.keyA, r.pivA, p256)
		if v["ok"] != true || v["key_activated"] == true || v["key_status"] != "revoked" {
			t.Fatalf("verification of a revoked key: %v", v)
		}
		r.must(r.setStatus(r.helpdesk, r.keyA, map[string]any{"status": "active"}), 200)
		if n := r.validCount(r.userA); n != 2 {
			t.Fatalf("reactivated key: %d valid credentials", n)
		}
	})
}

// TestSelfTransitions: a self token may report its own key lost or
// suspended, and nothing else.
func TestSelfTransitions(t *testing.T) {
	onBackends(t, func(t *testing.T, r *reg) {
		res := r.setStatus(r.selfA, r.keyA, map[string]any{"status": "lost"})
		if res.status != 409 || res.body["code"] != "last_active_key" {
			t.Fatalf("self losing its only key without a reason: %d %s", res.status, res.raw)
		}
		r.must(r.setStatus(r.selfA, r.keyA, map[string]any{"status": "suspended", "break_glass_reason": "left it on the train"}), 200)
		r.must(r.setStatus(r.selfA, r.keyA, map[string]any{"status": "lost"}), 200)
		for _, to := range []string{"suspended", "active", "revoked"} {
			res := r.setStatus(r.selfA, r.keyA, map[string]any{"status": to})
			if res.status != 403 || res.body["code"] != "forbidden" {
				t.Fatalf("self token moving its lost key to %s: %d %s", to, res.status, res.raw)
			}
		}
		// Lost, like revoked, needs a verification since.
		if res := r.setStatus(r.admin, r.keyA, map[string]any{"status": "active", "break_glass_reason": "found"}); res.status != 409 || res.body["code"] != "proof_required" {
			t.Fatalf("lost to active without a fresh verification: %d %s", res.status, res.raw)
		}
	})
}

// TestUnattestedCredentialWaits: a FIDO2 credential added to an active key
// without an attestation the registry trusts stays out of the validity view
// until it passes a verification of its own.
func TestUnattestedCredentialWaits(t *testing.T) {
	onBackends(t, func(t *testing.T, r *reg) {
		k := mustEC(elliptic.P256())
		added := r.must(r.do(r.helpdesk, "POST", "/v1/keys/"+r.keyA+"/fido2", map[string]any{"credential_id": []byte("added-later"), "public_key": credential.COSEKeyES256(&k.PublicKey), "rp_id": "example.org"}), 201)
		if added["pending"] != true || added["verdict"] != "none" {
			t.Fatalf("unattested credential: %v", added)
		}
		if n := r.validCount(r.userA); n != 2 {
			t.Fatalf("the pending credential is in the validity view: %d credentials", n)
		}
		c := r.must(r.do(r.helpdesk, "POST", "/v1/challenges", map[string]any{"key_id": r.keyA, "kind": "fido2", "credential_id": added["id"]}), 201)["challenge"].(map[string]any)
		sign := func(m []byte) []byte {
			h := sha256.Sum256(m)
			s, _ := ecdsa.SignASN1(rand.Reader, k, h[:])
			return s
		}
		// A wrong signature does not let it in.
		bad := r.must(r.do(r.helpdesk, "POST", "/v1/verifications", map[string]any{"challenge_id": c["id"], "fido2": webauthnAssertion(t, "example.org", append(b64(t, c["nonce"]), 1), 1, sign)}), 201)
		if bad["ok"] != false || r.validCount(r.userA) != 2 {
			t.Fatalf("failed verification: %v", bad)
		}
		c = r.must(r.do(r.helpdesk, "POST", "/v1/challenges", map[string]any{"key_id": r.keyA, "kind": "fido2", "credential_id": added["id"]}), 201)["challenge"].(map[string]any)
		v := r.must(r.do(r.helpdesk, "POST", "/v1/verifications", map[string]any{"challenge_id": c["id"], "fido2": webauthnAssertion(t, "example.org", b64(t, c["nonce"]), 2, sign)}), 201)
		if v["ok"] != true || v["credential_confirmed"] != true {
			t.Fatalf("verification of the pending credential: %v", v)
		}
		valid := r.must(r.do(r.authserver, "GET", "/v1/validity?user_id="+r.userA, nil), 200)["credentials"].([]any)
		found := false
		for _, x := range valid {
			found = found || x.(map[string]any)["credential_id"] == added["credential_id"]
		}
		if len(valid) != 3 || !found {
			t.Fatalf("after its verification: %v", valid)
		}
	})
}

// TestInactiveUserLosesAccess: suspending or deleting a user takes their
// credentials out of the view (break glass, audited user.break_glass),
// stops a pass issued before from redeeming, refuses new passes and refuses
// their self token at once, even one the server has just cached.
func TestInactiveUserLosesAccess(t *testing.T) {
	for _, st := range []string{"suspended", "deleted"} {
		t.Run(st, func(t *testing.T) {
			onBackends(t, func(t *testing.T, r *reg) {
				pass := r.must(r.do(r.helpdesk, "POST", "/v1/users/"+r.userA+"/access-passes", map[string]any{"reason": "travel", "validity": "8h"}), 201)["pass"].(string)
				regtest.Secret(pass)
				r.must(r.do(r.selfA, "GET", "/v1/whoami", nil), 200) // the token is cached now
				u := r.must(r.do(r.admin, "GET", "/v1/users/"+r.userA, nil), 200)
				res := r.do(r.admin, "PATCH", "/v1/users/"+r.userA, map[string]any{"status": st}, "If-Match", etagOf(u))
				if res.status != 409 || res.body["code"] != "last_active_key" {
					t.Fatalf("user with valid credentials to %s without a reason: %d %s", st, res.status, res.raw)
				}
				r.must(r.do(r.admin, "PATCH", "/v1/users/"+r.userA, map[string]any{"status": st, "break_glass_reason": "offboarding"}, "If-Match", etagOf(u)), 200)
				if n := r.auditActions("user.break_glass", r.userA, "offboarding", `"to":"`+st+`"`); n != 1 {
					t.Fatalf("%d user.break_glass entries", n)
				}
				if n := r.validCount(r.userA); n != 0 {
					t.Fatalf("%s user has %d valid credentials", st, n)
				}
				for _, tok := range []string{r.helpdesk, r.selfA} {
					if res := r.do(tok, "POST", "/v1/access-passes/redeem", map[string]any{"pass": pass}); res.status == 200 || strings.Contains(string(res.raw), `"redeemed"`) {
						t.Fatalf("pass of a %s user redeemed: %d %s", st, res.status, res.raw)
					}
				}
				if res := r.do(r.helpdesk, "POST", "/v1/access-passes/redeem", map[string]any{"pass": pass}); res.status != 409 || res.body["code"] != "user_not_active" {
					t.Fatalf("pass of a %s user: %d %s", st, res.status, res.raw)
				}
				if res := r.do(r.helpdesk, "POST", "/v1/users/"+r.userA+"/access-passes", map[string]any{"reason": "again", "validity": "1h"}); res.status != 409 || res.body["code"] != "user_not_active" {
					t.Fatalf("new pass for a %s user: %d %s", st, res.status, res.raw)
				}
				for _, path := range []string{"/v1/whoami", "/v1/users/" + r.userA + "/keys"} {
					if res := r.do(r.selfA, "GET", path, nil); res.status != 403 || res.body["code"] != "user_not_active" {
						t.Fatalf("self token of a %s user on %s: %d %s", st, path, res.status, res.raw)
					}
				}
				if res := r.setStatus(r.selfA, r.keyA, map[string]any{"status": "lost"}); res.status != 403 || res.body["code"] != "user_not_active" {
					t.Fatalf("self token of a %s user changing its key: %d %s", st, res.status, res.raw)
				}
				// The pass was never used: it lists as active, and works
				// again if the user is reinstated.
				ps := r.must(r.do(r.admin, "GET", "/v1/users/"+r.userA+"/access-passes", nil), 200)["access_passes"].([]any)
				if len(ps) != 1 || ps[0].(map[string]any)["status"] != "active" {
					t.Fatalf("passes: %v", ps)
				}
				u = r.must(r.do(r.admin, "GET", "/v1/users/"+r.userA, nil), 200)
				r.must(r.do(r.admin, "PATCH", "/v1/users/"+r.userA, map[string]any{"status": "active"}, "If-Match", etagOf(u)), 200)
				r.must(r.do(r.selfA, "GET", "/v1/whoami", nil), 200)
				r.must(r.do(r.selfA, "POST", "/v1/access-passes/redeem", map[string]any{"pass": pass}), 200)
			})
		})
	}
}

// TestFIDO2ResetBreakGlass: a FIDO2 reset on a key whose FIDO2 credential
// was its owner's only one in the validity view, registering a new one the
// registry holds back (no trusted attestation), takes the owner out of the
// view until the new credential verifies: the reset's reason is audited as
// key.break_glass too.
func TestFIDO2ResetBreakGlass(t *testing.T) {
	onBackends(t, func(t *testing.T, r *reg) {
		old, fresh := mustEC(elliptic.P256()), mustEC(elliptic.P256())
		en := r.must(r.do(r.admin, "POST", "/v1/enrolments", map[string]any{
			"user":  map[string]any{"external_id": "carol"},
			"key":   map[string]any{"serial": "300"},
			"fido2": []any{map[string]any{"credential_id": []byte("carol-old"), "public_key": credential.COSEKeyES256(&old.PublicKey), "rp_id": "example.org"}},
		}), 201)
		keyID, user := en["key"].(map[string]any)["id"].(string), en["user"].(map[string]any)["id"].(string)
		prove := func(credID string, k *ecdsa.PrivateKey, count uint32) map[string]any {
			c := r.must(r.do(r.helpdesk, "POST", "/v1/challenges", map[string]any{"key_id": keyID, "kind": "fido2", "credential_id": credID}), 201)["challenge"].(map[string]any)
			sign := func(m []byte) []byte {
				h := sha256.Sum256(m)
				s, _ := ecdsa.SignASN1(rand.Reader, k, h[:])
				return s
			}
			return r.must(r.do(r.helpdesk, "POST", "/v1/verifications", map[string]any{"challenge_id": c["id"], "fido2": webauthnAssertion(t, "example.org", b64(t, c["nonce"]), count, sign)}), 201)
		}
		if v := prove(en["fido2"].([]any)[0].(map[string]any)["id"].(string), old, 1); v["key_activated"] != true {
			t.Fatalf("activation: %v", v)
		}
		if n := r.validCount(user); n != 1 {
			t.Fatalf("carol has %d valid credentials", n)
		}
		res := r.must(r.do(r.helpdesk, "POST", "/v1/keys/"+keyID+"/fido2/reset", map[string]any{"reason": "FIDO2 PIN blocked, ticket 12",
			"fido2": []any{map[string]any{"credential_id": []byte("carol-new"), "public_key": credential.COSEKeyES256(&fresh.PublicKey), "rp_id": "example.org"}}}), 200)
		nc := res["fido2"].([]any)[0].(map[string]any)
		if nc["pending"] != true {
			t.Fatalf("new credential: %v", nc)
		}
		if n := r.validCount(user); n != 0 {
			t.Fatalf("after the reset carol has %d valid credentials", n)
		}
		if n := r.auditActions("key.break_glass", keyID, "fido2_reset", "FIDO2 PIN blocked, ticket 12"); n != 1 {
			t.Fatalf("%d key.break_glass entries for the reset", n)
		}
		if v := prove(nc["id"].(string), fresh, 1); v["ok"] != true || v["credential_confirmed"] != true {
			t.Fatalf("verifying the new credential: %v", v)
		}
		if n := r.validCount(user); n != 1 {
			t.Fatalf("after the new credential verified carol has %d valid credentials", n)
		}
	})
}
