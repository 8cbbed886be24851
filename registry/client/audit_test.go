package client_test

import (
	"testing"

	"github.com/keydesk/keydesk/registry/client"
)

// TestAuditPages reads the audit log forwards and backwards (newest first)
// in small pages: both ways see every entry once, in opposite orders, and
// the actor filter holds in both directions.
func TestAuditPages(t *testing.T) {
	c := startRegistry(t).Client
	for i := 0; i < 7; i++ {
		if _, err := c.Enrol(ctx, enrolment(i)); err != nil {
			t.Fatal(err)
		}
	}
	read := func(q client.AuditQuery) []int64 {
		t.Helper()
		var seqs []int64
		for {
			pg, err := c.Audit(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range pg.Entries {
				if q.Actor != "" && e.Actor != q.Actor {
					t.Fatalf("actor filter %q gave an entry by %q", q.Actor, e.Actor)
				}
				seqs = append(seqs, e.Seq)
			}
			if pg.Next == 0 {
				return seqs
			}
			if q.Newest {
				q.Before = pg.Next
			} else {
				q.After = pg.Next
			}
		}
	}
	fwd := read(client.AuditQuery{Limit: 4})
	back := read(client.AuditQuery{Newest: true, Limit: 4})
	if len(fwd) < 8 || len(fwd) != len(back) {
		t.Fatalf("forwards %d entries, backwards %d", len(fwd), len(back))
	}
	for i := range fwd {
		if fwd[i] != back[len(back)-1-i] {
			t.Fatalf("forwards %v, backwards %v", fwd, back)
		}
		if i > 0 && fwd[i] <= fwd[i-1] {
			t.Fatalf("forwards not in order: %v", fwd)
		}
	}
	mine := read(client.AuditQuery{Newest: true, Actor: "admin:desk", Limit: 3})
	if len(mine) == 0 || len(mine) >= len(back) {
		t.Fatalf("%d entries by admin:desk of %d", len(mine), len(back))
	}
}

// TestInventoryPages reads users with their keys in small pages: every
// user once, each with the key enrolled for them, none verified yet.
func TestInventoryPages(t *testing.T) {
	c := startRegistry(t).Client
	want := map[string]string{}
	for i := 0; i < 7; i++ {
		e := enrolment(i)
		if _, err := c.Enrol(ctx, e); err != nil {
			t.Fatal(err)
		}
		want[e.User.ExternalID] = e.Key.Serial
	}
	seen := map[string]bool{}
	after := ""
	for pages := 0; ; pages++ {
		us, next, err := c.Inventory(ctx, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range us {
			if seen[u.User.ExternalID] || len(u.Keys) != 1 || u.Keys[0].Serial != want[u.User.ExternalID] || u.Keys[0].OwnerID != u.User.ID ||
				u.Keys[0].LastVerifiedAt != nil || len(u.Keys[0].KeySets) != 1 {
				t.Fatalf("user %s (seen %v): %+v", u.User.ExternalID, seen[u.User.ExternalID], u.Keys)
			}
			seen[u.User.ExternalID] = true
		}
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("too many pages")
		}
		after = next
	}
	if len(seen) != len(want) {
		t.Fatalf("read %d users of %d", len(seen), len(want))
	}
}
