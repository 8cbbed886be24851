package server_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/mds/mdstest"
)

// TestMDS: `keydesk-registry mds update` loads a FIDO Metadata Service
// BLOB signed under a test root chain into a running registry; from then on
// the inventory and migration readiness name each FIDO2 credential's model
// and certification status by AAGUID, and the model's attestation root
// makes its attestation genuine. Tampered, expired, foreign and older BLOBs
// are refused and change nothing.
func TestMDS(t *testing.T) {
	r := start(t)
	dir := t.TempDir()
	chain, err := mdstest.NewChain()
	if err != nil {
		t.Fatal(err)
	}
	rootPEM := filepath.Join(dir, "mds-root.pem")
	if err := os.WriteFile(rootPEM, chain.RootPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	update := func(blob []byte) (string, error) {
		f := filepath.Join(dir, "blob.jwt")
		if err := os.WriteFile(f, blob, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "mds", "update", "--state", r.p.State, "--file", f, "--trust-root", rootPEM).CombinedOutput()
		return string(out), err
	}
	vendorRoot := caCert(t, nil, "Vendor FIDO Attestation Root")
	aaguid := []byte("keydesk-test-aag") // packedAttestation's AAGUID
	model := uuid.Must(uuid.FromBytes(aaguid)).String()
	cdj := []byte(`{"type":"webauthn.create","challenge":"AAAA","origin":"https://example.org","crossOrigin":false}`)
	cdh := sha256.Sum256(cdj)
	key := mustEC(p256.Curve)
	enrol := func(ext, serial string) (keyID, verdict string) {
		t.Helper()
		cred := []byte("cred-" + serial)
		out := r.must(r.do(r.admin, "POST", "/v1/enrolments", map[string]any{
			"user": map[string]any{"external_id": ext}, "key": map[string]any{"serial": serial, "key_sets": []string{"yk5-2026"}},
			"fido2": []any{map[string]any{"credential_id": cred, "public_key": credential.COSEKeyES256(&key.PublicKey), "rp_id": "example.org", "aaguid": aaguid,
				"attestation_object": packedAttestation(t, vendorRoot, cred, key, cdh[:]), "attestation_client_data_json": cdj}},
		}), 201)
		return out["key"].(map[string]any)["id"].(string), out["fido2"].([]any)[0].(map[string]any)["verdict"].(string)
	}
	inventoryModels := func(keyID string) []any {
		t.Helper()
		for _, u := range r.must(r.do(r.admin, "GET", "/v1/inventory", nil), 200)["users"].([]any) {
			for _, k := range u.(map[string]any)["keys"].([]any) {
				if k := k.(map[string]any); k["id"] == keyID {
					m, _ := k["fido2_models"].([]any)
					return m
				}
			}
		}
		t.Fatalf("key %s not in the inventory", keyID)
		return nil
	}

	// Without a BLOB the vendor's root is unknown and nothing names models.
	first, v := enrol("mds-first", "7001")
	if v != "untrusted-root" {
		t.Fatalf("before the BLOB: verdict %s", v)
	}
	if m := inventoryModels(first); m != nil {
		t.Fatalf("models without a BLOB: %v", m)
	}

	now := time.Now()
	good := mdstest.Model{AAGUID: model, Description: "YubiKey 5 Series (test)", Roots: [][]byte{vendorRoot.cert.Raw},
		Statuses: [][2]string{{"FIDO_CERTIFIED_L1", "2021-01-01"}, {"FIDO_CERTIFIED_L2", "2023-06-01"}}}
	revokedAAGUID := []byte("revoked-model-01")
	revoked := mdstest.Model{AAGUID: uuid.Must(uuid.FromBytes(revokedAAGUID)).String(), Description: "Broken Key (test)", Roots: [][]byte{vendorRoot.cert.Raw},
		Statuses: [][2]string{{"FIDO_CERTIFIED_L1", "2021-01-01"}, {"REVOKED", "2024-02-01"}}}
	blob, err := chain.BLOB(5, now.AddDate(0, 1, 0), good, revoked)
	if err != nil {
		t.Fatal(err)
	}
	// Refused: a changed payload, an expired BLOB, another signer.
	tampered := bytes.Replace(blob, blob[len(blob)/3:len(blob)/3+4], []byte("AAAA"), 1)
	expired, err := chain.BLOB(6, now.AddDate(0, 0, -2), good)
	if err != nil {
		t.Fatal(err)
	}
	other, err := mdstest.NewChain()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.BLOB(7, now.AddDate(0, 1, 0), good)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		blob []byte
		want string
	}{"tampered": {tampered, "does not verify"}, "expired": {expired, "nextUpdate"}, "foreign": {foreign, "does not verify"}} {
		if out, err := update(c.blob); err == nil || !strings.Contains(out, c.want) {
			t.Fatalf("%s BLOB: %v: %s", name, err, out)
		}
	}
	if m := inventoryModels(first); m != nil {
		t.Fatalf("models after refused BLOBs: %v", m)
	}

	if out, err := update(blob); err != nil || !strings.Contains(out, "no 5") || !strings.Contains(out, "2 FIDO2 models") {
		t.Fatalf("mds update: %v: %s", err, out)
	}
	// The inventory names the credential's model and certification.
	m := inventoryModels(first)
	if len(m) != 1 {
		t.Fatalf("models: %v", m)
	}
	if got := m[0].(map[string]any); got["model"] != "YubiKey 5 Series (test)" || got["aaguid"] != model || got["status"] != "FIDO_CERTIFIED_L2" || got["certification"] != "FIDO_CERTIFIED_L2" {
		t.Fatalf("model: %v", got)
	}
	// A credential the BLOB does not list keeps its AAGUID, unnamed.
	if m := inventoryModels(r.keyA); len(m) != 1 || m[0].(map[string]any)["model"] != nil {
		t.Fatalf("unlisted model: %v", m)
	}
	// The model's attestation root from the BLOB makes a new attestation
	// genuine.
	if _, v := enrol("mds-second", "7002"); v != "genuine" {
		t.Fatalf("after the BLOB: verdict %s", v)
	}
	// A model the BLOB marks REVOKED is not genuine, though its chain is.
	cred := []byte("cred-7003")
	rv := r.must(r.do(r.admin, "POST", "/v1/enrolments", map[string]any{
		"user": map[string]any{"external_id": "mds-revoked"}, "key": map[string]any{"serial": "7003"},
		"fido2": []any{map[string]any{"credential_id": cred, "public_key": credential.COSEKeyES256(&key.PublicKey), "rp_id": "example.org",
			"attestation_object": packedAttestationOf(t, vendorRoot, cred, key, cdh[:], revokedAAGUID), "attestation_client_data_json": cdj}},
	}), 201)["fido2"].([]any)[0].(map[string]any)
	if rv["verdict"] != "invalid" || !strings.Contains(rv["verdict_reason"].(string), "REVOKED") {
		t.Fatalf("revoked model: %v (%v)", rv["verdict"], rv["verdict_reason"])
	}
	// The readiness report of a migration to the set names the models.
	// (The canary is one named user: a percent of a handful of random user
	// ids can select none.)
	owner := r.must(r.do(r.admin, "GET", "/v1/keys/"+first, nil), 200)["owner_id"].(string)
	r.must(r.do(r.admin, "POST", "/v1/key-sets", map[string]any{"name": "legacy-2024"}), 201)
	mig := r.must(r.do(r.admin, "POST", "/v1/migrations", map[string]any{"from_set": "legacy-2024", "to_set": "yk5-2026",
		"scope": map[string]any{"all": true}, "canary": map[string]any{"users": []string{owner}}}), 201)
	named := 0
	for _, u := range r.must(r.do(r.admin, "GET", "/v1/migrations/"+mig["id"].(string)+"/readiness", nil), 200)["users"].([]any) {
		u := u.(map[string]any)
		if u["external_id"] == "mds-first" {
			bm, _ := u["b_models"].([]any)
			if len(bm) != 1 || bm[0].(map[string]any)["model"] != "YubiKey 5 Series (test)" {
				t.Fatalf("readiness models: %v", u)
			}
			named++
		}
	}
	if named != 1 {
		t.Fatal("mds-first not in the readiness report")
	}
	// An older BLOB does not replace a newer one.
	older, err := chain.BLOB(4, now.AddDate(0, 1, 0), mdstest.Model{AAGUID: model, Description: "Older name"})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := update(older); err == nil || !strings.Contains(out, "older") {
		t.Fatalf("older BLOB: %v: %s", err, out)
	}
	if got := inventoryModels(first)[0].(map[string]any)["model"]; got != "YubiKey 5 Series (test)" {
		t.Fatalf("after an older BLOB: %v", got)
	}
	// The load is audited, and the chain written by two processes holds.
	if !strings.Contains(string(r.do(r.admin, "GET", "/v1/audit?action=mds.update", nil).raw), `"sha256"`) {
		t.Fatal("no mds.update audit entry")
	}
	if v := r.must(r.do(r.admin, "GET", "/v1/audit/verify", nil), 200); v["ok"] != true {
		t.Fatalf("audit: %v", v)
	}
}
