package sqlstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

func init() {
	// Links are recorded once (a replay returns the first), refused for a
	// key out of service, deleted once, audited; drift is found both ways
	// from the kept observations.
	suite["IDPLinksAndDrift"] = func(t *testing.T, e *env) {
		u := e.user(t, "alice")
		k1 := e.key(t, u.ID, "2001", registry.KeyActive)
		k2 := e.key(t, u.ID, "2002", registry.KeyActive)
		for i, k := range []registry.Key{k1, k2} {
			fc := registry.FIDOCredential{KeyID: k.ID, CredentialID: []byte{'c', byte(i)}, RPID: "example.org", PublicKey: []byte{byte(i)}}
			if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.AddFIDOCredential(&fc) }); err != nil {
				t.Fatal(err)
			}
		}
		link := func(k registry.Key, method string, cred byte) (registry.IDPLink, bool, error) {
			l := registry.IDPLink{Provider: "entra", MethodID: method, KeyID: k.ID, CredentialID: []byte{'c', cred}, Nonce: "n-" + method}
			var created bool
			err := e.write(t, func(tx *sqlstore.Tx) error {
				var err error
				created, err = tx.RecordIDPLink(&l)
				return err
			})
			return l, created, err
		}
		l1, created, err := link(k1, "m1", 0)
		if err != nil || !created || l1.UserID != u.ID || l1.Serial != "2001" || l1.State != registry.LinkActive {
			t.Fatalf("first link: %+v created=%v %v", l1, created, err)
		}
		again, created, err := link(k1, "m1", 0)
		if err != nil || created || again.ID != l1.ID {
			t.Fatalf("the same link again: %+v created=%v %v", again, created, err)
		}
		var de *registry.DuplicateError
		if _, _, err := link(k2, "m1", 1); !errors.As(err, &de) {
			t.Fatalf("the same method for another key: %v", err)
		}
		if _, _, err := link(k2, "m2", 1); err != nil {
			t.Fatal(err)
		}

		// Both methods listed: no drift.
		e.clock.t = e.clock.t.Add(time.Minute)
		observe := func(ids ...string) {
			t.Helper()
			o := registry.IDPObservation{Provider: "entra", UserID: u.ID, ObservedAt: e.clock.t}
			for _, id := range ids {
				o.Methods = append(o.Methods, registry.IDPMethod{ID: id, DisplayName: "YubiKey " + id})
			}
			if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.PutIDPObservation(&o) }); err != nil {
				t.Fatal(err)
			}
		}
		observe("m1", "m2")
		if d, err := e.s.IDPDrift(ctx); err != nil || len(d) != 0 {
			t.Fatalf("drift with both methods held: %+v, %v", d, err)
		}

		// (b) m2 gone at the provider while its key is active: missing.
		e.clock.t = e.clock.t.Add(time.Minute)
		observe("m1")
		d, err := e.s.IDPDrift(ctx)
		if err != nil || len(d) != 1 || d[0].Kind != registry.DriftMissing || d[0].KeyID != k2.ID || d[0].Serial != "2002" || d[0].ExternalID != "alice" {
			t.Fatalf("drift with m2 gone: %+v, %v", d, err)
		}

		// (a) k1 lost while the provider still lists m1: held-invalid; an
		// unlinked method too. m2 listed again: not missing.
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			_, err := tx.SetKeyStatus(k1.ID, k1.Version, registry.KeyLost, "")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		e.clock.t = e.clock.t.Add(time.Minute)
		observe("m1", "m2", "stranger")
		d, err = e.s.IDPDrift(ctx)
		if err != nil || len(d) != 2 {
			t.Fatalf("drift after k1 lost: %+v, %v", d, err)
		}
		kinds := map[string]registry.IDPDrift{}
		for _, x := range d {
			kinds[x.Kind] = x
		}
		if x := kinds[registry.DriftHeldInvalid]; x.MethodID != "m1" || x.KeyStatus != registry.KeyLost || x.LinkID != l1.ID {
			t.Fatalf("held-invalid: %+v", x)
		}
		if x := kinds[registry.DriftUnknown]; x.MethodID != "stranger" {
			t.Fatalf("unknown method: %+v", x)
		}
		// A link is refused for a key out of service.
		if _, _, err := link(k1, "m9", 0); !errors.Is(err, registry.ErrKeyNotInService) {
			t.Fatalf("a link for a lost key: %v", err)
		}

		// The desk deletes m1: the link is deleted, and while the provider
		// still lists it, that is still drift; once it does not, none.
		var del registry.IDPLink
		for range 2 {
			if err := e.write(t, func(tx *sqlstore.Tx) error { del, err = tx.DeleteIDPLink(l1.ID); return err }); err != nil || del.State != registry.LinkDeleted || del.DeletedAt == nil {
				t.Fatalf("deleting link: %+v, %v", del, err)
			}
		}
		if d, _ := e.s.IDPDrift(ctx); len(d) != 2 {
			t.Fatalf("drift with the deleted method still listed: %+v", d)
		}
		e.clock.t = e.clock.t.Add(time.Minute)
		observe("m2")
		if d, err := e.s.IDPDrift(ctx); err != nil || len(d) != 0 {
			t.Fatalf("drift once settled: %+v, %v", d, err)
		}
		// An older observation does not replace a newer one.
		old := registry.IDPObservation{Provider: "entra", UserID: u.ID, ObservedAt: e.clock.t.Add(-time.Hour), Methods: []registry.IDPMethod{{ID: "m1"}}}
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.PutIDPObservation(&old) }); err != nil {
			t.Fatal(err)
		}
		if d, _ := e.s.IDPDrift(ctx); len(d) != 0 {
			t.Fatalf("an older observation was kept: %+v", d)
		}
		// The same listing again moves the observation's time, and adds no
		// audit entry (counted below).
		e.clock.t = e.clock.t.Add(time.Minute)
		observe("m2")
		if os, err := e.s.IDPObservations(ctx); err != nil || len(os) != 1 || !os[0].ObservedAt.Equal(e.clock.t) {
			t.Fatalf("observations after the same listing again: %+v, %v (want observed at %v)", os, err, e.clock.t)
		}
		if _, err := e.write0(t, func(tx *sqlstore.Tx) error { _, err := tx.DeleteIDPLink("idl_none"); return err }); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("deleting an unknown link: %v", err)
		}

		ls, err := e.s.IDPLinks(ctx, sqlstore.LinkFilter{KeyID: k1.ID})
		if err != nil || len(ls) != 1 || ls[0].State != registry.LinkDeleted || ls[0].KeyStatus != registry.KeyLost {
			t.Fatalf("links of k1: %+v, %v", ls, err)
		}
		// Every write is in the audit chain.
		es, _, err := e.s.AuditLog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, a := range es {
			n[a.Action]++
		}
		if n["idp_link.create"] != 2 || n["idp_link.delete"] != 1 || n["idp_observation.put"] != 5 {
			t.Fatalf("audit actions: %v", n)
		}
		e.verifyAudit(t)
	}
}

func (e *env) write0(t *testing.T, fn func(*sqlstore.Tx) error) (struct{}, error) {
	t.Helper()
	return struct{}{}, e.write(t, fn)
}
