package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/regtest"
)

// TestAccessPassRedeem: a pass is shown once, redeemed once, never by
// another user's self token, and the list shows its status, never the pass.
func TestAccessPassRedeem(t *testing.T) {
	r := start(t)
	issued := r.must(r.do(r.helpdesk, "POST", "/v1/users/"+r.userB+"/access-passes", map[string]any{"reason": "key left at home", "validity": "8h"}), 201)
	pass := issued["pass"].(string)
	// alice's self token cannot redeem bob's pass, and trying leaves it usable.
	if res := r.do(r.selfA, "POST", "/v1/access-passes/redeem", map[string]any{"pass": pass}); res.status != 409 || res.body["code"] != "access_pass_unusable" {
		t.Fatalf("self redeeming another user's pass: %d %s", res.status, res.raw)
	}
	red := r.must(r.do(r.helpdesk, "POST", "/v1/access-passes/redeem", map[string]any{"pass": pass}), 200)
	if red["user"].(map[string]any)["id"] != r.userB || red["access_pass"].(map[string]any)["status"] != "redeemed" {
		t.Fatalf("redeem: %v", red)
	}
	if res := r.do(r.helpdesk, "POST", "/v1/access-passes/redeem", map[string]any{"pass": pass}); res.status != 409 || res.body["code"] != "access_pass_unusable" || !strings.Contains(res.body["message"].(string), "redeemed") {
		t.Fatalf("second redeem: %d %s", res.status, res.raw)
	}
	if res := r.do(r.helpdesk, "POST", "/v1/access-passes/redeem", map[string]any{"pass": "made-up"}); res.status != 409 {
		t.Fatalf("unknown pass: %d %s", res.status, res.raw)
	}
	list := r.must(r.do(r.admin, "GET", "/v1/users/"+r.userB+"/access-passes", nil), 200)
	ps := list["access_passes"].([]any)
	if len(ps) != 1 || ps[0].(map[string]any)["status"] != "redeemed" || ps[0].(map[string]any)["redeemed_at"] == nil {
		t.Fatalf("list: %s", trunc(list2raw(r, r.userB)))
	}
	if strings.Contains(string(list2raw(r, r.userB)), pass) {
		t.Fatal("the pass itself is listed")
	}
	// A self token redeems its own pass.
	own := r.must(r.do(r.helpdesk, "POST", "/v1/users/"+r.userA+"/access-passes", map[string]any{"reason": "travel", "validity": "1h"}), 201)["pass"].(string)
	r.must(r.do(r.selfA, "POST", "/v1/access-passes/redeem", map[string]any{"pass": own}), 200)
}

func list2raw(r *reg, user string) []byte {
	return r.do(r.admin, "GET", "/v1/users/"+user+"/access-passes", nil).raw
}

// TestTokensListAndRevoke: the API and the CLI list tokens without secrets;
// a revoked token stops authenticating at once on the registry that revoked
// it, and a name can be reused only after revocation.
func TestTokensListAndRevoke(t *testing.T) {
	r := start(t)
	ts := r.must(r.do(r.admin, "GET", "/v1/tokens", nil), 200)["tokens"].([]any)
	names := map[string]bool{}
	for _, x := range ts {
		names[x.(map[string]any)["name"].(string)] = true
	}
	if len(ts) != 4 || !names["idp-1"] || !names["first-admin"] || !names["desk-1"] || !names["alice-laptop"] {
		t.Fatalf("tokens: %v", ts)
	}
	if raw := r.do(r.admin, "GET", "/v1/tokens", nil).raw; strings.Contains(string(raw), r.helpdesk) || strings.Contains(string(raw), "hash") {
		t.Fatalf("token list leaks secrets: %s", raw)
	}
	r.must(r.do(r.helpdesk, "GET", "/v1/users", nil), 200) // cached now
	r.must(r.do(r.admin, "POST", "/v1/tokens/desk-1/revoke", nil), 200)
	if res := r.do(r.helpdesk, "GET", "/v1/users", nil); res.status != 401 {
		t.Fatalf("revoked token: %d", res.status)
	}
	if res := r.do(r.admin, "POST", "/v1/tokens/desk-1/revoke", nil); res.status != 404 {
		t.Fatalf("revoking twice: %d %s", res.status, res.raw)
	}
	// The CLI: a second token named desk-1 is fine now; a third is not.
	if _, err := regtest.Token(bin, r.p.State, "helpdesk", "desk-1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := regtest.Token(bin, r.p.State, "helpdesk", "desk-1", ""); err == nil {
		t.Fatal("two live tokens with one name")
	}
	out, err := runBin("token", "list", "--state", r.p.State)
	if err != nil || strings.Count(out, "desk-1") != 2 || !strings.Contains(out, "REVOKED") {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	if out, err := runBin("token", "revoke", "--state", r.p.State, "--name", "alice-laptop"); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("token revoke: %v %s", err, out)
	}
	r.p.Stop()
	if out, err := regtest.AuditVerify(bin, r.p.State); err != nil {
		t.Fatalf("audit after revocations: %v %s", err, out)
	}
}

