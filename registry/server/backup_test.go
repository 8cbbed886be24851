package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/regtest"
	"github.com/keydesk/keydesk/registry/server"
)

// bare starts a registry with only an admin token.
func bare(t *testing.T) *reg {
	t.Helper()
	state := t.TempDir()
	admin, err := regtest.Token(bin, state, "admin", "restorer", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.Start(bin, state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &reg{t: t, p: p, admin: admin}
}

// TestExportImportKeepsAuditChain: an organisation export restored into an
// empty registry keeps the source's audit chain verbatim and verifiable,
// with the new registry's own entries chained after it; the records and
// the validity view match; a tampered chain and a non-empty target are
// refused; a one-user export restores that user only.
func TestExportImportKeepsAuditChain(t *testing.T) {
	a := start(t)
	// Bodies go back as the raw bytes: audit times are nanoseconds, more
	// than a float64 holds.
	xres := a.do(a.admin, "GET", "/v1/export", nil)
	x := a.must(xres, 200)
	xraw := xres.raw
	if x["scope"] != "organisation" || len(x["users"].([]any)) != 2 || len(x["audit"].([]any)) == 0 || x["audit_key"] == nil {
		t.Fatalf("export: %v", x)
	}
	if res := a.do(a.admin, "POST", "/v1/import", xraw); res.status != 422 || res.body["code"] != "registry_not_empty" {
		t.Fatalf("import into a registry in use: %d %s", res.status, res.raw)
	}
	if res := a.do(a.helpdesk, "GET", "/v1/export", nil); res.status != 403 {
		t.Fatalf("helpdesk export: %d", res.status)
	}

	// A tampered chain is refused and writes nothing.
	b := bare(t)
	var bad map[string]any
	dec := json.NewDecoder(bytes.NewReader(xraw))
	dec.UseNumber()
	dec.Decode(&bad)
	bad["audit"].([]any)[0].(map[string]any)["actor"] = "someone-else"
	if res := b.do(b.admin, "POST", "/v1/import", bad); res.status != 422 || res.body["code"] != "audit_chain_broken" {
		t.Fatalf("tampered import: %d %s", res.status, res.raw)
	}

	out := b.must(b.do(b.admin, "POST", "/v1/import", xraw), 201)
	if out["users"].(float64) != 2 || out["keys"].(float64) != 2 || int(out["audit_entries"].(float64)) != len(x["audit"].([]any)) || out["rechained"].(float64) < 1 {
		t.Fatalf("import: %v", out)
	}
	v := b.must(b.do(b.admin, "GET", "/v1/audit/verify", nil), 200)
	if v["ok"] != true {
		t.Fatalf("audit verify after restore: %v", v)
	}
	if out, err := regtest.AuditVerify(bin, b.p.State); err != nil {
		t.Fatalf("keydesk-registry audit verify: %v: %s", err, out)
	}
	// The source's entries are there verbatim, in order.
	log := b.must(b.do(b.admin, "GET", "/v1/audit?limit=1000", nil), 200)["entries"].([]any)
	srcAudit := x["audit"].([]any)
	for i, e := range srcAudit {
		got, want := log[i].(map[string]any), e.(map[string]any)
		if got["action"] != want["action"] || got["actor"] != want["actor"] || int(got["seq"].(float64)) != int(want["seq"].(float64)) {
			t.Fatalf("entry %d: %v, want %v", i+1, got, want)
		}
	}
	if !strings.Contains(string(b.do(b.admin, "GET", "/v1/audit?action=registry.restore", nil).raw), "last_checkpoint") {
		t.Fatal("no registry.restore entry with the source's checkpoint")
	}
	// Same records, same validity view.
	va := a.must(a.do(a.admin, "GET", "/v1/users/"+a.userA+"/keys", nil), 200)
	vb := b.must(b.do(b.admin, "GET", "/v1/users/"+a.userA+"/keys", nil), 200)
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	if string(ja) != string(jb) {
		t.Fatalf("keys differ:\n%s\n%s", ja, jb)
	}
	r := b.must(b.do(b.admin, "GET", "/v1/keys/"+a.keyA, nil), 200)
	if len(r["fido2"].([]any)) != 1 || len(r["piv"].([]any)) != 1 {
		t.Fatalf("restored key: %v", r)
	}
	// The FIDO2 credential comes back whole, with the clientDataJSON of
	// its registration.
	src := a.must(a.do(a.admin, "GET", "/v1/keys/"+a.keyA, nil), 200)["fido2"].([]any)[0].(map[string]any)
	got := r["fido2"].([]any)[0].(map[string]any)
	js, _ := json.Marshal(src)
	jg, _ := json.Marshal(got)
	if src["attestation_client_data_json"] == nil || string(js) != string(jg) {
		t.Fatalf("restored fido2 credential:\n%s\nwant\n%s", jg, js)
	}

	// One user's export.
	ures := a.do(a.admin, "GET", "/v1/export?user_id="+a.userB, nil)
	ux := a.must(ures, 200)
	if ux["scope"] != "user" || len(ux["users"].([]any)) != 1 || ux["audit"] != nil {
		t.Fatalf("user export: %v", ux)
	}
	c := bare(t)
	uo := c.must(c.do(c.admin, "POST", "/v1/import", ures.raw), 201)
	if uo["users"].(float64) != 1 || uo["audit_entries"].(float64) != 0 {
		t.Fatalf("user import: %v", uo)
	}
	c.must(c.do(c.admin, "GET", "/v1/audit/verify", nil), 200)
}

// TestImportTakesLargeBundles: a bundle over the ordinary 1 MiB request
// limit (5,000 users) is restored; other writes keep the 1 MiB limit.
func TestImportTakesLargeBundles(t *testing.T) {
	b := bare(t)
	var buf bytes.Buffer
	buf.WriteString(`{"format":"keydesk-registry-export/1","scope":"user","users":[`)
	for i := 0; i < 5000; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"id":"usr_bulk%05d","external_id":"bulk-user-%05d","display_name":"Bulk User Number %05d with a long name","email":"bulk%05d@example.org","groups":["engineering","on-call"],"status":"active","version":1,"created_at":"2026-11-25T10:00:00Z","updated_at":"2026-11-25T10:00:00Z"}`, i, i, i, i)
	}
	buf.WriteString(`],"keys":[],"fido2":[],"piv":[],"escrow":[],"key_sets":[]}`)
	if buf.Len() <= server.MaxBody {
		t.Fatalf("bundle of %d bytes is not over the ordinary limit", buf.Len())
	}
	out := b.must(b.do(b.admin, "POST", "/v1/import", buf.Bytes()), 201)
	if out["users"].(float64) != 5000 {
		t.Fatalf("import: %v", out)
	}
	b.must(b.do(b.admin, "GET", "/v1/audit/verify", nil), 200)
	big := strings.Repeat("x", server.MaxBody)
	if res := b.do(b.admin, "POST", "/v1/users", map[string]any{"external_id": big}); res.status != 413 {
		t.Fatalf("ordinary write over 1 MiB: %d", res.status)
	}
}
