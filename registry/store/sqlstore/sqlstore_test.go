package sqlstore_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/audit"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, s := range loaded {
		s.Close()
	}
	for _, d := range benchDirs {
		os.RemoveAll(d)
	}
	pgtest.StopShared()
	os.Exit(code)
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

type backend struct {
	name string
	dsn  func(t *testing.T) string
}

var backends = []backend{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "registry.db") }},
	{"postgres", func(t *testing.T) string { return pgtest.Database(t) }},
}

// TestStore is the one store suite, run on every backend.
func TestStore(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for name, fn := range suite {
				t.Run(name, func(t *testing.T) {
					_, priv, _ := ed25519.GenerateKey(rand.Reader)
					c := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
					s, err := sqlstore.Open(context.Background(), b.dsn(t), sqlstore.Options{Signer: priv, Now: c.now})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					fn(t, &env{s: s, clock: c, pub: priv.Public().(ed25519.PublicKey), priv: priv})
				})
			}
		})
	}
}

type env struct {
	s     *sqlstore.Store
	clock *clock
	pub   ed25519.PublicKey
	priv  ed25519.PrivateKey
}

var ctx = context.Background()

func (e *env) write(t *testing.T, fn func(*sqlstore.Tx) error) error {
	t.Helper()
	_, _, err := e.s.Write(ctx, "test", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) { return sqlstore.Result{Status: 200}, fn(tx) })
	return err
}

func (e *env) user(t *testing.T, ext string) registry.User {
	t.Helper()
	u := registry.User{ExternalID: ext, DisplayName: "User " + ext, Groups: []string{"eng"}}
	if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.CreateUser(&u) }); err != nil {
		t.Fatal(err)
	}
	return u
}

func (e *env) key(t *testing.T, owner, serial string, st registry.KeyStatus) registry.Key {
	t.Helper()
	k := registry.Key{Serial: serial, OwnerID: owner, Status: st, KeySets: []string{"yk5-2026"}}
	if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.CreateKey(&k) }); err != nil {
		t.Fatal(err)
	}
	return k
}

// escrowRow stores an escrow blob for key id directly in its table, outside
// any change set, so a test's feed and version counts stay as they were:
// a key with PIV slots is activated only with an escrow.
func (e *env) escrowRow(t *testing.T, id string) {
	t.Helper()
	if _, err := e.s.DB().Exec(e.s.Rebind("INSERT INTO escrow_blobs (key_id, kind, blob, version, created_at) VALUES (?, 'piv', ?, 1, 0)"), id, []byte("sealed")); err != nil {
		t.Fatal(err)
	}
}

func (e *env) verifyAudit(t *testing.T) audit.Report {
	t.Helper()
	es, cs, err := e.s.AuditLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.Verify(es, cs, e.pub)
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	return r
}

