package server_test

import (
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/credential"
)

// TestFIDO2ResetRevokesInOneChangeSet: finding a key by serial, then a FIDO2
// reset that revokes the old credential and registers the new one in a
// single change set, leaving only the new one valid; recovery steps are
// audited with the helpdesk's identity.
func TestFIDO2ResetRevokesInOneChangeSet(t *testing.T) {
	r := start(t)
	k := r.must(r.do(r.helpdesk, "GET", "/v1/keys?serial=100", nil), 200)
	if k["id"] != r.keyA || len(k["fido2"].([]any)) != 1 {
		t.Fatalf("find by serial: %v", k)
	}
	r.must(r.do(r.helpdesk, "GET", "/v1/keys?serial=999", nil), 404)
	before := r.head()
	res := r.must(r.do(r.helpdesk, "POST", "/v1/keys/"+r.keyA+"/fido2/reset", map[string]any{"reason": "fido2 pin blocked",
		"fido2": []any{map[string]any{"credential_id": []byte("after-reset"), "public_key": credential.COSEKeyES256(&p256.PublicKey), "rp_id": "example.org", "cred_protect": 2}}}), 200)
	if rv := res["revoked"].([]any); len(rv) != 1 || rv[0] != r.fidoA {
		t.Fatalf("revoked: %v", res["revoked"])
	}
	ch := r.must(r.do(r.admin, "GET", "/v1/changes?after="+before, nil), 200)
	seqs := map[any]bool{}
	var ops []string
	for _, c := range ch["changes"].([]any) {
		m := c.(map[string]any)
		seqs[m["seq"]] = true
		ops = append(ops, m["entity"].(string)+"."+m["op"].(string))
	}
	if len(seqs) != 1 || strings.Join(ops, ",") != "fido2_credential.revoke,fido2_credential.create" {
		t.Fatalf("change sets %v, ops %v", seqs, ops)
	}
	d := r.must(r.do(r.admin, "GET", "/v1/keys/"+r.keyA, nil), 200)
	if f := d["fido2"].([]any); len(f) != 1 || f[0].(map[string]any)["id"] == r.fidoA {
		t.Fatalf("credentials after reset: %v", f)
	}
	if res := r.do(r.helpdesk, "POST", "/v1/keys/"+r.keyA+"/fido2/reset", map[string]any{}); res.status != 422 {
		t.Fatalf("reset without reason: %d %s", res.status, res.raw)
	}
	r.must(r.do(r.helpdesk, "POST", "/v1/keys/"+r.keyA+"/recovery-events", map[string]any{"action": "piv_pin_unblocked", "note": "ticket 42"}), 201)
	if res := r.do(r.helpdesk, "POST", "/v1/keys/"+r.keyA+"/recovery-events", map[string]any{"action": "anything"}); res.status != 422 {
		t.Fatalf("unknown action: %d %s", res.status, res.raw)
	}
	log := r.do(r.admin, "GET", "/v1/audit?action=recovery.piv_pin_unblocked", nil)
	if log.status != 200 || !strings.Contains(string(log.raw), "helpdesk:desk-1") || !strings.Contains(string(log.raw), "ticket 42") {
		t.Fatalf("audit: %d %s", log.status, log.raw)
	}
	r.must(r.do(r.admin, "GET", "/v1/audit/verify", nil), 200)
}
