package sqlstore_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

const setA, setB = "legacy-2024", "yk5-2026"

type migUser struct {
	u    registry.User
	a, b registry.Key
}

type bState int

const (
	bNone bState = iota
	bVerified
	bUnverified
	bLost
)

// migUser creates a user with an active key in set A (a FIDO2 credential and
// a PIV slot) and, depending on st, a key in set B with one FIDO2 credential.
func (e *env) migUser(t *testing.T, ext string, st bState, groups ...string) migUser {
	t.Helper()
	var mu migUser
	if err := e.write(t, func(tx *sqlstore.Tx) error {
		mu.u = registry.User{ExternalID: ext, Groups: groups}
		if err := tx.CreateUser(&mu.u); err != nil {
			return err
		}
		mu.a = registry.Key{Serial: ext + "-a", OwnerID: mu.u.ID, Status: registry.KeyActive, KeySets: []string{setA}}
		if err := tx.CreateKey(&mu.a); err != nil {
			return err
		}
		if err := tx.AddFIDOCredential(&registry.FIDOCredential{KeyID: mu.a.ID, CredentialID: []byte(ext + "-a"), RPID: "example.org", PublicKey: []byte{1}}); err != nil {
			return err
		}
		if err := tx.AddPIVSlot(&registry.PIVSlot{KeyID: mu.a.ID, Slot: "9a", PublicKey: []byte{2}}); err != nil {
			return err
		}
		if st == bNone {
			return nil
		}
		status := registry.KeyActive
		if st == bLost {
			status = registry.KeyLost
		}
		mu.b = registry.Key{Serial: ext + "-b", OwnerID: mu.u.ID, Status: status, KeySets: []string{setB}}
		if err := tx.CreateKey(&mu.b); err != nil {
			return err
		}
		fc := registry.FIDOCredential{KeyID: mu.b.ID, CredentialID: []byte(ext + "-b"), RPID: "example.org", PublicKey: []byte{3}}
		if err := tx.AddFIDOCredential(&fc); err != nil {
			return err
		}
		if st == bUnverified {
			return nil
		}
		return tx.RecordVerification(&registry.Verification{KeyID: mu.b.ID, Kind: "fido2", CredentialID: fc.ID, OK: true})
	}); err != nil {
		t.Fatal(err)
	}
	return mu
}

