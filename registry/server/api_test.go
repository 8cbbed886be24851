package server_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/regtest"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

var bin string

func TestMain(m *testing.M) { regtest.RunTests(m, &bin, pgtest.StopShared) }

// reg is a running registry process with tokens for every role.
type reg struct {
	t                      *testing.T
	p                      *regtest.Process
	admin, helpdesk, selfA string
	authserver             string
	mig                    *migFixture
	userA, userB           string
	keyA, keyB             string
	pivA, fidoA            string
	n                      atomic.Int64
}

func start(t *testing.T, extra ...string) *reg {
	t.Helper()
	state := t.TempDir()
	admin, err := regtest.Token(bin, state, "admin", "first-admin", "")
	if err != nil {
		t.Fatal(err)
	}
	helpdesk, err := regtest.Token(bin, state, "helpdesk", "desk-1", "")
	if err != nil {
		t.Fatal(err)
	}
	authserver, err := regtest.Token(bin, state, "authserver", "idp-1", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.Start(bin, state, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	r := &reg{t: t, p: p, admin: admin, helpdesk: helpdesk, authserver: authserver}
	a := r.enrol("alice", "100", true)
	b := r.enrol("bob", "200", false)
	r.userA, r.keyA = a["user"].(map[string]any)["id"].(string), a["key"].(map[string]any)["id"].(string)
	r.userB, r.keyB = b["user"].(map[string]any)["id"].(string), b["key"].(map[string]any)["id"].(string)
	r.pivA = a["piv"].([]any)[0].(map[string]any)["id"].(string)
	r.fidoA = a["fido2"].([]any)[0].(map[string]any)["id"].(string)
	if r.selfA, err = regtest.Token(bin, state, "self", "alice-laptop", r.userA); err != nil {
		t.Fatal(err)
	}
	return r
}

type resp struct {
	status int
	hdr    http.Header
	body   map[string]any
	raw    []byte
}

func (r *reg) do(tok, method, path string, body any, hdr ...string) resp {
	r.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, r.p.URL+path, rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if method != "GET" {
		req.Header.Set("Idempotency-Key", fmt.Sprintf("k-%d-%d", time.Now().UnixNano(), r.n.Add(1)))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := resp{status: res.StatusCode, hdr: res.Header, raw: raw}
	json.Unmarshal(raw, &out.body)
	return out
}

func (r *reg) must(res resp, status int) map[string]any {
	r.t.Helper()
	if res.status != status {
		r.t.Fatalf("status %d, want %d: %s", res.status, status, res.raw)
	}
	return res.body
}

var p256 = mustEC(elliptic.P256())

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey { k, _ := ecdsa.GenerateKey(c, rand.Reader); return k }

func pkixDER(pub crypto.PublicKey) []byte { b, _ := x509.MarshalPKIXPublicKey(pub); return b }

// enrol registers a key with one FIDO2 credential (ES256) and a PIV 9a
// slot. The key starts pending; with active it then proves possession
// with a PIV signature, which activates it.
func (r *reg) enrol(ext, serial string, active bool) map[string]any {
	body := map[string]any{
		"user": map[string]any{"external_id": ext, "display_name": ext},
		"key":  map[string]any{"serial": serial, "key_sets": []string{"yk5-2026"}},
		"fido2": []any{map[string]any{"credential_id": []byte(ext + serial), "public_key": credential.COSEKeyES256(&p256.PublicKey), "rp_id": "example.org", "cred_protect": 2,
			"attestation_client_data_json": []byte(`{"type":"webauthn.create","challenge":"` + ext + `","origin":"https://example.org","crossOrigin":false}`)}},
		"piv": []any{map[string]any{"slot": "9a", "public_key": pkixDER(&p256.PublicKey)}},
	}
	out := r.must(r.do(r.admin, "POST", "/v1/enrolments", body), 201)
	if st := out["key"].(map[string]any)["status"]; st != "pending" {
		r.t.Fatalf("enrolled key is %v, want pending", st)
	}
	if active {
		// A key with PIV slots is activated only with its escrow stored.
		r.must(r.do(r.admin, "PUT", "/v1/keys/"+out["key"].(map[string]any)["id"].(string)+"/escrow/piv", map[string]any{"blob": []byte("sealed")}), 200)
		v := r.provePIV(r.admin, out["key"].(map[string]any)["id"].(string), out["piv"].([]any)[0].(map[string]any)["id"].(string), p256)
		if v["ok"] != true || v["key_activated"] != true || v["key_status"] != "active" {
			r.t.Fatalf("proof did not activate the key: %v", v)
		}
		out["key"] = r.must(r.do(r.admin, "GET", "/v1/keys/"+out["key"].(map[string]any)["id"].(string), nil), 200)
	}
	return out
}

// provePIV asks for a challenge on a PIV slot and answers it with k.
func (r *reg) provePIV(tok, keyID, slotID string, k *ecdsa.PrivateKey) map[string]any {
	r.t.Helper()
	c := r.must(r.do(tok, "POST", "/v1/challenges", map[string]any{"key_id": keyID, "kind": "piv", "credential_id": slotID}), 201)["challenge"].(map[string]any)
	nonce, err := base64.StdEncoding.DecodeString(c["nonce"].(string))
	if err != nil {
		r.t.Fatal(err)
	}
	h := sha256.Sum256(nonce)
	sig, _ := ecdsa.SignASN1(rand.Reader, k, h[:])
	return r.must(r.do(tok, "POST", "/v1/verifications", map[string]any{"challenge_id": c["id"], "piv": map[string]any{"signature": sig}}), 201)
}

func (r *reg) head() string {
	return r.must(r.do(r.admin, "GET", "/v1/changes?after=0&limit=1", nil), 200)["head"].(string)
}

func TestIdempotentReplay(t *testing.T) {
	r := start(t)
	body := map[string]any{"external_id": "carol"}
	a := r.do(r.admin, "POST", "/v1/users", body, "Idempotency-Key", "same")
	b := r.do(r.admin, "POST", "/v1/users", body, "Idempotency-Key", "same")
	if a.status != 201 || b.status != 201 || a.body["id"] != b.body["id"] || b.hdr.Get("Idempotency-Replayed") != "true" {
		t.Fatalf("replay: %d %s / %d %s", a.status, a.raw, b.status, b.raw)
	}
	c := r.do(r.admin, "POST", "/v1/users", map[string]any{"external_id": "dave"}, "Idempotency-Key", "same")
	if c.status != 422 || c.body["code"] != "idempotency_key_reused" {
		t.Fatalf("reuse: %d %s", c.status, c.raw)
	}
	if d := r.do(r.admin, "POST", "/v1/users", body, "Idempotency-Key", ""); d.status != 400 || d.body["code"] != "idempotency_key_required" {
		t.Fatalf("missing key: %d %s", d.status, d.raw)
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	r := start(t)
	before := r.head()
	selfCert := func(pub crypto.PublicKey, signer crypto.Signer) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkixName("x"), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	other := mustEC(elliptic.P256())
	enrol := func(mod func(m map[string]any)) map[string]any {
		m := map[string]any{
			"user":  map[string]any{"external_id": "eve"},
			"key":   map[string]any{"serial": "900"},
			"fido2": []any{map[string]any{"credential_id": []byte("c"), "public_key": credential.COSEKeyES256(&p256.PublicKey), "rp_id": "example.org"}},
			"piv":   []any{map[string]any{"slot": "9a", "public_key": pkixDER(&p256.PublicKey), "certificate": selfCert(&p256.PublicKey, p256)}},
		}
		mod(m)
		return m
	}
	cases := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"malformed", `{"user": {`, 400, "malformed_json"},
		{"trailing", `{"user":{"external_id":"x"},"key":{"serial":"1"}} {}`, 400, "malformed_json"},
		{"unknown field", enrol(func(m map[string]any) { m["pin"] = "123456" }), 400, "unknown_field"},
		{"wrong type", enrol(func(m map[string]any) { m["key"] = map[string]any{"serial": 900} }), 400, "wrong_type"},
		{"oversized", `{"user":{"external_id":"` + strings.Repeat("a", 2<<20) + `"}}`, 413, "body_too_large"},
		{"invalid cose", enrol(func(m map[string]any) {
			m["fido2"].([]any)[0].(map[string]any)["public_key"] = []byte{0xa1, 0x01, 0x02}
		}), 422, "invalid_cose_key"},
		{"cose not cbor", enrol(func(m map[string]any) { m["fido2"].([]any)[0].(map[string]any)["public_key"] = []byte("nope") }), 422, "invalid_cose_key"},
		{"invalid piv key", enrol(func(m map[string]any) { m["piv"].([]any)[0].(map[string]any)["public_key"] = []byte("nope") }), 422, "invalid_public_key"},
		{"garbage certificate", enrol(func(m map[string]any) { m["piv"].([]any)[0].(map[string]any)["certificate"] = []byte("nope") }), 422, "invalid_certificate"},
		{"certificate for another key", enrol(func(m map[string]any) {
			m["piv"].([]any)[0].(map[string]any)["certificate"] = selfCert(&other.PublicKey, other)
		}), 422, "invalid_certificate"},
		{"bad slot", enrol(func(m map[string]any) { m["piv"].([]any)[0].(map[string]any)["slot"] = "9f" }), 422, "invalid_slot"},
		// Valid credentials but the second part of the change set fails:
		// the user and key created first must not remain.
		{"duplicate credential rolls back", enrol(func(m map[string]any) {
			m["fido2"] = append(m["fido2"].([]any), m["fido2"].([]any)[0])
		}), 409, "duplicate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := r.do(r.admin, "POST", "/v1/enrolments", c.body)
			if res.status != c.status || res.body["code"] != c.code || res.body["message"] == "" {
				t.Fatalf("got %d %s, want %d %s", res.status, trunc(res.raw), c.status, c.code)
			}
		})
	}
	if h := r.head(); h != before {
		t.Fatalf("bad input changed the feed: head %s -> %s", before, h)
	}
	if res := r.do(r.admin, "GET", "/v1/users?limit=10", nil); len(res.body["users"].([]any)) != 2 {
		t.Fatalf("users after bad input: %s", res.raw)
	}
}

func pkixName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }

