package sqlstore_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/audit"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

func init() {
	suite["RevokeFIDOCredentialsAndRestore"] = testRevokeAndRestore
}

// testRevokeAndRestore, on each backend: revoking a key's FIDO2
// credentials takes them out of the validity view in one change set; an
// export restored into a second, empty store of the same backend keeps the
// source's audit chain verbatim, chains the target's own entry after it,
// verifies with the target's key, and gives the same validity view; a
// second restore is refused.
func testRevokeAndRestore(t *testing.T, e *env) {
	u := e.user(t, "ines")
	k := e.key(t, u.ID, "7001", registry.KeyActive)
	for i, id := range []string{"cred-a", "cred-b"} {
		c := registry.FIDOCredential{KeyID: k.ID, CredentialID: []byte(id), RPID: "example.org", PublicKey: []byte{byte(i), 1, 2}}
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.AddFIDOCredential(&c) }); err != nil {
			t.Fatal(err)
		}
	}
	p := registry.PIVSlot{KeyID: k.ID, Slot: "9a", PublicKey: []byte{9, 9}}
	if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.AddPIVSlot(&p) }); err != nil {
		t.Fatal(err)
	}
	var revoked []registry.FIDOCredential
	if err := e.write(t, func(tx *sqlstore.Tx) (err error) { revoked, err = tx.RevokeFIDOCredentials(k.ID); return err }); err != nil {
		t.Fatal(err)
	}
	v, err := e.s.Validity(ctx, "")
	if err != nil || len(revoked) != 2 || len(v.Credentials) != 1 || v.Credentials[0].Kind != "piv" {
		t.Fatalf("after revoking: %d revoked, validity %+v, %v", len(revoked), v, err)
	}
	// A credential again, so the export carries one of each.
	c := registry.FIDOCredential{KeyID: k.ID, CredentialID: []byte("cred-c"), RPID: "example.org", PublicKey: []byte{7}}
	if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.AddFIDOCredential(&c) }); err != nil {
		t.Fatal(err)
	}
	// An identity provider holds it: the link goes with the export.
	link := registry.IDPLink{Provider: "corp", MethodID: "m-7001", KeyID: k.ID, CredentialID: []byte("cred-c"), Nonce: "n1"}
	if err := e.write(t, func(tx *sqlstore.Tx) error { _, err := tx.RecordIDPLink(&link); return err }); err != nil {
		t.Fatal(err)
	}
	x, err := e.s.Export(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(x.IDPLinks) != 1 || x.IDPLinks[0].MethodID != "m-7001" {
		t.Fatalf("exported links: %+v", x.IDPLinks)
	}
	x.AuditKey = e.pub

	dsn := filepath.Join(t.TempDir(), "restored.db")
	if e.s.Dialect() == sqlstore.Postgres {
		dsn = pgtest.Database(t)
	}
	pub2, priv2, _ := ed25519.GenerateKey(rand.Reader)
	s2, err := sqlstore.Open(ctx, dsn, sqlstore.Options{Signer: priv2, Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	write2 := func(fn func(*sqlstore.Tx) error) error {
		_, _, err := s2.Write(ctx, "admin:restorer", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) { return sqlstore.Result{Status: 200}, fn(tx) })
		return err
	}
	if err := write2(func(tx *sqlstore.Tx) error { return tx.CreateToken([]byte("hash"), "restorer", "admin", "") }); err != nil {
		t.Fatal(err)
	}
	var out registry.Restored
	if err := write2(func(tx *sqlstore.Tx) (err error) { out, err = tx.Restore(&x); return err }); err != nil {
		t.Fatal(err)
	}
	if out.Users != 1 || out.Keys != 1 || out.Credentials != 2 || out.IDPLinks != 1 || out.AuditEntries != len(x.Audit) || out.Rechained != 1 {
		t.Fatalf("restored %+v", out)
	}
	if ls, err := s2.IDPLinks(ctx, sqlstore.LinkFilter{KeyID: k.ID}); err != nil || len(ls) != 1 || ls[0].ID != link.ID || ls[0].State != registry.LinkActive || ls[0].UserID != u.ID {
		t.Fatalf("restored links: %+v, %v", ls, err)
	}
	es, cs, err := s2.AuditLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(es, cs, pub2); err != nil {
		t.Fatalf("restored audit chain: %v", err)
	}
	for i, src := range x.Audit {
		if !bytes.Equal(es[i].Hash, src.Hash) {
			t.Fatalf("entry %d not kept verbatim", i+1)
		}
	}
	if es[len(x.Audit)].Action != "token.create" {
		t.Fatalf("entry after the source chain: %s", es[len(x.Audit)].Action)
	}
	v1, _ := e.s.Validity(ctx, "")
	v2, _ := s2.Validity(ctx, "")
	if len(v1.Credentials) != 2 || len(v2.Credentials) != 2 {
		t.Fatalf("validity: %d, restored %d", len(v1.Credentials), len(v2.Credentials))
	}
	var ie *registry.InvalidError
	if err := write2(func(tx *sqlstore.Tx) (err error) { _, err = tx.Restore(&x); return err }); !errors.As(err, &ie) || ie.Code != "registry_not_empty" {
		t.Fatalf("second restore: %v", err)
	}
}