// TestAuditList pages through the audit log with filters.
func TestAuditList(t *testing.T) {
	r := start(t)
	for i := 0; i < 5; i++ {
		r.must(r.do(r.admin, "POST", "/v1/users", map[string]any{"external_id": fmt.Sprintf("audit-%d", i)}), 201)
	}
	var all []map[string]any
	after := "0"
	for pages := 0; ; pages++ {
		res := r.must(r.do(r.admin, "GET", "/v1/audit?limit=3&after="+after, nil), 200)
		for _, e := range res["entries"].([]any) {
			all = append(all, e.(map[string]any))
		}
		if res["next"] == "" {
			break
		}
		after = res["next"].(string)
		if pages > 100 {
			t.Fatal("paging does not end")
		}
	}
	for i, e := range all {
		if e["seq"].(float64) != float64(i+1) {
			t.Fatalf("entry %d has seq %v", i, e["seq"])
		}
		if i > 0 && e["prev_hash"] != all[i-1]["hash"] {
			t.Fatalf("entry %d does not chain", i)
		}
	}
	created := r.must(r.do(r.admin, "GET", "/v1/audit?action=user.create&actor=admin:first-admin", nil), 200)["entries"].([]any)
	if len(created) != 7 { // alice, bob (enrolments) and the five above
		t.Fatalf("%d user.create entries by the admin", len(created))
	}
	if none := r.must(r.do(r.admin, "GET", "/v1/audit?actor=helpdesk:desk-1", nil), 200)["entries"].([]any); len(none) != 0 {
		t.Fatalf("helpdesk entries: %v", none)
	}
	if res := r.do(r.admin, "GET", "/v1/audit?limit=0", nil); res.status != 400 {
		t.Fatalf("limit 0: %d", res.status)
	}
}

// TestCoverage: covered only with an active primary and an active backup.
func TestCoverage(t *testing.T) {
	r := start(t)
	cov := func() map[string]any { return r.must(r.do(r.selfA, "GET", "/v1/users/"+r.userA+"/coverage", nil), 200) }
	if c := cov(); c["covered"] != false || c["active_keys"].(float64) != 1 || fmt.Sprint(c["missing"]) != "[backup]" {
		t.Fatalf("one primary key: %v", c)
	}
	en := r.must(r.do(r.admin, "POST", "/v1/enrolments", map[string]any{
		"user": map[string]any{"external_id": "alice"}, "key": map[string]any{"serial": "101", "role": "backup"},
		"piv": []any{map[string]any{"slot": "9a", "public_key": pkixDER(&p256.PublicKey)}},
	}), 201)
	if c := cov(); c["covered"] != false {
		t.Fatalf("pending backup counted: %v", c)
	}
	keyID := en["key"].(map[string]any)["id"].(string)
	r.must(r.do(r.admin, "PUT", "/v1/keys/"+keyID+"/escrow/piv", map[string]any{"blob": []byte("sealed")}), 200)
	r.provePIV(r.selfA, keyID, en["piv"].([]any)[0].(map[string]any)["id"].(string), p256)
	if c := cov(); c["covered"] != true || c["active_keys"].(float64) != 2 || fmt.Sprint(c["backup"]) != "["+keyID+"]" {
		t.Fatalf("primary and backup: %v", c)
	}
	if res := r.do(r.selfA, "GET", "/v1/users/"+r.userB+"/coverage", nil); res.status != 403 {
		t.Fatalf("self on another user's coverage: %d", res.status)
	}
}

// TestWhoAmI: each token learns its own name, role and bound user, and no
// more.
func TestWhoAmI(t *testing.T) {
	r := start(t)
	for _, c := range []struct{ tok, name, role, user string }{
		{r.admin, "first-admin", "admin", ""},
		{r.helpdesk, "desk-1", "helpdesk", ""},
		{r.selfA, "alice-laptop", "self", r.userA},
		{r.authserver, "idp-1", "authserver", ""},
	} {
		got := r.must(r.do(c.tok, "GET", "/v1/whoami", nil), 200)
		if got["name"] != c.name || got["role"] != c.role || got["user_id"] != c.user {
			t.Errorf("whoami as %s: %v, want name %s role %s user %q", c.name, got, c.name, c.role, c.user)
		}
	}
	if res := r.do("", "GET", "/v1/whoami", nil); res.status != 401 {
		t.Fatalf("whoami without a token: %d", res.status)
	}
	if res := r.do("kdr_not-a-token-at-all-xxxxxxxx", "GET", "/v1/whoami", nil); res.status != 401 {
		t.Fatalf("whoami with an unknown token: %d", res.status)
	}
}