func trunc(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

func TestLastKeyGuardAndConcurrency(t *testing.T) {
	r := start(t)
	path := "/v1/keys/" + r.keyA + "/status"
	if res := r.do(r.admin, "POST", path, map[string]any{"status": "lost"}); res.status != 428 {
		t.Fatalf("no If-Match: %d %s", res.status, res.raw)
	}
	// alice's key is at version 2: enrolled, then activated by its proof.
	res := r.do(r.admin, "POST", path, map[string]any{"status": "lost"}, "If-Match", `"v2"`)
	if res.status != 409 || res.body["code"] != "last_active_key" {
		t.Fatalf("last key: %d %s", res.status, res.raw)
	}
	k := r.must(r.do(r.admin, "GET", "/v1/keys/"+r.keyA, nil), 200)
	if k["status"] != "active" {
		t.Fatalf("refused change applied: %v", k["status"])
	}
	res = r.do(r.admin, "POST", path, map[string]any{"status": "lost", "break_glass_reason": "lost on a trip; TAP issued"}, "If-Match", `"v2"`)
	r.must(res, 200)
	if res.hdr.Get("ETag") != `"v3"` {
		t.Fatalf("etag %q", res.hdr.Get("ETag"))
	}
	stale := r.do(r.admin, "POST", path, map[string]any{"status": "revoked"}, "If-Match", `"v1"`)
	cur, _ := stale.body["current"].(map[string]any)
	if stale.status != 409 || stale.body["code"] != "version_conflict" || cur["status"] != "lost" || cur["version"].(float64) != 3 {
		t.Fatalf("stale write: %d %s", stale.status, stale.raw)
	}
	out := r.must(r.do(r.admin, "GET", "/v1/audit/verify", nil), 200)
	if out["ok"] != true {
		t.Fatalf("audit: %v", out)
	}
}

func webauthnAssertion(t *testing.T, rpID string, nonce []byte, count uint32, sign func([]byte) []byte) map[string]any {
	cd, _ := json.Marshal(map[string]any{"type": "webauthn.get", "challenge": base64.RawURLEncoding.EncodeToString(nonce), "origin": "https://" + rpID, "crossOrigin": false})
	rh := sha256.Sum256([]byte(rpID))
	ad := append(rh[:], 0x05, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(ad[33:], count)
	h := sha256.Sum256(cd)
	return map[string]any{"authenticator_data": ad, "client_data_json": cd, "signature": sign(append(append([]byte{}, ad...), h[:]...))}
}

func b64(t *testing.T, v any) []byte {
	b, err := base64.StdEncoding.DecodeString(v.(string))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifications(t *testing.T) {
	r := start(t)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	p384 := mustEC(elliptic.P384())
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecSign := func(k *ecdsa.PrivateKey, h crypto.Hash) func([]byte) []byte {
		return func(m []byte) []byte {
			hh := h.New()
			hh.Write(m)
			s, _ := ecdsa.SignASN1(rand.Reader, k, hh.Sum(nil))
			return s
		}
	}
	// A key with an EdDSA FIDO2 credential and PIV slots of every algorithm.
	en := r.must(r.do(r.admin, "POST", "/v1/enrolments", map[string]any{
		"user":  map[string]any{"external_id": "frank"},
		"key":   map[string]any{"serial": "300"},
		"fido2": []any{map[string]any{"credential_id": []byte("ed"), "public_key": credential.COSEKeyEdDSA(edPriv.Public().(ed25519.PublicKey)), "rp_id": "example.org"}},
		"piv": []any{
			map[string]any{"slot": "9a", "public_key": pkixDER(&p256.PublicKey)},
			map[string]any{"slot": "9c", "public_key": pkixDER(&p384.PublicKey)},
			map[string]any{"slot": "9d", "public_key": pkixDER(&rsaKey.PublicKey)},
			map[string]any{"slot": "9e", "public_key": pkixDER(edPriv.Public())},
		},
	}), 201)
	keyID := en["key"].(map[string]any)["id"].(string)
	edCred := en["fido2"].([]any)[0].(map[string]any)["id"].(string)
	challenge := func(tok, kind, cred string) (string, []byte) {
		c := r.must(r.do(tok, "POST", "/v1/challenges", map[string]any{"key_id": keyID, "kind": kind, "credential_id": cred}), 201)["challenge"].(map[string]any)
		return c["id"].(string), b64(t, c["nonce"])
	}
	verify := func(tok string, body map[string]any) map[string]any {
		return r.must(r.do(tok, "POST", "/v1/verifications", body), 201)
	}
	pivSigners := map[string]func([]byte) []byte{
		"9a": func(n []byte) []byte { return ecSign(p256, crypto.SHA256)(n) },
		"9c": func(n []byte) []byte { return ecSign(p384, crypto.SHA384)(n) },
		"9d": func(n []byte) []byte {
			h := sha256.Sum256(n)
			s, _ := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, h[:])
			return s
		},
		"9e": func(n []byte) []byte { return ed25519.Sign(edPriv, n) },
	}
	for i, slot := range []string{"9a", "9c", "9d", "9e"} {
		id := en["piv"].([]any)[i].(map[string]any)["id"].(string)
		cid, nonce := challenge(r.helpdesk, "piv", id)
		if v := verify(r.helpdesk, map[string]any{"challenge_id": cid, "piv": map[string]any{"signature": pivSigners[slot](nonce)}}); v["ok"] != true {
			t.Fatalf("piv %s: %v", slot, v)
		}
		cid, nonce = challenge(r.helpdesk, "piv", id)
		wrong := pivSigners[slot](append(nonce, 1))
		if v := verify(r.helpdesk, map[string]any{"challenge_id": cid, "piv": map[string]any{"signature": wrong}}); v["ok"] != false {
			t.Fatalf("piv %s accepted a signature over other data: %v", slot, v)
		}
		// Single use: the same challenge again is refused.
		if res := r.do(r.helpdesk, "POST", "/v1/verifications", map[string]any{"challenge_id": cid, "piv": map[string]any{"signature": wrong}}); res.status != 409 || res.body["code"] != "challenge_unusable" {
			t.Fatalf("reused challenge: %d %s", res.status, res.raw)
		}
	}
	// Several challenges at once (count): each verifies once, on its own.
	p256Slot := en["piv"].([]any)[0].(map[string]any)["id"].(string)
	many := r.must(r.do(r.helpdesk, "POST", "/v1/challenges", map[string]any{"key_id": keyID, "kind": "piv", "credential_id": p256Slot, "count": 3}), 201)
	cs, _ := many["challenges"].([]any)
	if len(cs) != 3 || cs[0].(map[string]any)["id"] != many["challenge"].(map[string]any)["id"] {
		t.Fatalf("count 3: %v", many)
	}
	for i := range cs {
		c := cs[len(cs)-1-i].(map[string]any)
		body := map[string]any{"challenge_id": c["id"], "piv": map[string]any{"signature": pivSigners["9a"](b64(t, c["nonce"]))}}
		if v := verify(r.helpdesk, body); v["ok"] != true {
			t.Fatalf("challenge %d of a batch: %v", i, v)
		}
		if res := r.do(r.helpdesk, "POST", "/v1/verifications", body); res.status != 409 || res.body["code"] != "challenge_unusable" {
			t.Fatalf("challenge %d of a batch used twice: %d %s", i, res.status, res.raw)
		}
	}
	for _, n := range []int{0, 101} {
		if res := r.do(r.helpdesk, "POST", "/v1/challenges", map[string]any{"key_id": keyID, "kind": "piv", "credential_id": p256Slot, "count": n}); res.status != 422 || res.body["code"] != "invalid_count" {
			t.Fatalf("count %d: %d %s", n, res.status, res.raw)
		}
	}
	// A challenge id is authenticated: an edited one is refused unused.
	cid0, nonce0 := challenge(r.helpdesk, "piv", en["piv"].([]any)[0].(map[string]any)["id"].(string))
	forged := cid0[:len(cid0)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(cid0, "AA")]
	if res := r.do(r.helpdesk, "POST", "/v1/verifications", map[string]any{"challenge_id": forged, "piv": map[string]any{"signature": pivSigners["9a"](nonce0)}}); res.status != 409 || res.body["code"] != "challenge_unusable" {
		t.Fatalf("edited challenge id: %d %s", res.status, res.raw)
	}
	if v := verify(r.helpdesk, map[string]any{"challenge_id": cid0, "piv": map[string]any{"signature": pivSigners["9a"](nonce0)}}); v["ok"] != true {
		t.Fatalf("the original challenge after a forged attempt: %v", v)
	}
	edSign := func(m []byte) []byte { return ed25519.Sign(edPriv, m) }
	cid, nonce := challenge(r.admin, "fido2", edCred)
	if v := verify(r.admin, map[string]any{"challenge_id": cid, "fido2": webauthnAssertion(t, "example.org", nonce, 5, edSign)}); v["ok"] != true || v["clone_suspected"] != false {
		t.Fatalf("eddsa assertion: %v", v)
	}
	cid, nonce = challenge(r.admin, "fido2", edCred)
	if v := verify(r.admin, map[string]any{"challenge_id": cid, "fido2": webauthnAssertion(t, "evil.example", nonce, 6, edSign)}); v["ok"] != false {
		t.Fatalf("wrong rp id accepted: %v", v)
	}
	// The self token verifies alice's ES256 credential; then a counter that
	// goes backwards is flagged and the credential leaves the validity view.
	es := func(m []byte) []byte { return ecSign(p256, crypto.SHA256)(m) }
	c2 := r.must(r.do(r.selfA, "POST", "/v1/challenges", map[string]any{"key_id": r.keyA, "kind": "fido2", "credential_id": r.fidoA}), 201)["challenge"].(map[string]any)
	v := verify(r.selfA, map[string]any{"challenge_id": c2["id"], "fido2": webauthnAssertion(t, "example.org", b64(t, c2["nonce"]), 10, es)})
	if v["ok"] != true {
		t.Fatalf("es256 assertion: %v", v)
	}
	c3 := r.must(r.do(r.selfA, "POST", "/v1/challenges", map[string]any{"key_id": r.keyA, "kind": "fido2", "credential_id": r.fidoA}), 201)["challenge"].(map[string]any)
	v = verify(r.selfA, map[string]any{"challenge_id": c3["id"], "fido2": webauthnAssertion(t, "example.org", b64(t, c3["nonce"]), 3, es)})
	if v["ok"] != true || v["clone_suspected"] != true {
		t.Fatalf("counter regression not flagged: %v", v)
	}
	val := r.must(r.do(r.admin, "GET", "/v1/validity?user_id="+r.userA, nil), 200)
	for _, c := range val["credentials"].([]any) {
		if c.(map[string]any)["kind"] == "fido2" {
			t.Fatalf("possibly cloned credential still valid: %v", c)
		}
	}
	// The self token cannot ask for a challenge on someone else's key.
	if res := r.do(r.selfA, "POST", "/v1/challenges", map[string]any{"key_id": keyID, "kind": "piv", "credential_id": "x"}); res.status != 403 {
		t.Fatalf("self on other key: %d", res.status)
	}
}

func TestFeedAndValidityVersions(t *testing.T) {
	r := start(t)
	r.must(r.do(r.admin, "PUT", "/v1/keys/"+r.keyB+"/escrow/piv", map[string]any{"blob": []byte("sealed")}), 200)
	v1 := r.must(r.do(r.admin, "GET", "/v1/validity", nil), 200)
	// alice's key is active (1 fido2 + 1 piv), bob's is pending.
	if n := len(v1["credentials"].([]any)); n != 2 {
		t.Fatalf("validity has %d credentials", n)
	}
	ch := r.must(r.do(r.admin, "GET", "/v1/changes?after=0", nil), 200)
	cur := ch["cursor"].(string)
	if ch["more"] != false || cur != ch["head"] || fmt.Sprint(v1["version"]) != cur {
		t.Fatalf("feed %v / validity version %v", ch, v1["version"])
	}
	pivB := r.must(r.do(r.admin, "GET", "/v1/keys/"+r.keyB, nil), 200)["piv"].([]any)[0].(map[string]any)["id"].(string)
	r.provePIV(r.helpdesk, r.keyB, pivB, p256)
	v2 := r.must(r.do(r.admin, "GET", "/v1/validity", nil), 200)
	if len(v2["credentials"].([]any)) != 4 || v2["version"].(float64) != v1["version"].(float64)+1 {
		t.Fatalf("after activation: version %v, %d credentials", v2["version"], len(v2["credentials"].([]any)))
	}
	inc := r.must(r.do(r.admin, "GET", "/v1/changes?after="+cur, nil), 200)
	cs := inc["changes"].([]any)
	if len(cs) != 1 || cs[0].(map[string]any)["entity_id"] != r.keyB || cs[0].(map[string]any)["op"] != "activate" {
		t.Fatalf("incremental feed: %s", inc)
	}
	if res := r.do(r.admin, "GET", "/v1/changes?after=x", nil); res.status != 400 || res.body["code"] != "bad_cursor" {
		t.Fatalf("bad cursor: %d", res.status)
	}
}

func TestFailedAuthRateLimit(t *testing.T) {
	r := start(t)
	for i := 0; i < 20; i++ {
		if res := r.do("wrong-token", "GET", "/v1/users", nil); res.status != 401 {
			t.Fatalf("attempt %d: %d", i, res.status)
		}
	}
	if res := r.do("wrong-token", "GET", "/v1/users", nil); res.status != 429 || res.hdr.Get("Retry-After") == "" {
		t.Fatalf("after 20 failures: %d", res.status)
	}
	// The lockout holds even for a valid token from the same address.
	if res := r.do(r.admin, "GET", "/v1/users", nil); res.status != 429 {
		t.Fatalf("valid token during lockout: %d", res.status)
	}
}

func TestCommandLine(t *testing.T) {
	state := t.TempDir()
	if _, err := regtest.Token(bin, state, "superuser", "x", ""); err == nil {
		t.Fatal("unknown role accepted")
	}
	if out, err := regtest.AuditVerify(bin, state); err != nil || !strings.Contains(out, "audit ok: 0 entries") {
		t.Fatalf("empty audit: %v %s", err, out)
	}
	if _, err := regtest.Start(bin, state, "--listen", "0.0.0.0:0"); err == nil {
		t.Fatal("plain HTTP on a non-loopback address was allowed")
	}
}

// TestAuditVerifyFindsTamperedRow: `keydesk-registry audit verify` passes on
// a real registry's log and names the row after someone edits it.
func TestAuditVerifyFindsTamperedRow(t *testing.T) {
	r := start(t)
	r.p.Stop()
	if out, err := regtest.AuditVerify(bin, r.p.State); err != nil || !strings.Contains(out, "audit ok") {
		t.Fatalf("clean log: %v %s", err, out)
	}
	st, err := sqlstore.Open(t.Context(), filepath.Join(r.p.State, "registry.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().Exec("UPDATE audit_log SET payload = '{\"external_id\":\"mallory\"}' WHERE seq = 3"); err != nil {
		t.Fatal(err)
	}
	st.Close()
	out, err := regtest.AuditVerify(bin, r.p.State)
	if err == nil || !strings.Contains(out, "audit entry 3") {
		t.Fatalf("tampered log: %v %s", err, out)
	}
}

// TestTLSSelfSigned: without flags the registry serves HTTPS with a
// certificate it generated into the state dir, and a client that trusts
// that certificate can call it.
func TestTLSSelfSigned(t *testing.T) {
	state := t.TempDir()
	tok, err := regtest.Token(bin, state, "admin", "a", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.StartArgs(bin, state, "serve", "--listen", "127.0.0.1:0", "--state", state)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if !strings.HasPrefix(p.URL, "https://") {
		t.Fatalf("url %s", p.URL)
	}
	pemCert, err := os.ReadFile(filepath.Join(state, "tls-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCert) {
		t.Fatal("no certificate in tls-cert.pem")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("GET", p.URL+"/v1/users", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	// Plain HTTP to the TLS port is not served.
	if res, err := http.Get(strings.Replace(p.URL, "https://", "http://", 1) + "/v1/health"); err == nil && res.StatusCode == 200 {
		t.Fatal("plain HTTP served on the TLS listener")
	}
}

// TestActivationNeedsProof: an enrolled key stays pending until it signs a
// challenge; asking for active at enrolment, a failed signature, a status
// change without proof and a helpdesk break glass all leave it pending;
// only an admin's audited break-glass reason forces it.
func TestActivationNeedsProof(t *testing.T) {
	r := start(t)
	res := r.do(r.admin, "POST", "/v1/enrolments", map[string]any{
		"user": map[string]any{"external_id": "gus"}, "key": map[string]any{"serial": "700", "status": "active"},
		"piv": []any{map[string]any{"slot": "9a", "public_key": pkixDER(&p256.PublicKey)}},
	})
	if res.status != 422 || res.body["code"] != "proof_required" {
		t.Fatalf("enrol active: %d %s", res.status, res.raw)
	}
	pending := func(id string) map[string]any {
		t.Helper()
		k := r.must(r.do(r.admin, "GET", "/v1/keys/"+id, nil), 200)
		if k["status"] != "pending" {
			t.Fatalf("key %s is %v, want pending", id, k["status"])
		}
		return k
	}
	pending(r.keyB)
	pivB := r.must(r.do(r.admin, "GET", "/v1/keys/"+r.keyB, nil), 200)["piv"].([]any)[0].(map[string]any)["id"].(string)
	// A signature by another key is recorded as failed and activates nothing.
	if v := r.provePIV(r.admin, r.keyB, pivB, mustEC(elliptic.P256())); v["ok"] != false || v["key_activated"] != false || v["key_status"] != "pending" {
		t.Fatalf("wrong key's signature: %v", v)
	}
	pending(r.keyB)
	path := "/v1/keys/" + r.keyB + "/status"
	for _, tok := range []string{r.admin, r.helpdesk} {
		if res := r.do(tok, "POST", path, map[string]any{"status": "active"}, "If-Match", `"v1"`); res.status != 409 || res.body["code"] != "proof_required" {
			t.Fatalf("activation without proof: %d %s", res.status, res.raw)
		}
	}
	if res := r.do(r.helpdesk, "POST", path, map[string]any{"status": "active", "break_glass_reason": "user is waiting"}, "If-Match", `"v1"`); res.status != 403 {
		t.Fatalf("helpdesk break glass: %d %s", res.status, res.raw)
	}
	pending(r.keyB)
	before := r.head()
	k := r.must(r.do(r.admin, "POST", path, map[string]any{"status": "active", "break_glass_reason": "signing key broken, identity checked in person"}, "If-Match", `"v1"`), 200)
	if k["status"] != "active" || r.head() == before {
		t.Fatalf("admin break glass: %v", k)
	}
	r.p.Stop()
	st, err := sqlstore.Open(t.Context(), filepath.Join(r.p.State, "registry.db"), sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	es, _, err := st.AuditLog(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var activations, breakGlass int
	for _, e := range es {
		switch e.Action {
		case "key.activate":
			activations++ // alice's key, by proof
			if !strings.Contains(string(e.Payload), `"verification_id":"ver_`) {
				t.Fatalf("activation without its verification: %s", e.Payload)
			}
		case "key.activate_break_glass":
			breakGlass++
			if !strings.Contains(string(e.Payload), "identity checked in person") {
				t.Fatalf("break glass without its reason: %s", e.Payload)
			}
		}
	}
	if activations != 1 || breakGlass != 1 {
		t.Fatalf("audit: %d activations by proof, %d break-glass activations", activations, breakGlass)
	}
}

func runBin(args ...string) (string, error) {
	out, err := exec.Command(bin, args...).Output()
	return string(out), err
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