var suite = map[string]func(t *testing.T, e *env){
	"UserRoundTripAndDuplicate": func(t *testing.T, e *env) {
		u := e.user(t, "alice")
		got, err := e.s.GetUser(ctx, u.ID)
		if err != nil || got.ExternalID != "alice" || got.Version != 1 || len(got.Groups) != 1 || got.Status != registry.UserActive {
			t.Fatalf("got %+v, %v", got, err)
		}
		dup := registry.User{ExternalID: "alice"}
		err = e.write(t, func(tx *sqlstore.Tx) error { return tx.CreateUser(&dup) })
		var de *registry.DuplicateError
		if !errors.As(err, &de) {
			t.Fatalf("duplicate external id: %v", err)
		}
		if _, err := e.s.GetUser(ctx, "nobody"); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("missing user: %v", err)
		}
	},
	"OptimisticConcurrency": func(t *testing.T, e *env) {
		u := e.user(t, "bob")
		u.DisplayName = "Bob B"
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.UpdateUser(&u, 1, "") }); err != nil {
			t.Fatal(err)
		}
		stale := u
		stale.DisplayName = "stale"
		err := e.write(t, func(tx *sqlstore.Tx) error { return tx.UpdateUser(&stale, 1, "") })
		var ce *registry.ConflictError
		if !errors.As(err, &ce) || ce.Have != 2 || ce.Current.(registry.User).DisplayName != "Bob B" {
			t.Fatalf("stale update: %v", err)
		}
	},
	// LastKeyGuard: the guard is about the validity view. A move that takes
	// the user's last credential in it away (to pending as much as to
	// revoked, or the user's own suspension) needs a break-glass reason; a
	// key with no credential in the view, or a pending credential, does not
	// count.
	"LastKeyGuard": func(t *testing.T, e *env) {
		u := e.user(t, "carol")
		k1 := e.key(t, u.ID, "1001", registry.KeyActive)
		k2 := e.key(t, u.ID, "1002", registry.KeyActive)
		bare := e.key(t, u.ID, "1003", registry.KeyActive) // no credential at all
		for i, k := range []registry.Key{k1, k2} {
			ps := registry.PIVSlot{KeyID: k.ID, Slot: "9a", PublicKey: []byte{byte(i)}}
			if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.AddPIVSlot(&ps) }); err != nil {
				t.Fatal(err)
			}
		}
		held := registry.FIDOCredential{KeyID: k2.ID, CredentialID: []byte("held"), RPID: "example.org", PublicKey: []byte{9}, Pending: true}
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.AddFIDOCredential(&held) }); err != nil {
			t.Fatal(err)
		}
		var err error
		if err = e.write(t, func(tx *sqlstore.Tx) error { k1, err = tx.SetKeyStatus(k1.ID, 1, registry.KeyLost, ""); return err }); err != nil {
			t.Fatalf("losing one of two keys: %v", err)
		}
		// Lost again: nothing changes, neither version nor the time the key
		// became lost (a fresh verification must follow that time), and no
		// audit entry is added.
		before, _, _ := e.s.AuditLog(ctx)
		var again registry.Key
		if err = e.write(t, func(tx *sqlstore.Tx) error {
			again, err = tx.SetKeyStatus(k1.ID, k1.Version, registry.KeyLost, "")
			return err
		}); err != nil {
			t.Fatalf("losing a lost key: %v", err)
		}
		after, _, _ := e.s.AuditLog(ctx)
		if again.Version != k1.Version || !again.UpdatedAt.Equal(k1.UpdatedAt) || len(after) != len(before) {
			t.Fatalf("lost to lost changed the key: version %d→%d, updated %v→%v, audit %d→%d", k1.Version, again.Version, k1.UpdatedAt, again.UpdatedAt, len(before), len(after))
		}
		if err = e.write(t, func(tx *sqlstore.Tx) error {
			_, err := tx.SetKeyStatus(bare.ID, 1, registry.KeyRetired, "")
			return err
		}); err != nil {
			t.Fatalf("retiring a key with no credential in the view: %v", err)
		}
		for _, to := range []registry.KeyStatus{registry.KeyPending, registry.KeySuspended, registry.KeyLost, registry.KeyRevoked, registry.KeyRetired} {
			err = e.write(t, func(tx *sqlstore.Tx) error { _, err := tx.SetKeyStatus(k2.ID, 1, to, ""); return err })
			if !errors.Is(err, registry.ErrLastKey) {
				t.Fatalf("last key to %s: %v", to, err)
			}
		}
		for _, to := range []registry.UserStatus{registry.UserSuspended, registry.UserDeleted} {
			uu := u
			uu.Status = to
			err = e.write(t, func(tx *sqlstore.Tx) error { return tx.UpdateUser(&uu, 1, "") })
			if !errors.Is(err, registry.ErrLastKey) {
				t.Fatalf("user with a valid credential to %s: %v", to, err)
			}
		}
		if k, _ := e.s.GetKey(ctx, k2.ID); k.Status != registry.KeyActive || k.Version != 1 {
			t.Fatalf("refused change was written: %+v", k)
		}
		if v, _ := e.s.Validity(ctx, u.ID); len(v.Credentials) != 1 || v.Credentials[0].KeyID != k2.ID {
			t.Fatalf("validity after refused changes: %+v", v.Credentials)
		}
		if err = e.write(t, func(tx *sqlstore.Tx) error {
			_, err := tx.SetKeyStatus(k2.ID, 1, registry.KeyPending, "stolen, user has TAP")
			return err
		}); err != nil {
			t.Fatalf("break glass: %v", err)
		}
		es, _, _ := e.s.AuditLog(ctx)
		found := false
		for _, a := range es {
			if a.Action == "key.break_glass" && strings.Contains(string(a.Payload), "stolen, user has TAP") && strings.Contains(string(a.Payload), `"to":"pending"`) {
				found = true
			}
		}
		if !found {
			t.Fatal("break-glass not audited")
		}
		// Nothing left in the view: suspending the user takes nothing away.
		uu := u
		uu.Status = registry.UserSuspended
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.UpdateUser(&uu, 1, "") }); err != nil {
			t.Fatalf("suspending a user with no valid credential: %v", err)
		}
		e.verifyAudit(t)
	},
	// UserBreakGlass: deleting a user who has a valid credential is
	// audited as user.break_glass with the reason.
	"UserBreakGlass": func(t *testing.T, e *env) {
		u := e.user(t, "erin")
		k := e.key(t, u.ID, "1101", registry.KeyActive)
		ps := registry.PIVSlot{KeyID: k.ID, Slot: "9a", PublicKey: []byte{1}}
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.AddPIVSlot(&ps) }); err != nil {
			t.Fatal(err)
		}
		u.Status = registry.UserDeleted
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.UpdateUser(&u, 1, "left the company") }); err != nil {
			t.Fatal(err)
		}
		es, _, _ := e.s.AuditLog(ctx)
		if a := es[len(es)-1]; a.Action != "user.break_glass" || !strings.Contains(string(a.Payload), "left the company") {
			t.Fatalf("last audit entry: %s %s", a.Action, a.Payload)
		}
		if v, _ := e.s.Validity(ctx, u.ID); len(v.Credentials) != 0 {
			t.Fatalf("deleted user in the validity view: %+v", v.Credentials)
		}
	},
	"RollbackLeavesNothing": func(t *testing.T, e *env) {
		u := registry.User{ExternalID: "dave"}
		err := e.write(t, func(tx *sqlstore.Tx) error {
			if err := tx.CreateUser(&u); err != nil {
				return err
			}
			k := registry.Key{Serial: "2001", OwnerID: u.ID, Role: "spare"}
			return tx.CreateKey(&k)
		})
		var ie *registry.InvalidError
		if !errors.As(err, &ie) || ie.Code != "invalid_role" {
			t.Fatalf("bad role: %v", err)
		}
		if _, err := e.s.UserByExternalID(ctx, "dave"); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("user of a failed change set was written: %v", err)
		}
		ch, head, _ := e.s.Changes(ctx, 0, 100)
		if len(ch) != 0 || head != 0 {
			t.Fatalf("feed has %d changes, head %d", len(ch), head)
		}
	},
	"LargeChangeSet": func(t *testing.T, e *env) {
		// Big enough for PostgreSQL to COPY the feed and audit rows, with an
		// idempotency key that a replay then finds.
		e.user(t, "before")
		const n = 700
		idem := &sqlstore.Idempotency{Scope: "tok", Key: "bulk", RequestHash: []byte("h")}
		_, _, err := e.s.Write(ctx, "test", idem, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
			for i := 0; i < n; i++ {
				u := registry.User{ExternalID: fmt.Sprintf("bulk-%d", i)}
				if err := tx.CreateUser(&u); err != nil {
					return sqlstore.Result{}, err
				}
			}
			return sqlstore.Result{Status: 201, Body: []byte("{}")}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cs, head, err := e.s.Changes(ctx, 1, 10000)
		if err != nil {
			t.Fatal(err)
		}
		if head != 2 || len(cs) != n {
			t.Fatalf("feed after the bulk change set: head %d, %d changes", head, len(cs))
		}
		for i, c := range cs {
			var u registry.User
			if err := json.Unmarshal(c.Data, &u); err != nil || c.Seq != 2 || u.ExternalID != fmt.Sprintf("bulk-%d", i) {
				t.Fatalf("change %d: seq %d, %s (%v)", i, c.Seq, c.Data, err)
			}
		}
		if r := e.verifyAudit(t); r.Entries != n+1 {
			t.Fatalf("audit entries: %d", r.Entries)
		}
		_, replayed, err := e.s.Write(ctx, "test", idem, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
			return sqlstore.Result{}, errors.New("replay ran the write again")
		})
		if err != nil || !replayed {
			t.Fatalf("replay: %v %v", replayed, err)
		}
	},
	"Idempotency": func(t *testing.T, e *env) {
		idem := &sqlstore.Idempotency{Scope: "tok", Key: "k1", RequestHash: []byte("h1")}
		calls := 0
		w := func() (sqlstore.Result, bool, error) {
			return e.s.Write(ctx, "test", idem, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
				calls++
				u := registry.User{ExternalID: "erin"}
				return sqlstore.Result{Status: 201, Body: []byte(`{"n":1}`)}, tx.CreateUser(&u)
			})
		}
		r1, rep1, err := w()
		if err != nil || rep1 {
			t.Fatal(err, rep1)
		}
		_, head1, _ := e.s.Changes(ctx, 0, 1)
		r2, rep2, err := w()
		if err != nil || !rep2 || r2.Status != 201 || string(r2.Body) != string(r1.Body) {
			t.Fatalf("replay: %+v %v %v calls=%d", r2, rep2, err, calls)
		}
		// A replay whose write would succeed again is answered from the
		// stored result too, and writes nothing.
		before := calls
		r3, rep3, err := e.s.Write(ctx, "test", idem, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
			calls++
			return sqlstore.Result{Status: 200, Body: []byte(`{"n":2}`)}, tx.Audit("noop", nil)
		})
		if err != nil || !rep3 || string(r3.Body) != string(r1.Body) {
			t.Fatalf("replay of a write that succeeds again: %+v %v %v", r3, rep3, err)
		}
		if _, head, _ := e.s.Changes(ctx, 0, 1); head != head1 || calls < before {
			t.Fatalf("a replay wrote: head %d, was %d", head, head1)
		}
		if r := e.verifyAudit(t); r.Entries != 1 {
			t.Fatalf("a replay wrote audit entries: %d", r.Entries)
		}
		idem.RequestHash = []byte("other")
		if _, _, err := w(); !errors.Is(err, registry.ErrIdempotencyMismatch) {
			t.Fatalf("reused key: %v", err)
		}
	},
	"ChallengeSingleUseAndExpiry": func(t *testing.T, e *env) {
		u := e.user(t, "frank")
		k := e.key(t, u.ID, "3001", registry.KeyActive)
		c := registry.Challenge{ID: "ch1_a", KeyID: k.ID, Kind: "piv", CredentialID: "x", Nonce: []byte("nonce"), ExpiresAt: e.clock.t.Add(time.Minute)}
		c2 := c
		c2.ID = "ch1_b"
		use := func(c registry.Challenge) error {
			return e.write(t, func(tx *sqlstore.Tx) error { return tx.UseChallenge(c) })
		}
		if err := use(c); err != nil {
			t.Fatal(err)
		}
		if err := use(c); !errors.Is(err, registry.ErrChallenge) {
			t.Fatalf("second use: %v", err)
		}
		// A use that rolls back leaves the challenge usable.
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			if err := tx.UseChallenge(c2); err != nil {
				return err
			}
			return errors.New("verification failed half-way")
		}); err == nil {
			t.Fatal("rollback expected")
		}
		e.clock.t = e.clock.t.Add(2 * time.Minute)
		if err := use(c2); !errors.Is(err, registry.ErrChallenge) {
			t.Fatalf("expired: %v", err)
		}
		ex, err := e.s.Expire(ctx, e.clock.t.Add(-time.Hour), e.clock.t)
		if err != nil || ex.Challenges != 1 {
			t.Fatalf("expire: %+v %v", ex, err)
		}
	},
	"FeedAndValidity": func(t *testing.T, e *env) {
		u := e.user(t, "gina")
		k := e.key(t, u.ID, "4001", registry.KeyPending)
		fc := registry.FIDOCredential{KeyID: k.ID, CredentialID: []byte{1, 2, 3}, RPID: "example.org", PublicKey: []byte{9}}
		ps := registry.PIVSlot{KeyID: k.ID, Slot: "9a", PublicKey: []byte{8}}
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			if err := tx.AddFIDOCredential(&fc); err != nil {
				return err
			}
			return tx.AddPIVSlot(&ps)
		}); err != nil {
			t.Fatal(err)
		}
		dup := registry.FIDOCredential{KeyID: k.ID, CredentialID: []byte{1, 2, 3}, RPID: "example.org", PublicKey: []byte{9}}
		var de *registry.DuplicateError
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.AddFIDOCredential(&dup) }); !errors.As(err, &de) {
			t.Fatalf("duplicate credential: %v", err)
		}
		v, err := e.s.Validity(ctx, "")
		if err != nil || len(v.Credentials) != 0 || v.Version != 3 {
			t.Fatalf("pending key must not be valid: %+v %v", v, err)
		}
		if err := e.write(t, func(tx *sqlstore.Tx) error { _, err := tx.SetKeyStatus(k.ID, 1, registry.KeyActive, ""); return err }); !errors.Is(err, registry.ErrProofRequired) {
			t.Fatalf("activation without proof: %v", err)
		}
		// Proven, but with PIV slots and no escrow: never activated.
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			v := registry.Verification{ChallengeID: "ch_y", KeyID: k.ID, Kind: "piv", CredentialID: ps.ID, OK: true}
			if err := tx.RecordVerification(&v); err != nil {
				return err
			}
			if _, activated, err := tx.ActivateByProof(k.ID, v.ID); err != nil || activated {
				return fmt.Errorf("activated %v without escrow: %v", activated, err)
			}
			_, err := tx.SetKeyStatus(k.ID, 1, registry.KeyActive, "")
			return err
		}); !errors.Is(err, registry.ErrEscrowMissing) {
			t.Fatalf("activation without escrow: %v", err)
		}
		e.escrowRow(t, k.ID)
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			v := registry.Verification{ChallengeID: "ch_x", KeyID: k.ID, Kind: "piv", CredentialID: ps.ID, OK: true}
			if err := tx.RecordVerification(&v); err != nil {
				return err
			}
			_, activated, err := tx.ActivateByProof(k.ID, v.ID)
			if err == nil && !activated {
				err = errors.New("pending key not activated")
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		v, err = e.s.Validity(ctx, u.ID)
		if err != nil || len(v.Credentials) != 2 || v.Version != 4 {
			t.Fatalf("active key: %+v %v", v, err)
		}
		other := e.user(t, "hank")
		if v, _ := e.s.Validity(ctx, other.ID); len(v.Credentials) != 0 {
			t.Fatalf("other user sees %d", len(v.Credentials))
		}
		all, head, err := e.s.Changes(ctx, 0, 1000)
		if err != nil || head != 5 || len(all) != 6 {
			t.Fatalf("feed: %d changes head %d %v", len(all), head, err)
		}
		// Paging never splits a change set: the set at seq 3 has two changes.
		page, _, _ := e.s.Changes(ctx, 2, 1)
		if len(page) != 2 || page[0].Seq != 3 || page[1].Seq != 3 {
			t.Fatalf("page: %+v", page)
		}
		inc, _, _ := e.s.Changes(ctx, 4, 1000)
		if len(inc) != 1 || inc[0].Entity != "user" {
			t.Fatalf("incremental: %+v", inc)
		}
	},
	"EscrowVersioned": func(t *testing.T, e *env) {
		u := e.user(t, "ivy")
		k := e.key(t, u.ID, "5001", registry.KeyActive)
		b := registry.EscrowBlob{KeyID: k.ID, Kind: "piv-puk", Blob: []byte("age-encrypted")}
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.PutEscrow(&b, 0) }); err != nil {
			t.Fatal(err)
		}
		var ce *registry.ConflictError
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.PutEscrow(&b, 0) }); !errors.As(err, &ce) {
			t.Fatalf("stale escrow: %v", err)
		}
		got, err := e.s.GetEscrow(ctx, k.ID, "piv-puk")
		if err != nil || string(got.Blob) != "age-encrypted" || got.Version != 1 {
			t.Fatalf("%+v %v", got, err)
		}
		es, _, _ := e.s.AuditLog(ctx)
		for _, a := range es {
			if string(a.Payload) != "" && contains(a.Payload, "age-encrypted") {
				t.Fatal("escrow blob leaked into the audit log")
			}
		}
	},
	"AuditTamperDetected": func(t *testing.T, e *env) {
		for _, n := range []string{"a", "b", "c"} {
			e.user(t, n)
		}
		r := e.verifyAudit(t)
		if r.Entries != 3 || r.Checkpoints != 3 {
			t.Fatalf("%+v", r)
		}
		if _, err := e.s.DB().Exec(e.s.Rebind("UPDATE audit_log SET actor = ? WHERE seq = 2"), "mallory"); err != nil {
			t.Fatal(err)
		}
		es, cs, _ := e.s.AuditLog(ctx)
		_, err := audit.Verify(es, cs, e.pub)
		var te *audit.TamperError
		if !errors.As(err, &te) || te.Seq != 2 {
			t.Fatalf("tampered row not found: %v", err)
		}
	},
	"AccessPassSingleUseAndExpiry": func(t *testing.T, e *env) {
		u := e.user(t, "jo")
		a := registry.TemporaryAccessPass{UserID: u.ID, Reason: "r", ExpiresAt: e.clock.t.Add(time.Hour)}
		b := a
		if err := e.write(t, func(tx *sqlstore.Tx) error {
			if err := tx.CreateAccessPass(&a, []byte("hash-a")); err != nil {
				return err
			}
			return tx.CreateAccessPass(&b, []byte("hash-b"))
		}); err != nil {
			t.Fatal(err)
		}
		redeem := func(h string) error {
			return e.write(t, func(tx *sqlstore.Tx) error { _, err := tx.RedeemAccessPass([]byte(h), nil); return err })
		}
		if err := redeem("hash-a"); err != nil {
			t.Fatal(err)
		}
		if err := redeem("hash-a"); !errors.Is(err, registry.ErrAccessPass) {
			t.Fatalf("second use: %v", err)
		}
		if err := redeem("hash-x"); !errors.Is(err, registry.ErrAccessPass) {
			t.Fatalf("unknown pass: %v", err)
		}
		e.clock.t = e.clock.t.Add(time.Hour)
		if err := redeem("hash-b"); !errors.Is(err, registry.ErrAccessPass) {
			t.Fatalf("expired pass: %v", err)
		}
		ps, err := e.s.AccessPasses(ctx, u.ID)
		if err != nil || len(ps) != 2 {
			t.Fatalf("%+v %v", ps, err)
		}
		st := map[string]string{}
		for _, p := range ps {
			st[p.ID] = p.Status
		}
		if st[a.ID] != "redeemed" || st[b.ID] != "expired" {
			t.Fatalf("statuses %v", st)
		}
		e.verifyAudit(t)
	},
	"AuditLaterChainedOnce": func(t *testing.T, e *env) {
		u := e.user(t, "kim")
		k := e.key(t, u.ID, "6001", registry.KeyActive)
		const n = 200
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- e.write(t, func(tx *sqlstore.Tx) error {
					tx.AuditLater()
					v := registry.Verification{ChallengeID: "c", KeyID: k.ID, Kind: "piv", CredentialID: "x", OK: true}
					return tx.RecordVerification(&v)
				})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		// A change set with feed changes is chained in its own transaction
		// between deferred ones.
		e.user(t, "lee")
		r := e.verifyAudit(t)
		es, _, _ := e.s.AuditLog(ctx)
		seen := 0
		for _, a := range es {
			if a.Action == "verification" {
				seen++
			}
		}
		var pending int
		if err := e.s.DB().QueryRow("SELECT COUNT(*) FROM audit_pending").Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if seen != n || pending != 0 || r.Entries != n+3 {
			t.Fatalf("%d verifications chained, %d pending, %d entries", seen, pending, r.Entries)
		}
	},
	"VerificationChangeSet": func(t *testing.T, e *env) {
		// The change set POST /v1/verifications writes: read the key and
		// slot, use the challenge, record the verification (audited
		// later), activate a pending key. Twenty concurrent attempts on
		// one challenge, each under its own idempotency key: exactly one
		// is recorded, the rest are refused as a used challenge.
		u := e.user(t, "mona")
		k := e.key(t, u.ID, "7001", registry.KeyActive)
		ps := registry.PIVSlot{KeyID: k.ID, Slot: "9a", PublicKey: []byte{8}}
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.AddPIVSlot(&ps) }); err != nil {
			t.Fatal(err)
		}
		ok := true // whether the next verification's signature checks out
		verify := func(c registry.Challenge, idem string) (sqlstore.Result, bool, error) {
			return e.s.Write(ctx, "test", &sqlstore.Idempotency{Scope: "test", Key: idem, RequestHash: []byte(c.ID)}, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
				key, pub, _, err := tx.KeyWithPIVKey(c.KeyID, c.CredentialID)
				if err != nil {
					return sqlstore.Result{}, err
				}
				if len(pub) != 1 {
					return sqlstore.Result{}, fmt.Errorf("public key %x", pub)
				}
				if err := tx.UseChallenge(c); err != nil {
					return sqlstore.Result{}, err
				}
				tx.AuditLater()
				v := registry.Verification{ChallengeID: c.ID, KeyID: c.KeyID, Kind: "piv", CredentialID: c.CredentialID, OK: ok}
				if err := tx.RecordVerification(&v); err != nil {
					return sqlstore.Result{}, err
				}
				if key.Status == registry.KeyPending && ok {
					if _, _, err := tx.ActivateByProof(key.ID, v.ID); err != nil {
						return sqlstore.Result{}, err
					}
				}
				return sqlstore.Result{Status: 201, Body: []byte(v.ID)}, nil
			})
		}
		c := registry.Challenge{ID: "ch1_race", KeyID: k.ID, Kind: "piv", CredentialID: ps.ID, Nonce: []byte("n"), ExpiresAt: e.clock.t.Add(time.Minute)}
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, err := verify(c, fmt.Sprint("race-", i))
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		used := 0
		for err := range errs {
			switch {
			case err == nil:
				used++
			case !errors.Is(err, registry.ErrChallenge):
				t.Fatalf("concurrent use: %v", err)
			}
		}
		if used != 1 {
			t.Fatalf("%d of %d concurrent uses of one challenge succeeded", used, n)
		}
		// A replay of a recorded verification answers the stored result
		// and writes nothing.
		c2 := c
		c2.ID = "ch1_replay"
		first, _, err := verify(c2, "replay")
		if err != nil {
			t.Fatal(err)
		}
		again, replayed, err := verify(c2, "replay")
		if err != nil || !replayed || string(again.Body) != string(first.Body) {
			t.Fatalf("replay: %q %v %v (first %q)", again.Body, replayed, err, first.Body)
		}
		// The key's health moved to the verification's time.
		var lastOK int64
		if err := e.s.DB().QueryRow(e.s.Rebind("SELECT last_ok_at FROM key_health WHERE key_id = ?"), k.ID).Scan(&lastOK); err != nil || lastOK != e.clock.t.UnixNano() {
			t.Fatalf("key health: %d %v", lastOK, err)
		}
		// A failed check is recorded too, as the key's last failure.
		ok = false
		e.clock.t = e.clock.t.Add(time.Second)
		c4 := c
		c4.ID = "ch1_fail"
		if _, _, err := verify(c4, "fail"); err != nil {
			t.Fatal(err)
		}
		ok = true
		var lastFail int64
		if err := e.s.DB().QueryRow(e.s.Rebind("SELECT last_ok_at, last_fail_at FROM key_health WHERE key_id = ?"), k.ID).Scan(&lastOK, &lastFail); err != nil || lastFail != e.clock.t.UnixNano() || lastOK != e.clock.t.Add(-time.Second).UnixNano() {
			t.Fatalf("key health after a failure: ok %d fail %d %v", lastOK, lastFail, err)
		}
		var rows int
		if err := e.s.DB().QueryRow(e.s.Rebind("SELECT COUNT(*) FROM verifications WHERE key_id = ?"), k.ID).Scan(&rows); err != nil || rows != 3 {
			t.Fatalf("%d verifications recorded, want 3: %v", rows, err)
		}
		// A pending key's proof activates it in the same change set.
		p := e.key(t, u.ID, "7002", registry.KeyPending)
		pp := registry.PIVSlot{KeyID: p.ID, Slot: "9a", PublicKey: []byte{7}}
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.AddPIVSlot(&pp) }); err != nil {
			t.Fatal(err)
		}
		e.escrowRow(t, p.ID)
		c3 := registry.Challenge{ID: "ch1_pending", KeyID: p.ID, Kind: "piv", CredentialID: pp.ID, Nonce: []byte("n"), ExpiresAt: e.clock.t.Add(time.Minute)}
		if _, _, err := verify(c3, "pending"); err != nil {
			t.Fatal(err)
		}
		if got, err := e.s.GetKey(ctx, p.ID); err != nil || got.Status != registry.KeyActive {
			t.Fatalf("pending key after proof: %+v %v", got, err)
		}
		if r := e.verifyAudit(t); r.Entries == 0 {
			t.Fatal("no audit entries")
		}
		es, _, _ := e.s.AuditLog(ctx)
		seen := 0
		for _, a := range es {
			if a.Action == "verification" {
				seen++
			}
		}
		if seen != 4 {
			t.Fatalf("%d verifications audited, want 4", seen)
		}
	},
	"SignCounterUnderLock": func(t *testing.T, e *env) {
		// The FIDO2 verification change set: the key read without a lock,
		// then the credential locked for the counter check. Ten concurrent
		// assertions carry the same counter: exactly one may see it
		// increase; the others must see a regression.
		u := e.user(t, "nina")
		k := e.key(t, u.ID, "8001", registry.KeyActive)
		fc := registry.FIDOCredential{KeyID: k.ID, CredentialID: []byte{4, 5}, RPID: "example.org", PublicKey: []byte{9}}
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.AddFIDOCredential(&fc) }); err != nil {
			t.Fatal(err)
		}
		const n, count = 10, 7
		var wg sync.WaitGroup
		var mu sync.Mutex
		fresh, clones := 0, 0
		// Each assertion, having read the counter, waits for the others
		// to read it too (or for 100 ms, which is all it waits when the
		// lock keeps them out): without the lock all of them would read
		// the old counter.
		var arrived sync.WaitGroup
		arrived.Add(n)
		allRead := make(chan struct{})
		go func() { arrived.Wait(); close(allRead) }()
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := e.write(t, func(tx *sqlstore.Tx) error {
					if _, err := tx.KeyRow(k.ID); err != nil {
						return err
					}
					c, err := tx.LockFIDOCredential(fc.ID)
					if err != nil {
						return err
					}
					clone := count <= c.SignCount
					arrived.Done()
					select {
					case <-allRead:
					case <-time.After(100 * time.Millisecond):
					}
					if err := tx.UpdateSignCount(c.ID, count, clone); err != nil {
						return err
					}
					tx.AuditLater()
					v := registry.Verification{ChallengeID: fmt.Sprint("ch1_f", i), KeyID: k.ID, Kind: "fido2", CredentialID: c.ID, OK: true, CloneSuspected: clone}
					if err := tx.RecordVerification(&v); err != nil {
						return err
					}
					mu.Lock()
					defer mu.Unlock()
					if clone {
						clones++
					} else {
						fresh++
					}
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if fresh != 1 || clones != n-1 {
			t.Fatalf("%d assertions saw the counter increase, %d a regression; want 1 and %d", fresh, clones, n-1)
		}
		got, err := e.s.GetFIDOCredential(ctx, fc.ID)
		if err != nil || got.SignCount != count || !got.CloneSuspected {
			t.Fatalf("credential after: %+v %v", got, err)
		}
		e.verifyAudit(t)
	},
	"Tokens": func(t *testing.T, e *env) {
		if err := e.write(t, func(tx *sqlstore.Tx) error { return tx.CreateToken([]byte("hash"), "first-admin", "admin", "") }); err != nil {
			t.Fatal(err)
		}
		tok, err := e.s.LookupToken(ctx, []byte("hash"))
		if err != nil || tok.Role != "admin" || tok.Name != "first-admin" {
			t.Fatalf("%+v %v", tok, err)
		}
		if _, err := e.s.LookupToken(ctx, []byte("nope")); !errors.Is(err, registry.ErrNotFound) {
			t.Fatal(err)
		}
	},
}

func contains(b []byte, s string) bool {
	return len(s) > 0 && len(b) >= len(s) && (string(b) == s || indexOf(string(b), s) >= 0)
}

func indexOf(a, b string) int {
	for i := 0; i+len(b) <= len(a); i++ {
		if a[i:i+len(b)] == b {
			return i
		}
	}
	return -1
}
