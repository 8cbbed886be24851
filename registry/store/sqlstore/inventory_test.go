package sqlstore_test

import (
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

func init() {
	// Inventory pages users with their keys, key sets and the last
	// successful verification of each key; a failed one does not count.
	suite["Inventory"] = func(t *testing.T, e *env) {
		users := []registry.User{e.user(t, "ann"), e.user(t, "ben"), e.user(t, "cy")}
		k1 := e.key(t, users[0].ID, "1001", registry.KeyActive)
		k2 := e.key(t, users[0].ID, "1002", registry.KeyPending)
		k3 := e.key(t, users[2].ID, "3001", registry.KeyActive)
		verify := func(k registry.Key, ok bool) {
			t.Helper()
			if err := e.write(t, func(tx *sqlstore.Tx) error {
				v := registry.Verification{ChallengeID: "ch_" + k.Serial, KeyID: k.ID, Kind: "piv", CredentialID: "piv_x", OK: ok}
				return tx.RecordVerification(&v)
			}); err != nil {
				t.Fatal(err)
			}
		}
		verify(k1, true)
		first := e.clock.t
		e.clock.t = e.clock.t.Add(time.Hour)
		verify(k1, true)
		verify(k3, false)
		got := map[string]sqlstore.InventoryUser{}
		after := ""
		for pages := 0; ; pages++ {
			page, err := e.s.Inventory(ctx, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range page {
				got[u.User.ExternalID] = u
			}
			if len(page) < 2 || pages > 3 {
				break
			}
			after = page[len(page)-1].User.ID
		}
		if len(got) != 3 {
			t.Fatalf("%d users: %+v", len(got), got)
		}
		ann := got["ann"].Keys
		if len(ann) == 2 && ann[0].ID == k2.ID {
			// Created at the same instant: ordered by id.
			ann[0], ann[1] = ann[1], ann[0]
		}
		if len(ann) != 2 || ann[0].ID != k1.ID || ann[1].ID != k2.ID || len(ann[0].KeySets) != 1 || ann[0].KeySets[0] != "yk5-2026" {
			t.Fatalf("ann's keys: %+v", ann)
		}
		if !ann[0].LastVerified.Equal(first.Add(time.Hour)) || !ann[1].LastVerified.IsZero() {
			t.Errorf("ann's last verifications: %v, %v", ann[0].LastVerified, ann[1].LastVerified)
		}
		if len(got["ben"].Keys) != 0 {
			t.Errorf("ben: %+v", got["ben"].Keys)
		}
		if cy := got["cy"].Keys; len(cy) != 1 || cy[0].ID != k3.ID || !cy[0].LastVerified.IsZero() {
			t.Errorf("cy (failed verification only): %+v", cy)
		}
	}
}
