package sqlstore_test

import (
	"errors"
	"testing"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/audit"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

func init() {
	suite["AuditPendingAuthenticated"] = func(t *testing.T, e *env) {
		e.user(t, "ann")
		ins := e.s.Rebind("INSERT INTO audit_pending (at, actor, action, payload, mac) VALUES (?, ?, ?, ?, ?)")
		good := audit.Entry{Time: 7, Actor: "helpdesk:desk", Action: "verification", Payload: []byte(`{"ok":true}`)}
		mac := audit.PendingMAC(audit.PendingKey(e.priv), &good)
		// An authentic row, a copy of it, a forged row without a MAC.
		for _, m := range [][]byte{mac, mac, nil} {
			actor := good.Actor
			if m == nil {
				actor = "admin:forged"
			}
			if _, err := e.s.DB().Exec(ins, good.Time, actor, good.Action, string(good.Payload), m); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := e.s.SequenceAudit(ctx); err != nil || n != 3 {
			t.Fatalf("sequencing: %d %v", n, err)
		}
		l, err := e.s.AuditChain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		chained := 0
		for _, x := range l.Entries {
			if x.Action == "verification" {
				chained++
			}
			if x.Actor == "admin:forged" {
				t.Fatalf("forged row chained as entry %d", x.Seq)
			}
		}
		if chained != 1 || len(l.Rejected) != 2 || l.Pending != 0 {
			t.Fatalf("%d chained, %d rejected, %d pending", chained, len(l.Rejected), l.Pending)
		}
		_, err = audit.VerifyLog(l, e.pub)
		var te *audit.TamperError
		if !errors.As(err, &te) || te.Pending != l.Rejected[0].ID {
			t.Fatalf("verify: %v", err)
		}
	}
	suite["AuditWriterRefusesForgedChain"] = func(t *testing.T, e *env) {
		e.user(t, "bob")
		l, err := e.s.AuditChain(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last := l.Entries[len(l.Entries)-1]
		f := audit.Entry{Time: last.Time, Actor: "admin:mallory", Action: "user.create", Payload: []byte(`{}`)}
		audit.Seal(&f, last.Seq, last.Hash)
		if _, err := e.s.DB().Exec(e.s.Rebind("INSERT INTO audit_log (seq, at, actor, action, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)"),
			f.Seq, f.Time, f.Actor, f.Action, string(f.Payload), f.PrevHash, f.Hash); err != nil {
			t.Fatal(err)
		}
		// This process signed the head: the insert beyond it collides.
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			return tx.CreateUser(&registry.User{ExternalID: "cat", DisplayName: "cat"})
		}); !errors.Is(err, audit.ErrTampered) {
			t.Fatalf("write over a forged entry: %v", err)
		}
		// With the head row moved onto the forged entry.
		if _, err := e.s.DB().Exec(e.s.Rebind("UPDATE registry_head SET audit_seq = ?, audit_hash = ? WHERE id = 1"), f.Seq, f.Hash); err != nil {
			t.Fatal(err)
		}
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			return tx.CreateUser(&registry.User{ExternalID: "dan", DisplayName: "dan"})
		}); !errors.Is(err, audit.ErrTampered) {
			t.Fatalf("write over a forged head: %v", err)
		}
		if _, cs, _ := e.s.AuditLog(ctx); cs[len(cs)-1].Seq != last.Seq {
			t.Fatalf("a checkpoint was signed over the forged entry: %d", cs[len(cs)-1].Seq)
		}
	}
}
