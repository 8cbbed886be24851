package idp_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/idp/idptest"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/regtest"
)

var bin string

func TestMain(m *testing.M) { regtest.RunTests(m, &bin) }

var ctx = context.Background()

// desk is a real registry process, a client with an admin token, and a
// provider outbox.
type desk struct {
	reg *client.Client
	box *idp.Outbox
}

func newDesk(t *testing.T) *desk {
	t.Helper()
	state := t.TempDir()
	tok, err := regtest.Token(bin, state, "admin", "desk", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.Start(bin, state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	c, err := client.New(p.URL, tok, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	box, err := idp.OpenOutbox(filepath.Join(t.TempDir(), idp.OutboxFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { box.Close() })
	return &desk{reg: c, box: box}
}

// enrol registers an active key with one FIDO2 credential for ext and
// returns the key, the user and the credential as the desk hands it to
// providers that import it.
func (d *desk) enrol(t *testing.T, ext, serial string) (client.KeyDetail, idp.User, idp.Credential) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cred := idp.Credential{ID: []byte("cred-" + serial), PublicKey: credential.COSEKeyES256(&k.PublicKey)}
	e, err := d.reg.Enrol(ctx, client.Enrolment{User: client.EnrolUser{ExternalID: ext, DisplayName: ext},
		Key:   client.EnrolKey{Serial: serial, Model: "YubiKey 5 NFC"},
		FIDO2: []client.FIDO2Credential{{CredentialID: cred.ID, PublicKey: cred.PublicKey, RPID: "keydesk.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.reg.SetKeyStatus(ctx, e.Key.ID, e.Key.Version, registry.KeyActive, "test key"); err != nil {
		t.Fatal(err)
	}
	kd, err := d.reg.Key(ctx, e.Key.ID)
	if err != nil {
		t.Fatal(err)
	}
	return kd, idp.User{ExternalID: ext, DisplayName: ext}, cred
}

func connect(t *testing.T, s *idptest.Server, name string) idp.Connector {
	t.Helper()
	c, err := idp.Open(s.Config(name), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRegisterQueueReplayOnce: a provider that imports the desk's
// credential gets it once and the registry records the link; a provider
// that is down queues the write, which a flush replays once and only once,
// however often it runs.
func TestRegisterQueueReplayOnce(t *testing.T) {
	d := newDesk(t)
	up, down := idptest.Start(), idptest.Start()
	defer up.Close()
	defer down.Close()
	down.SetDown(true)
	o := idp.NewOrchestrator([]idp.Connector{connect(t, up, "corp"), connect(t, down, "partner")}, d.reg, d.box)
	kd, u, cred := d.enrol(t, "alice", "31000001")
	out, err := o.Register(ctx, u, idp.KeyRef{ID: kd.ID, Serial: 31000001, Model: kd.Model}, cred, nil)
	if err != nil || len(out) != 2 {
		t.Fatalf("register: %+v, %v", out, err)
	}
	if out[0].State != idp.IntentDone || out[0].LinkID == "" || out[1].State != idp.IntentPending || !out[1].Queued {
		t.Fatalf("outcomes: %+v", out)
	}
	if up.Writes() != 1 || down.Writes() != 0 {
		t.Fatalf("writes: corp %d, partner %d", up.Writes(), down.Writes())
	}
	if ms := up.Methods("alice"); len(ms) != 1 || !strings.HasPrefix(ms[0].DisplayName, "YubiKey 5 NFC 31000001 [kd-") {
		t.Fatalf("corp's methods: %+v", ms)
	}
	// Still down: the flush leaves it queued.
	if out, err := o.Flush(ctx); err != nil || len(out) != 1 || !out[0].Queued {
		t.Fatalf("flush while down: %+v, %v", out, err)
	}
	down.SetDown(false)
	for range 3 {
		if _, err := o.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if down.Writes() != 1 || up.Writes() != 1 {
		t.Fatalf("writes after three flushes: corp %d, partner %d", up.Writes(), down.Writes())
	}
	ls, err := d.reg.IDPLinks(ctx, client.LinkQuery{KeyID: kd.ID})
	if err != nil || len(ls) != 2 {
		t.Fatalf("links: %+v, %v", ls, err)
	}
	if p, _ := d.box.Intents(ctx, idp.IntentPending, idp.IntentWritten); len(p) != 0 {
		t.Fatalf("left in the outbox: %+v", p)
	}
}

// TestReplayFindsLandedWrite: a write the provider accepted while the
// registry could not record its link (the registry stopped) is finished
// by the flush without a second write: the method id kept with the intent
// is recorded. And an intent whose provider write landed but whose answer
// was lost is matched by its nonce when replayed.
func TestReplayFindsLandedWrite(t *testing.T) {
	d := newDesk(t)
	s := idptest.Start()
	defer s.Close()
	kd, u, cred := d.enrol(t, "bob", "31000002")
	// A ledger that fails as an unreachable registry does.
	o := idp.NewOrchestrator([]idp.Connector{connect(t, s, "corp")}, unreachable{d.reg}, d.box)
	out, err := o.Register(ctx, u, idp.KeyRef{ID: kd.ID, Serial: 31000002}, cred, nil)
	if err != nil || len(out) != 1 || out[0].State != idp.IntentWritten || !out[0].Queued || s.Writes() != 1 {
		t.Fatalf("register with the registry away: %+v, %v, writes %d", out, err, s.Writes())
	}
	o = idp.NewOrchestrator([]idp.Connector{connect(t, s, "corp")}, d.reg, d.box)
	if out, err := o.Flush(ctx); err != nil || len(out) != 1 || out[0].State != idp.IntentDone {
		t.Fatalf("flush: %+v, %v", out, err)
	}
	if s.Writes() != 1 {
		t.Fatalf("writes: %d", s.Writes())
	}
	if ls, _ := d.reg.IDPLinks(ctx, client.LinkQuery{KeyID: kd.ID}); len(ls) != 1 || ls[0].MethodID != s.Methods("bob")[0].ID {
		t.Fatalf("links: %+v", ls)
	}
}

type unreachable struct{ idp.Ledger }

func (unreachable) RecordIDPLink(context.Context, client.IDPLinkIn, string) (registry.IDPLink, error) {
	return registry.IDPLink{}, client.ErrUnreachable
}

// TestUnregisterAndDrift: drift both ways through a real registry —
// a method gone at the provider while the key is active (missing), a
// method registered outside the desk (unknown), the key lost while the
// provider holds its method (held-invalid) — and deleting the lost key's
// methods (queued while the provider is down) clears it.
func TestUnregisterAndDrift(t *testing.T) {
	d := newDesk(t)
	s := idptest.Start()
	defer s.Close()
	o := idp.NewOrchestrator([]idp.Connector{connect(t, s, "corp")}, d.reg, d.box)
	k1, u, c1 := d.enrol(t, "carol", "31000003")
	if _, err := o.Register(ctx, u, idp.KeyRef{ID: k1.ID, Serial: 31000003}, c1, nil); err != nil {
		t.Fatal(err)
	}
	drift := func() []registry.IDPDrift {
		t.Helper()
		if err := o.Observe(ctx, k1.OwnerID, u); err != nil {
			t.Fatal(err)
		}
		d, err := d.reg.IDPDrift(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if dr := drift(); len(dr) != 0 {
		t.Fatalf("drift in agreement: %+v", dr)
	}
	// (b) removed at the provider behind the desk's back.
	m := s.Methods("carol")[0]
	s.Remove("carol", m.ID)
	if dr := drift(); len(dr) != 1 || dr[0].Kind != registry.DriftMissing || dr[0].Serial != "31000003" {
		t.Fatalf("missing: %+v", dr)
	}
	s.Put("carol", m)
	// (a) a method the desk never made.
	s.Put("carol", idptest.Method{ID: "phone", DisplayName: "carol's phone"})
	if dr := drift(); len(dr) != 1 || dr[0].Kind != registry.DriftUnknown || dr[0].MethodID != "phone" {
		t.Fatalf("unknown: %+v", dr)
	}
	s.Remove("carol", "phone")
	// (a) the key lost, its method still at the provider.
	if _, err := d.reg.SetKeyStatus(ctx, k1.ID, k1.Version, registry.KeyLost, "lost on a train"); err != nil {
		t.Fatal(err)
	}
	if dr := drift(); len(dr) != 1 || dr[0].Kind != registry.DriftHeldInvalid || dr[0].KeyStatus != registry.KeyLost {
		t.Fatalf("held-invalid: %+v", dr)
	}
	s.SetDown(true)
	out, err := o.Unregister(ctx, k1.ID, u)
	if err != nil || len(out) != 1 || !out[0].Queued {
		t.Fatalf("unregister while down: %+v, %v", out, err)
	}
	// Asked again while the delete is queued: nothing more is queued.
	if out, err := o.Unregister(ctx, k1.ID, u); err != nil || len(out) != 0 {
		t.Fatalf("unregister again: %+v, %v", out, err)
	}
	s.SetDown(false)
	if out, err := o.Flush(ctx); err != nil || len(out) != 1 || out[0].State != idp.IntentDone {
		t.Fatalf("flush: %+v, %v", out, err)
	}
	if s.Deletes() != 1 || len(s.Methods("carol")) != 0 {
		t.Fatalf("deletes %d, methods %+v", s.Deletes(), s.Methods("carol"))
	}
	if dr := drift(); len(dr) != 0 {
		t.Fatalf("drift after the delete: %+v", dr)
	}
	if ls, _ := d.reg.IDPLinks(ctx, client.LinkQuery{KeyID: k1.ID}); len(ls) != 1 || ls[0].State != registry.LinkDeleted {
		t.Fatalf("links: %+v", ls)
	}
}

// TestReconcileGoesOnPastAMissingUser: a user the provider no longer
// knows is named in Reconcile's error, and the drift check of the users
// after them still runs.
func TestReconcileGoesOnPastAMissingUser(t *testing.T) {
	d := newDesk(t)
	s := idptest.Start()
	defer s.Close()
	o := idp.NewOrchestrator([]idp.Connector{connect(t, s, "corp")}, d.reg, d.box)
	for _, u := range []struct {
		ext    string
		serial uint32
	}{{"ann", 31000011}, {"bea", 31000012}} {
		k, iu, c := d.enrol(t, u.ext, fmt.Sprint(u.serial))
		if _, err := o.Register(ctx, iu, idp.KeyRef{ID: k.ID, Serial: u.serial}, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.SetGone("ann")
	// bea's method removed behind the desk's back: drift only a completed
	// check of bea shows.
	s.Remove("bea", s.Methods("bea")[0].ID)
	_, err := o.Reconcile(ctx, d.reg)
	if err == nil || !strings.Contains(err.Error(), "user ann") {
		t.Fatalf("reconcile with ann gone at the provider: %v, want an error naming ann", err)
	}
	dr, err := d.reg.IDPDrift(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dr) != 1 || dr[0].Kind != registry.DriftMissing || dr[0].Serial != "31000012" {
		t.Fatalf("drift after reconcile: %+v, want bea's key missing at the provider", dr)
	}
}

// TestOptionsProvider: a provider that hands out creation options gets a
// new credential made with exactly those options; without the key at
// hand the intent waits for it (needs-key) and nothing is written.
func TestOptionsProvider(t *testing.T) {
	d := newDesk(t)
	s := idptest.Start()
	defer s.Close()
	opts := &idp.CreationOptions{RPID: "login.example", Challenge: []byte("challenge"), UserID: []byte("uid"), ResidentKey: "required", UserVerification: "required", ExcludeCredentials: [][]byte{[]byte("old")}}
	s.SetOptions(opts)
	o := idp.NewOrchestrator([]idp.Connector{connect(t, s, "corp")}, d.reg, d.box)
	kd, u, desk := d.enrol(t, "dave", "31000004")
	out, err := o.Register(ctx, u, idp.KeyRef{ID: kd.ID, Serial: 31000004}, desk, nil)
	if err != nil || out[0].State != idp.IntentNeedsKey || s.Writes() != 0 {
		t.Fatalf("without the key: %+v, %v", out, err)
	}
	var got *idp.CreationOptions
	out, err = o.Register(ctx, u, idp.KeyRef{ID: kd.ID, Serial: 31000004}, desk, func(_ context.Context, o *idp.CreationOptions) (idp.Credential, error) {
		got = o
		cd, _ := json.Marshal(map[string]any{"type": "webauthn.create", "challenge": base64.RawURLEncoding.EncodeToString(o.Challenge), "origin": "https://" + o.RPID})
		return idp.Credential{ID: []byte("made-for-login.example"), PublicKey: desk.PublicKey, ClientDataJSON: cd}, nil
	})
	if err != nil || out[0].State != idp.IntentDone {
		t.Fatalf("with the key: %+v, %v", out, err)
	}
	if left, _ := d.box.Intents(ctx, idp.IntentNeedsKey); len(left) != 0 {
		t.Fatalf("the needs-key intent was not settled: %+v", left)
	}
	if got == nil || got.RPID != "login.example" || string(got.Challenge) != "challenge" || got.ResidentKey != "required" || len(got.ExcludeCredentials) != 1 {
		t.Fatalf("options handed to the maker: %+v", got)
	}
	if ms := s.Methods("dave"); len(ms) != 1 || string(ms[0].CredentialID) != "made-for-login.example" {
		t.Fatalf("methods: %+v", ms)
	}
	// Registered already: asked again, nothing more is made or written.
	if out, err := o.Register(ctx, u, idp.KeyRef{ID: kd.ID, Serial: 31000004}, desk, nil); err != nil || out[0].State != idp.IntentDone || s.Writes() != 1 {
		t.Fatalf("again: %+v, %v, writes %d", out, err, s.Writes())
	}
	// A maker that fails stops with its error.
	kd, u, desk = d.enrol(t, "erin", "31000005")
	boom := errors.New("key removed")
	if _, err := o.Register(ctx, u, idp.KeyRef{ID: kd.ID, Serial: 31000005}, desk, func(context.Context, *idp.CreationOptions) (idp.Credential, error) {
		return idp.Credential{}, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("maker error: %v", err)
	}
}

// TestRefusedReplayMadeAfresh: a credential made with a provider's
// options and queued while the provider was down is refused on replay once
// the provider's challenge has changed; registering again with the key at
// hand makes a new credential with the new options, and settles the old
// intent.
func TestRefusedReplayMadeAfresh(t *testing.T) {
	d := newDesk(t)
	s := idptest.Start()
	defer s.Close()
	opts := func(ch string) *idp.CreationOptions {
		return &idp.CreationOptions{RPID: "login.example", Challenge: []byte(ch), UserID: []byte("uid"), ResidentKey: "required"}
	}
	mk := func(_ context.Context, o *idp.CreationOptions) (idp.Credential, error) {
		cd, _ := json.Marshal(map[string]any{"type": "webauthn.create", "challenge": base64.RawURLEncoding.EncodeToString(o.Challenge), "origin": "https://" + o.RPID})
		return idp.Credential{ID: append([]byte("cred-"), o.Challenge...), ClientDataJSON: cd}, nil
	}
	s.SetOptions(opts("first"))
	kd, u, desk := d.enrol(t, "fay", "31000006")
	key := idp.KeyRef{ID: kd.ID, Serial: 31000006}
	// Down between the options and the write: the write is queued.
	o := idp.NewOrchestrator([]idp.Connector{downAtRegister{connect(t, s, "login"), s}}, d.reg, d.box)
	out, err := o.Register(ctx, u, key, desk, mk)
	if err != nil || !out[0].Queued || s.Writes() != 0 {
		t.Fatalf("queued: %+v, %v", out, err)
	}
	s.SetDown(false)
	s.SetOptions(opts("second"))
	o = idp.NewOrchestrator([]idp.Connector{connect(t, s, "login")}, d.reg, d.box)
	// Without the key the replay is refused and stays so.
	if out, err := o.Register(ctx, u, key, desk, nil); err != nil || out[0].State != idp.IntentRefused || s.Writes() != 0 {
		t.Fatalf("replay without the key: %+v, %v", out, err)
	}
	out, err = o.Register(ctx, u, key, desk, mk)
	if err != nil || len(out) != 1 || out[0].State != idp.IntentDone || s.Writes() != 1 {
		t.Fatalf("with the key: %+v, %v, writes %d", out, err, s.Writes())
	}
	if ms := s.Methods("fay"); len(ms) != 1 || string(ms[0].CredentialID) != "cred-second" {
		t.Fatalf("methods: %+v", ms)
	}
	if left, _ := d.box.Intents(ctx, idp.IntentRefused, idp.IntentPending, idp.IntentNeedsKey); len(left) != 0 {
		t.Fatalf("left unsettled: %+v", left)
	}
}

// downAtRegister is a connector whose provider goes down just before the
// write: the options were handed out, the write cannot land.
type downAtRegister struct {
	idp.Connector
	s *idptest.Server
}

func (c downAtRegister) Register(ctx context.Context, u idp.User, o *idp.CreationOptions, cr idp.Credential) (string, error) {
	c.s.SetDown(true)
	return c.Connector.Register(ctx, u, o, cr)
}