func (e *env) head(t *testing.T) int64 {
	t.Helper()
	_, h, err := e.s.Changes(ctx, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (e *env) createMigration(t *testing.T, m *registry.Migration) error {
	t.Helper()
	return e.write(t, func(tx *sqlstore.Tx) error { return tx.CreateMigration(m) })
}

func (e *env) advance(t *testing.T, id string, to registry.MigrationState, p float64, resume bool) (registry.Migration, []string, []registry.UserReadiness, error) {
	t.Helper()
	var m registry.Migration
	var cut []string
	var held []registry.UserReadiness
	err := e.write(t, func(tx *sqlstore.Tx) error {
		var err error
		m, cut, held, err = tx.AdvanceMigration(id, to, p, resume)
		return err
	})
	return m, cut, held, err
}

// validKeys maps each user to the sorted ids of keys with a valid credential.
func (e *env) validKeys(t *testing.T) (int64, map[string][]string) {
	t.Helper()
	v, err := e.s.Validity(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, c := range v.Credentials {
		if !slices.Contains(out[c.UserID], c.KeyID) {
			out[c.UserID] = append(out[c.UserID], c.KeyID)
			slices.Sort(out[c.UserID])
		}
	}
	return v.Version, out
}

func (e *env) noneWithout(t *testing.T) {
	t.Helper()
	if _, bare, err := e.s.UsersWithoutCredential(ctx); err != nil || len(bare) != 0 {
		t.Fatalf("users without a valid credential: %v %v", bare, err)
	}
}

func init() {
	suite["MigrationBadPlansWriteNothing"] = func(t *testing.T, e *env) {
		a := e.migUser(t, "ann", bVerified, "eng")
		e.migUser(t, "ben", bVerified)
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.CreateKeySet(&registry.KeySet{Name: "empty-set"}) }); err != nil {
			t.Fatal(err)
		}
		before := e.head(t)
		plan := func(mod func(m *registry.Migration)) *registry.Migration {
			m := &registry.Migration{From: setA, To: setB, Scope: registry.Cohort{All: true}, Canary: registry.Cohort{Users: []string{a.u.ID}}, Stages: []float64{10, 50}}
			mod(m)
			return m
		}
		cases := []struct {
			name string
			m    *registry.Migration
			code string
		}{
			{"empty scope", plan(func(m *registry.Migration) { m.Scope = registry.Cohort{} }), "empty_cohort"},
			{"scope group with nobody", plan(func(m *registry.Migration) {
				m.Scope = registry.Cohort{Groups: []string{"nobody"}}
				m.Canary = registry.Cohort{Percent: 50}
			}), "empty_cohort"},
			{"empty canary", plan(func(m *registry.Migration) { m.Canary = registry.Cohort{} }), "empty_cohort"},
			{"canary group with nobody", plan(func(m *registry.Migration) { m.Canary = registry.Cohort{Groups: []string{"nobody"}} }), "empty_cohort"},
			{"unknown set", plan(func(m *registry.Migration) { m.To = "yk6-2030" }), "unknown_key_set"},
			{"same set", plan(func(m *registry.Migration) { m.To = setA }), "same_key_set"},
			{"canary percent", plan(func(m *registry.Migration) { m.Canary = registry.Cohort{Percent: 150} }), "percent_out_of_range"},
			{"stage percent", plan(func(m *registry.Migration) { m.Stages = []float64{10, 100} }), "percent_out_of_range"},
			{"stages shrink", plan(func(m *registry.Migration) { m.Stages = []float64{50, 10} }), "percent_out_of_range"},
			{"negative stage", plan(func(m *registry.Migration) { m.Stages = []float64{-5} }), "percent_out_of_range"},
			{"threshold", plan(func(m *registry.Migration) { m.Policy.HaltThreshold = 2 }), "invalid_policy"},
			{"unknown user", plan(func(m *registry.Migration) { m.Canary.Users = []string{"usr_nobody"} }), "unknown_user"},
		}
		for _, c := range cases {
			err := e.createMigration(t, c.m)
			var ie *registry.InvalidError
			if !errors.As(err, &ie) || ie.Code != c.code {
				t.Errorf("%s: got %v, want %s", c.name, err, c.code)
			}
		}
		if h := e.head(t); h != before {
			t.Fatalf("rejected plans wrote change sets: head %d → %d", before, h)
		}
		good := plan(func(m *registry.Migration) {})
		if err := e.createMigration(t, good); err != nil {
			t.Fatal(err)
		}
		before = e.head(t)
		overlap := plan(func(m *registry.Migration) { m.Scope = registry.Cohort{Groups: []string{"eng"}} })
		if err := e.createMigration(t, overlap); !errors.Is(err, registry.ErrOverlap) {
			t.Fatalf("overlap: %v", err)
		}
		if _, _, _, err := e.advance(t, good.ID, registry.MigrationCanary, 0, false); err == nil {
			t.Fatal("draft → canary skipped the dry run")
		}
		if h := e.head(t); h != before {
			t.Fatalf("refused requests wrote change sets: head %d → %d", before, h)
		}
		// A finished migration no longer claims its users.
		if err := e.write(t, func(tx *sqlstore.Tx) error { _, _, err := tx.RollbackMigration(good.ID, "test"); return err }); err != nil {
			t.Fatal(err)
		}
		if err := e.createMigration(t, overlap); err != nil {
			t.Fatalf("after rollback: %v", err)
		}
	}

	suite["MigrationCutOverAndRollback"] = func(t *testing.T, e *env) {
		ready := e.migUser(t, "rita", bVerified)
		ready2 := e.migUser(t, "ray", bVerified)
		none := e.migUser(t, "nick", bNone)
		unver := e.migUser(t, "una", bUnverified)
		lost := e.migUser(t, "lou", bLost)
		m := &registry.Migration{Name: "yk5", From: setA, To: setB, Scope: registry.Cohort{All: true},
			Canary: registry.Cohort{Users: []string{ready.u.ID, unver.u.ID}}, Stages: []float64{50},
			Policy: registry.MigrationPolicy{MaxVerificationAgeDays: 30}}
		if err := e.createMigration(t, m); err != nil {
			t.Fatal(err)
		}
		v0, base := e.validKeys(t)
		dr, err := e.s.DryRun(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(dr.Stages) != 3 || dr.Stages[0].Stage != "canary" || fmt.Sprint(dr.Stages[0].CutOver) != fmt.Sprint([]string{ready.u.ID}) ||
			len(dr.Stages[0].HeldBack) != 1 || dr.Stages[0].HeldBack[0].UserID != unver.u.ID {
			t.Fatalf("dry run: %+v", dr)
		}
		for _, s := range dr.Stages {
			if len(s.LockedOut) != 0 {
				t.Fatalf("dry run locks out %v at %s", s.LockedOut, s.Stage)
			}
		}
		if n := len(dr.Stages[0].CutOver) + len(dr.Stages[1].CutOver) + len(dr.Stages[2].CutOver); n != 2 || len(dr.Stages[2].HeldBack) != 3 {
			t.Fatalf("dry run: %d cut over in all, %+v", n, dr.Stages[2])
		}
		if v, _ := e.validKeys(t); v != v0 {
			t.Fatalf("dry run wrote: version %d → %d", v0, v)
		}
		if _, _, _, err := e.advance(t, m.ID, registry.MigrationDryRun, 0, false); err != nil {
			t.Fatal(err)
		}
		mm, cut, held, err := e.advance(t, m.ID, registry.MigrationCanary, 0, false)
		if err != nil || mm.State != registry.MigrationCanary || fmt.Sprint(cut) != fmt.Sprint([]string{ready.u.ID}) || len(held) != 1 || mm.StageCohort != 1 {
			t.Fatalf("canary: %+v %v %v %v", mm, cut, held, err)
		}
		if !slices.Equal(held[0].Reasons, []string{registry.ReasonBKeyUnverified}) {
			t.Fatalf("held back for %v", held[0].Reasons)
		}
		v1, now := e.validKeys(t)
		if v1 != v0+2 || !slices.Equal(now[ready.u.ID], []string{ready.b.ID}) || !slices.Equal(now[ready2.u.ID], base[ready2.u.ID]) {
			t.Fatalf("view after canary (v%d): %v", v1, now)
		}
		e.noneWithout(t)
		var te *registry.TransitionError
		if _, _, _, err := e.advance(t, m.ID, registry.MigrationDryRun, 0, false); !errors.As(err, &te) {
			t.Fatalf("backwards: %v", err)
		}
		var ie *registry.InvalidError
		if _, _, _, err := e.advance(t, m.ID, registry.MigrationStaged, 150, false); !errors.As(err, &ie) || ie.Code != "percent_out_of_range" {
			t.Fatalf("150%%: %v", err)
		}
		e.clock.t = e.clock.t.Add(time.Hour)
		mm, cut, held, err = e.advance(t, m.ID, registry.MigrationComplete, 0, false)
		if err != nil || mm.CutOver != 2 || len(cut) != 1 || cut[0] != ready2.u.ID || len(held) != 3 {
			t.Fatalf("complete: %+v %v %v %v", mm, cut, held, err)
		}
		e.noneWithout(t)
		rd, err := e.s.Readiness(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{ready.u.ID: "", ready2.u.ID: "", none.u.ID: registry.ReasonNoBKey, unver.u.ID: registry.ReasonBKeyUnverified, lost.u.ID: registry.ReasonBKeyLost}
		for _, r := range rd.Users {
			if got := fmt.Sprint(r.Reasons); (want[r.UserID] == "" && len(r.Reasons) != 0) || (want[r.UserID] != "" && got != "["+want[r.UserID]+"]") {
				t.Errorf("readiness of %s: %v, want %q", r.ExternalID, r.Reasons, want[r.UserID])
			}
		}
		sum := 0
		for _, c := range rd.Totals {
			sum += c.Users
		}
		if sum != 5 || rd.Totals[0].Cohort != "canary" || rd.Totals[0].Ready != 1 || rd.Totals[0].Blocked != 1 {
			t.Fatalf("totals: %+v", rd.Totals)
		}
		// Losing the only B key of a cut-over user moves the user back to A
		// in the same change set: never zero valid credentials.
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			_, err := tx.SetKeyStatus(ready2.b.ID, ready2.b.Version, registry.KeyLost, "")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if _, now := e.validKeys(t); !slices.Equal(now[ready2.u.ID], []string{ready2.a.ID}) {
			t.Fatalf("after losing the B key: %v", now[ready2.u.ID])
		}
		e.noneWithout(t)
		vb, _ := e.validKeys(t)
		var reverted []string
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			var err error
			_, reverted, err = tx.RollbackMigration(m.ID, "test")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		va, after := e.validKeys(t)
		if va != vb+1 || len(reverted) != 1 || !slices.Equal(after[ready.u.ID], base[ready.u.ID]) {
			t.Fatalf("rollback: v%d → v%d, reverted %v, %v", vb, va, reverted, after[ready.u.ID])
		}
		if _, _, _, err := e.advance(t, m.ID, registry.MigrationComplete, 0, false); !errors.As(err, &te) {
			t.Fatalf("advance after rollback: %v", err)
		}
		e.verifyAudit(t)
	}

	suite["MigrationHaltsByItself"] = func(t *testing.T, e *env) {
		var us []migUser
		var canary []string
		for i := range 30 {
			us = append(us, e.migUser(t, "h"+strconv.Itoa(i), bVerified))
			if i < 20 {
				canary = append(canary, us[i].u.ID)
			}
		}
		m := &registry.Migration{From: setA, To: setB, Scope: registry.Cohort{All: true}, Canary: registry.Cohort{Users: canary},
			Policy: registry.MigrationPolicy{HaltThreshold: 0.1}}
		if err := e.createMigration(t, m); err != nil {
			t.Fatal(err)
		}
		e.advance(t, m.ID, registry.MigrationDryRun, 0, false)
		e.clock.t = e.clock.t.Add(time.Minute)
		if mm, cut, _, err := e.advance(t, m.ID, registry.MigrationCanary, 0, false); err != nil || len(cut) != 20 || mm.StageCohort != 20 {
			t.Fatalf("canary: %v %v", cut, err)
		}
		report := func(mu migUser) registry.SignalOutcome {
			var out registry.SignalOutcome
			if err := e.write(t, func(tx *sqlstore.Tx) error {
				var err error
				out, err = tx.ReportLockout(&registry.LockoutSignal{UserID: mu.u.ID, KeyID: mu.b.ID})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return out
		}
		// A report about a user still on A is kept but moves nothing.
		if o := report(us[25]); o.UserReverted || o.Halted {
			t.Fatalf("user not cut over: %+v", o)
		}
		// A failed verification of a cut-over user's B key counts too.
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			return tx.RecordVerification(&registry.Verification{KeyID: us[0].b.ID, Kind: "fido2", CredentialID: "x", OK: false, Reason: "bad signature"})
		}); err != nil {
			t.Fatal(err)
		}
		if mm, _ := e.s.GetMigration(ctx, m.ID); mm.Halted || mm.StageAffected != 1 || mm.CutOver != 19 {
			t.Fatalf("after one failure: %+v", mm)
		}
		if o := report(us[1]); !o.UserReverted || !o.Halted {
			t.Fatalf("second failure of 20 at 10%%: %+v", o)
		}
		mm, _ := e.s.GetMigration(ctx, m.ID)
		if !mm.Halted || mm.CutOver != 0 || mm.StageAffected != 2 {
			t.Fatalf("halted: %+v", mm)
		}
		e.noneWithout(t)
		if _, _, _, err := e.advance(t, m.ID, registry.MigrationComplete, 0, false); !errors.Is(err, registry.ErrHalted) {
			t.Fatalf("advance while halted: %v", err)
		}
		cs, _, _ := e.s.Changes(ctx, 0, 100000)
		if last := cs[len(cs)-1]; last.Entity != "migration" || last.Op != "halt" {
			t.Fatalf("feed ends with %s.%s", last.Entity, last.Op)
		}
		rd, _ := e.s.Readiness(ctx, m.ID)
		for _, r := range rd.Users {
			if (r.UserID == us[0].u.ID || r.UserID == us[1].u.ID || r.UserID == us[25].u.ID) != !r.Ready {
				t.Errorf("%s ready=%v %v", r.ExternalID, r.Ready, r.Reasons)
			}
		}
		// Resuming re-runs the canary without the failing users.
		if _, cut, held, err := e.advance(t, m.ID, registry.MigrationCanary, 0, true); err != nil || len(cut) != 18 || len(held) != 2 {
			t.Fatalf("resume: %d cut, %d held, %v", len(cut), len(held), err)
		}
		e.verifyAudit(t)
	}
}

func init() {
	// Every readiness reason comes from the registry's own records: key
	// status, credentials, verifications and an auth server's reports.
	suite["MigrationReadinessReasons"] = func(t *testing.T, e *env) {
		ok := e.migUser(t, "ok", bVerified)
		failing := e.migUser(t, "failing", bVerified)
		pin := e.migUser(t, "pin", bVerified)
		noCred := e.migUser(t, "nocred", bNone)
		var bare registry.Key
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			bare = registry.Key{Serial: "nocred-b", OwnerID: noCred.u.ID, Status: registry.KeyActive, KeySets: []string{setB}}
			if err := tx.CreateKey(&bare); err != nil {
				return err
			}
			if err := tx.RecordVerification(&registry.Verification{KeyID: failing.b.ID, Kind: "fido2", CredentialID: "x", OK: false, Reason: "bad signature"}); err != nil {
				return err
			}
			_, err := tx.ReportLockout(&registry.LockoutSignal{UserID: pin.u.ID, KeyID: pin.b.ID, Reason: "pin_blocked"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		m := &registry.Migration{From: setA, To: setB, Scope: registry.Cohort{All: true}, Canary: registry.Cohort{Users: []string{ok.u.ID}},
			Policy: registry.MigrationPolicy{BackupRequired: true}}
		if err := e.createMigration(t, m); err != nil {
			t.Fatal(err)
		}
		rd, err := e.s.Readiness(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			ok.u.ID:      fmt.Sprint([]string{registry.ReasonNoBackupKey}),
			failing.u.ID: fmt.Sprint([]string{registry.ReasonBKeyFailing, registry.ReasonNoBackupKey}),
			pin.u.ID:     fmt.Sprint([]string{registry.ReasonPINBlocked, registry.ReasonNoBackupKey}),
			noCred.u.ID:  fmt.Sprint([]string{registry.ReasonBKeyNoCred, registry.ReasonNoBackupKey}),
		}
		if len(rd.Users) != 4 {
			t.Fatalf("%d users", len(rd.Users))
		}
		for _, r := range rd.Users {
			if got := fmt.Sprint(r.Reasons); got != want[r.UserID] || r.Ready {
				t.Errorf("%s: ready %v %s, want %s", r.ExternalID, r.Ready, got, want[r.UserID])
			}
		}
		// A later successful verification clears the failure.
		e.clock.t = e.clock.t.Add(time.Second)
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			return tx.RecordVerification(&registry.Verification{KeyID: failing.b.ID, Kind: "fido2", CredentialID: "x", OK: true})
		}); err != nil {
			t.Fatal(err)
		}
		rd, _ = e.s.Readiness(ctx, m.ID)
		for _, r := range rd.Users {
			if r.UserID == failing.u.ID && slices.Contains(r.Reasons, registry.ReasonBKeyFailing) {
				t.Errorf("failing after a successful verification: %v", r.Reasons)
			}
		}
	}
}
