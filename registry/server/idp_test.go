package server_test

import (
	"fmt"
	"testing"
	"time"
)

// TestIDPLedger drives the identity-provider ledger through a real
// registry process: a link recorded once (a replay under the same
// Idempotency-Key, and a second recording of the same link, both answer
// the first), drift both ways from posted observations, the key lost
// (the registry's last-key guard applies first), the link deleted, each
// write in the audit log.
func TestIDPLedger(t *testing.T) {
	r := start(t)
	link := map[string]any{"provider": "entra", "method_id": "m-alice", "key_id": r.keyA, "credential_id": []byte("alice100"), "nonce": "kd-1"}
	first := r.do(r.helpdesk, "POST", "/v1/idp-links", link, "Idempotency-Key", "link-kd-1")
	l := r.must(first, 201)
	if l["user_id"] != r.userA || l["serial"] != "100" || l["state"] != "active" {
		t.Fatalf("link: %s", first.raw)
	}
	replay := r.do(r.helpdesk, "POST", "/v1/idp-links", link, "Idempotency-Key", "link-kd-1")
	if replay.status != 201 || replay.hdr.Get("Idempotency-Replayed") != "true" || replay.body["id"] != l["id"] {
		t.Fatalf("replay: %d %s", replay.status, replay.raw)
	}
	if again := r.must(r.do(r.helpdesk, "POST", "/v1/idp-links", link), 200); again["id"] != l["id"] {
		t.Fatalf("the same link under another key: %v", again)
	}
	other := map[string]any{"provider": "entra", "method_id": "m-alice", "key_id": r.keyB, "credential_id": []byte("bob200")}
	if res := r.do(r.helpdesk, "POST", "/v1/idp-links", other); res.status != 409 || res.body["code"] != "duplicate" {
		t.Fatalf("the method for another key: %d %s", res.status, res.raw)
	}
	if res := r.do(r.helpdesk, "POST", "/v1/idp-links", map[string]any{"provider": "entra"}); res.status != 422 {
		t.Fatalf("missing fields: %d %s", res.status, res.raw)
	}
	if res := r.do(r.selfA, "GET", "/v1/idp-drift", nil); res.status != 403 {
		t.Fatalf("self reading drift: %d", res.status)
	}

	observe := func(user string, ids ...string) {
		t.Helper()
		ms := []any{}
		for _, id := range ids {
			ms = append(ms, map[string]any{"id": id, "display_name": "YubiKey " + id})
		}
		r.must(r.do(r.helpdesk, "POST", "/v1/idp-observations", map[string]any{"provider": "entra", "user_id": user, "observed_at": time.Now().UTC(), "methods": ms}), 201)
	}
	drift := func() []map[string]any {
		t.Helper()
		var out []map[string]any
		for _, d := range r.must(r.do(r.admin, "GET", "/v1/idp-drift", nil), 200)["drift"].([]any) {
			out = append(out, d.(map[string]any))
		}
		return out
	}
	observe(r.userA, "m-alice")
	if d := drift(); len(d) != 0 {
		t.Fatalf("drift in agreement: %v", d)
	}
	// (b) the provider lost alice's method while her key is active.
	observe(r.userA)
	if d := drift(); len(d) != 1 || d[0]["kind"] != "missing" || d[0]["key_id"] != r.keyA || d[0]["external_id"] != "alice" {
		t.Fatalf("missing: %v", d)
	}
	// The migration readiness report shows it beside the registry's own
	// reasons: alice's new key is missing at the provider she signs in at.
	r.migrationCall("GET /v1/key-sets")
	rd := r.must(r.do(r.helpdesk, "GET", "/v1/migrations/"+r.mig.id+"/readiness", nil), 200)
	found := false
	for _, u := range rd["users"].([]any) {
		u := u.(map[string]any)
		if u["user_id"] != r.userA {
			continue
		}
		ds, _ := u["idp_drift"].([]any)
		found = len(ds) == 1 && ds[0].(map[string]any)["kind"] == "missing"
	}
	if tot := rd["totals"].([]any)[0].(map[string]any); !found || tot["idp_drift"] != float64(1) {
		t.Fatalf("readiness: %v", rd)
	}
	// (a) alice's key lost (her only active key: break glass), the
	// provider still holds its method.
	k := r.must(r.do(r.admin, "GET", "/v1/keys/"+r.keyA, nil), 200)
	if res := r.do(r.admin, "POST", "/v1/keys/"+r.keyA+"/status", map[string]any{"status": "lost"}, "If-Match", fmt.Sprint(k["version"])); res.status != 409 || res.body["code"] != "last_active_key" {
		t.Fatalf("losing the last key without a reason: %d %s", res.status, res.raw)
	}
	r.must(r.do(r.admin, "POST", "/v1/keys/"+r.keyA+"/status", map[string]any{"status": "lost", "break_glass_reason": "left on a train"}, "If-Match", fmt.Sprint(k["version"])), 200)
	observe(r.userA, "m-alice")
	if d := drift(); len(d) != 1 || d[0]["kind"] != "held-invalid" || d[0]["method_id"] != "m-alice" || d[0]["key_status"] != "lost" {
		t.Fatalf("held-invalid: %v", d)
	}
	del := r.must(r.do(r.helpdesk, "POST", "/v1/idp-links/"+l["id"].(string)+"/delete", nil), 200)
	if del["state"] != "deleted" || del["deleted_at"] == nil {
		t.Fatalf("deleted link: %v", del)
	}
	if res := r.do(r.helpdesk, "POST", "/v1/idp-links/idl_none/delete", nil); res.status != 404 {
		t.Fatalf("deleting an unknown link: %d", res.status)
	}
	observe(r.userA)
	if d := drift(); len(d) != 0 {
		t.Fatalf("drift once the provider let go: %v", d)
	}
	ls := r.must(r.do(r.helpdesk, "GET", "/v1/idp-links?key_id="+r.keyA, nil), 200)["links"].([]any)
	if len(ls) != 1 || ls[0].(map[string]any)["state"] != "deleted" {
		t.Fatalf("links: %v", ls)
	}
	n := map[string]int{}
	for _, e := range r.must(r.do(r.admin, "GET", "/v1/audit?limit=500", nil), 200)["entries"].([]any) {
		n[e.(map[string]any)["action"].(string)]++
	}
	if n["idp_link.create"] != 1 || n["idp_link.delete"] != 1 || n["idp_observation.put"] != 4 {
		t.Fatalf("audit: %v", n)
	}
	r.must(r.do(r.admin, "GET", "/v1/audit/verify", nil), 200)
}
