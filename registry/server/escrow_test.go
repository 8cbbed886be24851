package server_test

import (
	"testing"
)

// TestActivationNeedsEscrow: a key with PIV slots that proves possession
// stays pending while the registry holds no escrow for it (the helpdesk
// could never unblock its PIV PIN), and is activated by the next proof once
// the escrow is stored; asking for active is 409 escrow_missing meanwhile.
func TestActivationNeedsEscrow(t *testing.T) {
	r := start(t)
	out := r.enrol("ivy", "7101", false)
	id := out["key"].(map[string]any)["id"].(string)
	slot := out["piv"].([]any)[0].(map[string]any)["id"].(string)
	v := r.provePIV(r.admin, id, slot, p256)
	if v["ok"] != true || v["key_activated"] != false || v["key_status"] != "pending" || v["activation_refused"] != "escrow_missing" {
		t.Fatalf("proof without escrow: %v", v)
	}
	if res := r.do(r.admin, "POST", "/v1/keys/"+id+"/status", map[string]any{"status": "active"}, "If-Match", `"v1"`); res.status != 409 || res.body["code"] != "escrow_missing" {
		t.Fatalf("proven, activated without escrow: %d %s", res.status, res.raw)
	}
	if k := r.must(r.do(r.admin, "GET", "/v1/keys/"+id, nil), 200); k["status"] != "pending" {
		t.Fatalf("key is %v", k["status"])
	}
	r.must(r.do(r.admin, "PUT", "/v1/keys/"+id+"/escrow/piv", map[string]any{"blob": []byte("sealed")}), 200)
	v = r.provePIV(r.admin, id, slot, p256)
	if v["ok"] != true || v["key_activated"] != true || v["key_status"] != "active" || v["activation_refused"] != nil {
		t.Fatalf("proof with escrow: %v", v)
	}
}
