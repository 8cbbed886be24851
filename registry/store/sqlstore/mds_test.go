package sqlstore_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

func init() {
	// The FIDO Metadata Service BLOB: none at first, stored with an audit
	// entry, replaced by a newer one and not by an older one; the AAGUIDs
	// of the FIDO2 credentials by inventory range and by key set.
	suite["MDSBlobAndAAGUIDs"] = func(t *testing.T, e *env) {
		if _, ok, err := e.s.MDS(ctx); ok || err != nil {
			t.Fatalf("mds before any load: %v %v", ok, err)
		}
		if at, err := e.s.MDSLoadedAt(ctx); !at.IsZero() || err != nil {
			t.Fatalf("loaded at before any load: %v %v", at, err)
		}
		next := time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)
		put := func(no int, entries string) error {
			return e.write(t, func(tx *sqlstore.Tx) error {
				return tx.PutMDS(sqlstore.MDSBlob{Number: no, NextUpdate: next, SHA256: "ab", Entries: []byte(entries)})
			})
		}
		if err := put(5, `{"no":5}`); err != nil {
			t.Fatal(err)
		}
		b, ok, err := e.s.MDS(ctx)
		if err != nil || !ok || b.Number != 5 || !b.NextUpdate.Equal(next) || string(b.Entries) != `{"no":5}` || !b.LoadedAt.Equal(e.clock.t) {
			t.Fatalf("mds %+v %v %v", b, ok, err)
		}
		e.clock.t = e.clock.t.Add(time.Minute)
		if err := put(4, `{"no":4}`); !errors.Is(err, sqlstore.ErrMDSOlder) {
			t.Fatalf("older blob: %v", err)
		}
		if err := put(6, `{"no":6}`); err != nil {
			t.Fatal(err)
		}
		if b, _, _ := e.s.MDS(ctx); b.Number != 6 || string(b.Entries) != `{"no":6}` {
			t.Fatalf("after a newer blob: %+v", b)
		}
		if at, _ := e.s.MDSLoadedAt(ctx); !at.Equal(e.clock.t) {
			t.Fatalf("loaded at %v, want %v", at, e.clock.t)
		}
		if r := e.verifyAudit(t); r.Entries < 2 {
			t.Fatalf("audit: %+v", r)
		}

		u := e.user(t, "mei")
		k := e.key(t, u.ID, "9001", registry.KeyActive)
		aaguid := []byte("0123456789abcdef")
		c := registry.FIDOCredential{KeyID: k.ID, CredentialID: []byte("c1"), RPID: "example.org", PublicKey: []byte{1}, AAGUID: aaguid}
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.AddFIDOCredential(&c) }); err != nil {
			t.Fatal(err)
		}
		for name, get := range map[string]func() ([]sqlstore.CredentialAAGUID, error){
			"inventory": func() ([]sqlstore.CredentialAAGUID, error) { return e.s.InventoryAAGUIDs(ctx, "", u.ID) },
			"set":       func() ([]sqlstore.CredentialAAGUID, error) { return e.s.SetAAGUIDs(ctx, "yk5-2026") },
		} {
			got, err := get()
			if err != nil || len(got) != 1 || got[0].CredentialID != c.ID || got[0].KeyID != k.ID || got[0].OwnerID != u.ID || !bytes.Equal(got[0].AAGUID, aaguid) {
				t.Fatalf("%s: %+v %v", name, got, err)
			}
		}
		if got, err := e.s.SetAAGUIDs(ctx, "other-set"); len(got) != 0 || err != nil {
			t.Fatalf("another set: %+v %v", got, err)
		}
	}
}
