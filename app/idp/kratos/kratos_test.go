package kratos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/idp/kratos"
	"github.com/keydesk/keydesk/app/idp/kratos/kratostest"
	"github.com/keydesk/keydesk/app/recover"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/virtual/fidotest"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/regtest"
)

var (
	env *enroltest.Env
	srv *kratostest.Server
)

// TestMain builds the registry and Kratos (once per machine: the binary is
// cached by packaging/kratos.sh), starts PostgreSQL, Kratos on it, two
// practice keys and the registry.
func TestMain(m *testing.M) {
	var bin string
	regtest.RunTests(runner{m: m, bin: &bin}, &bin, pgtest.StopShared)
}

type runner struct {
	m   *testing.M
	bin *string
}

func (r runner) Run() int {
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		return 1
	}
	kbin, err := kratostest.Binary()
	if err != nil {
		return fail("building ory kratos", err)
	}
	pg, err := pgtest.Shared()
	if err != nil {
		return fail("starting postgresql", err)
	}
	dsn, err := pg.NewDatabase()
	if err != nil {
		return fail("creating kratos's database", err)
	}
	if srv, err = kratostest.Start(kbin, dsn, kratostest.Config{RPID: enroltest.RPID}); err != nil {
		return fail("starting ory kratos", err)
	}
	defer srv.Stop()
	if env, err = enroltest.Start(os.TempDir(), *r.bin, 2); err != nil {
		return fail("starting practice keys and registry", err)
	}
	defer env.Stop()
	code := r.m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "kratos log:\n%s\n", lastLines(srv.Log(), 40))
	}
	return code
}

func lastLines(s string, n int) string {
	lines := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			lines++
			if lines > n {
				return s[i+1:]
			}
		}
	}
	return s
}

func connector(t *testing.T, rpID string) idp.Connector {
	t.Helper()
	settings, _ := json.Marshal(kratos.Settings{AdminURL: srv.AdminURL, PublicURL: srv.PublicURL, RPID: rpID})
	c, err := idp.Open(idp.Config{Kind: "kratos", Name: "kratos", Settings: settings}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fidoPIN is the FIDO2 PIN the desk's user chose for key serial.
func fidoPIN(serial uint32) string { return fmt.Sprintf("fido-%d", serial) }

func pinCB(serial uint32) device.Callbacks {
	return device.Callbacks{PIN: func(context.Context, string) (string, error) { return fidoPIN(serial), nil }}
}

// signIn signs in through Kratos's login flow with key k's discoverable
// credentials for the relying party (no allow list, as a passkey sign-in).
// The key must answer with credential want (the newest of the rp's
// credentials on it, CTAP 2.1 §6.2.2), so a refusal is Kratos's.
func signIn(ctx context.Context, k device.Key, want []byte) (kratostest.Session, error) {
	return kratostest.SignIn(ctx, srv.PublicURL, func(rpID string, challenge []byte) (kratostest.Assertion, error) {
		a, err := fidokey.Open(k.FIDOPath).GetAssertion(ctx, fidokey.AssertOptions{RPID: rpID, Challenge: challenge, UserVerification: true}, pinCB(k.Serial))
		if err != nil {
			return kratostest.Assertion{}, err
		}
		if !bytes.Equal(a.CredentialID, want) {
			return kratostest.Assertion{}, fmt.Errorf("key %d answered with credential %x, not kratos's %x", k.Serial, a.CredentialID, want)
		}
		return kratostest.Assertion{CredentialID: a.CredentialID, ClientDataJSON: a.ClientDataJSON,
			AuthenticatorData: a.AuthenticatorData, Signature: a.Signature, UserHandle: a.UserHandle}, nil
	})
}

// desk is the desk's side of the end-to-end test: the enrolment use case
// with Kratos configured as a provider in the settings, the provider
// outbox in a file and the real registry as the ledger, opened the way the
// desk opens them (regconn.Providers: idp.OpenDesk over the settings'
// provider list).
type desk struct {
	en    *enrol.Enroller
	idp   *idp.Orchestrator
	front *kratostest.Front // counts the passkey removals that reach Kratos
}

// openDesk opens the desk. Kratos's public API is reached through a
// front that counts the passkey removals the desk submits to it.
func openDesk(t *testing.T) *desk {
	t.Helper()
	front, err := kratostest.NewFront(srv.PublicURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(front.Close)
	d := &desk{front: front}
	ks, _ := json.Marshal(kratos.Settings{AdminURL: srv.AdminURL, PublicURL: front.URL, RPID: enroltest.RPID})
	set := settings.Default()
	set.RPID = enroltest.RPID
	set.Practice = true
	set.HelpdeskRecipients = []string{env.Recipient}
	set.Providers = []idp.Config{{Kind: "kratos", Name: "kratos", Settings: ks}}
	dir := t.TempDir()
	if d.idp, err = idp.OpenDesk(set.Providers, nil, env.Admin, filepath.Join(dir, idp.OutboxFile)); err != nil {
		t.Fatal(err)
	}
	// The enroller owns the orchestrator (and its outbox) from here.
	if d.en, err = enrol.New(enrol.Config{Settings: set, Keys: env.Keys, Registry: env.Admin, JournalPath: filepath.Join(dir, "journal.db"), IDP: d.idp}); err != nil {
		d.idp.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { d.en.Close() })
	return d
}

var enrolUI = enrol.UI{
	NewPIN: func(_ context.Context, r enrol.PINRequest) (string, error) {
		if r.Kind == enrol.FIDO2PIN {
			return fidoPIN(r.Serial), nil
		}
		return fmt.Sprintf("p%07d", r.Serial%10000000), nil
	},
	Confirm: func(context.Context, string) (bool, error) { return true, nil },
}

// enrolled is one key enrolled at the desk and the registry's link to its
// Kratos passkey.
type enrolled struct {
	key  device.Key
	id   string // the registry's key id
	link registry.IDPLink
}

// enrolPair enrols the fleet's keys first and first+1 as user ext's
// primary and backup through the enrolment use case, which registers each
// with Kratos while the key and its PIN are at hand; the registry then
// holds one active Kratos link per key, under the credential the key made.
func (d *desk) enrolPair(ctx context.Context, t *testing.T, ext, name, email string, first int) (registry.User, []enrolled) {
	t.Helper()
	var out []enrolled
	for i, role := range []registry.KeyRole{registry.RolePrimary, registry.RoleBackup} {
		serial := env.Serial(first + i)
		res, err := d.en.EnrolKey(ctx, enrol.Request{User: client.EnrolUser{ExternalID: ext, DisplayName: name, Email: email},
			CreateUser: i == 0, Serial: serial, Role: role}, enrolUI)
		if err != nil {
			t.Fatalf("enrolling %s's %s key %d: %v", ext, role, serial, err)
		}
		if res.Status != registry.KeyActive || len(res.Providers) != 1 || res.Providers[0].Provider != "kratos" ||
			res.Providers[0].State != idp.IntentDone || res.Providers[0].MethodID == "" || res.Providers[0].LinkID == "" {
			t.Fatalf("enrolling key %d: %s, providers %+v; want active and done at kratos", serial, res.Status, res.Providers)
		}
		k, err := env.Key(ctx, serial)
		if err != nil {
			t.Fatal(err)
		}
		links, err := env.Admin.IDPLinks(ctx, client.LinkQuery{KeyID: res.KeyID})
		if err != nil {
			t.Fatal(err)
		}
		if len(links) != 1 || links[0].Provider != "kratos" || links[0].State != registry.LinkActive ||
			links[0].MethodID != res.Providers[0].MethodID || links[0].Serial != strconv.FormatUint(uint64(serial), 10) || len(links[0].CredentialID) == 0 {
			t.Fatalf("the registry's links of key %d: %+v; want one active kratos link for method %s", serial, links, res.Providers[0].MethodID)
		}
		out = append(out, enrolled{key: k, id: res.KeyID, link: links[0]})
	}
	u, err := env.Admin.User(ctx, out[0].link.UserID)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := connector(t, enroltest.RPID).List(ctx, idp.UserOf(u))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || !has(ms, out[0].link.MethodID) || !has(ms, out[1].link.MethodID) {
		t.Fatalf("kratos lists %v for %s, want the two passkeys the desk registered (%s, %s)", ids(ms), ext, out[0].link.MethodID, out[1].link.MethodID)
	}
	return u, out
}

// markLost marks key e lost at the desk as `keydesk recover lost` and the
// Helpdesk screen do: the registry's transition (recover.MarkLost, its
// last-key guard first), then the key's methods deleted at every provider
// that holds them (Orchestrator.Unregister).
func (d *desk) markLost(ctx context.Context, t *testing.T, e enrolled) []idp.Outcome {
	t.Helper()
	res, err := recover.MarkLost(ctx, env.Admin, strconv.FormatUint(uint64(e.key.Serial), 10), recover.LostOptions{})
	if err != nil {
		t.Fatalf("marking key %d lost: %v", e.key.Serial, err)
	}
	out, err := d.idp.Unregister(ctx, res.Key.ID, idp.UserOf(res.User))
	if err != nil {
		t.Fatalf("deleting lost key %d at the providers: %v", e.key.Serial, err)
	}
	return out
}

// sync is `keydesk idp sync`: replay the provider outbox, delete what
// keys out of service still hold, report every linked user's methods; it
// returns the registry's drift after it.
func (d *desk) sync(ctx context.Context, t *testing.T) ([]idp.Outcome, []registry.IDPDrift) {
	t.Helper()
	out, err := d.idp.Reconcile(ctx, env.Admin)
	if err != nil {
		t.Fatalf("idp sync: %v", err)
	}
	return out, drift(ctx, t)
}

func drift(ctx context.Context, t *testing.T) []registry.IDPDrift {
	t.Helper()
	dr, err := env.Admin.IDPDrift(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return dr
}

// signsIn signs in with e's key through Kratos's login flow; the key must
// answer with the credential the registry's link names.
func signsIn(ctx context.Context, e enrolled) (kratostest.Session, error) {
	return signIn(ctx, e.key, e.link.CredentialID)
}

// TestEnrolledKeySignsInUntilLost: keys enrolled at the desk are
// registered in Kratos during the enrolment, through the desk's
// orchestration, and sign in through Kratos's own login flow with the
// credential the registry's link names; a key marked lost at the desk
// stops signing in while the user's other key still does. With Kratos
// down while the key is marked lost, the delete waits in the provider
// outbox, the registry shows the drift, and `idp sync` after Kratos is
// back deletes it once.
func TestEnrolledKeySignsInUntilLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	d := openDesk(t)

	// Ada: her primary is lost while Kratos is up.
	ada, keys := d.enrolPair(ctx, t, "ada", "Ada Lovelace", "ada@keydesk.example", 0)
	var identityID string
	for _, k := range keys {
		s, err := signsIn(ctx, k)
		if err != nil {
			t.Fatalf("key %d, enrolled at the desk, signing in through kratos: %v", k.key.Serial, err)
		}
		if identityID == "" {
			identityID = s.IdentityID
		}
		if s.IdentityID != identityID || !strings.HasPrefix(k.link.MethodID, identityID) {
			t.Fatalf("key %d signed in as identity %s (its method %s), the other key as %s", k.key.Serial, s.IdentityID, k.link.MethodID, identityID)
		}
	}
	if _, dr := d.sync(ctx, t); len(dr) != 0 {
		t.Fatalf("drift after enrolling ada: %+v", dr)
	}
	// Ada's email changed in Kratos meanwhile: the delete still reaches
	// her identity, whose id the method id carries.
	setEmail(ctx, t, identityID, "ada.lovelace@keydesk.example")
	out := d.markLost(ctx, t, keys[0])
	if len(out) != 1 || out[0].Op != idp.OpDelete || out[0].State != idp.IntentDone || out[0].Queued {
		t.Fatalf("marking key %d lost: provider outcomes %+v, want its delete at kratos done", keys[0].key.Serial, out)
	}
	if _, err := signsIn(ctx, keys[0]); err == nil {
		t.Fatalf("key %d, marked lost at the desk, still signs in through kratos", keys[0].key.Serial)
	} else {
		t.Logf("lost key refused as expected: %v", err)
	}
	if _, err := signsIn(ctx, keys[1]); err != nil {
		t.Fatalf("backup key %d no longer signs in after the primary was marked lost: %v", keys[1].key.Serial, err)
	}
	if n := d.front.Removals(); n != 1 {
		t.Fatalf("kratos received %d passkey removals, want 1", n)
	}
	links, err := env.Admin.IDPLinks(ctx, client.LinkQuery{UserID: ada.ID})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if want := map[bool]registry.IDPLinkState{true: registry.LinkDeleted, false: registry.LinkActive}[l.KeyID == keys[0].id]; l.State != want {
			t.Fatalf("link of key %s is %s, want %s", l.Serial, l.State, want)
		}
	}
	// The desk lists Kratos's identities by the registry's email: with
	// hers restored, idp sync finds nothing out of step.
	setEmail(ctx, t, identityID, "ada@keydesk.example")
	if _, dr := d.sync(ctx, t); len(dr) != 0 {
		t.Fatalf("drift after ada's primary was marked lost: %+v", dr)
	}
	c := connector(t, enroltest.RPID)
	// Deleting again is not an error: the method is gone.
	if err := c.Delete(ctx, idp.UserOf(ada), keys[0].link.MethodID); err != nil {
		t.Fatalf("deleting a deleted passkey: %v", err)
	}
	// Kratos keeps a user's last sign-in credential; the connector says so.
	err = c.Delete(ctx, idp.UserOf(ada), keys[1].link.MethodID)
	var re *idp.RefusedError
	if !errors.As(err, &re) || re.Code != "last_credential" || re.Hint == "" {
		t.Fatalf("deleting the last passkey: %v, want a refusal with code last_credential and a hint", err)
	}
	// Every session the connector opened to register and delete was
	// revoked; only the three sign-ins remain.
	var sessions []struct {
		ID     string `json:"id"`
		Active bool   `json:"active"`
	}
	if err := srv.Admin(ctx, "GET", "/admin/identities/"+identityID+"/sessions?active=true", nil, &sessions); err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 3 {
		t.Fatalf("identity has %d active sessions, want the 3 sign-ins (the connector's own sessions revoked)", len(sessions))
	}

	// Grace: her primary is marked lost while Kratos is down. Ada's keys
	// leave the desk; two factory-fresh keys take their readers.
	for _, k := range keys {
		if _, err := env.Fleet.Replace(k.key.Serial); err != nil {
			t.Fatal(err)
		}
	}
	_, keys = d.enrolPair(ctx, t, "grace", "Grace Hopper", "grace@keydesk.example", 0)
	for _, k := range keys {
		if _, err := signsIn(ctx, k); err != nil {
			t.Fatalf("key %d, enrolled at the desk, signing in through kratos: %v", k.key.Serial, err)
		}
	}
	if _, dr := d.sync(ctx, t); len(dr) != 0 {
		t.Fatalf("drift after enrolling grace: %+v", dr)
	}
	srv.Halt()
	up := false
	// The package's other tests need Kratos, whatever becomes of this one.
	t.Cleanup(func() {
		if !up {
			srv.Resume()
		}
	})
	lost := keys[0]
	out = d.markLost(ctx, t, lost)
	if len(out) != 1 || out[0].Op != idp.OpDelete || out[0].State != idp.IntentPending || !out[0].Queued {
		t.Fatalf("marking key %d lost with kratos down: provider outcomes %+v, want its delete queued", lost.key.Serial, out)
	}
	serial := strconv.FormatUint(uint64(lost.key.Serial), 10)
	dr := drift(ctx, t)
	if len(dr) != 1 || dr[0].Kind != "held-invalid" || dr[0].Provider != "kratos" || dr[0].Serial != serial || dr[0].MethodID != lost.link.MethodID {
		t.Fatalf("drift with the lost key's delete queued: %+v, want kratos holding key %s's method", dr, serial)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	up = true
	// Until the queued delete is replayed, Kratos still lets the key in:
	// the drift is real.
	if _, err := signsIn(ctx, lost); err != nil {
		t.Fatalf("key %d, its delete still queued, signing in: %v", lost.key.Serial, err)
	}
	out, dr = d.sync(ctx, t)
	if len(out) != 1 || out[0].Op != idp.OpDelete || out[0].State != idp.IntentDone || out[0].Serial != lost.key.Serial {
		t.Fatalf("idp sync after kratos came back: outcomes %+v, want the queued delete of key %s done", out, serial)
	}
	if len(dr) != 0 {
		t.Fatalf("drift after the queued delete was replayed: %+v", dr)
	}
	if _, err := signsIn(ctx, lost); err == nil {
		t.Fatalf("key %d, marked lost at the desk and its queued delete replayed, still signs in through kratos", lost.key.Serial)
	}
	if _, err := signsIn(ctx, keys[1]); err != nil {
		t.Fatalf("backup key %d no longer signs in: %v", keys[1].key.Serial, err)
	}
	// Replayed once: a second sync writes nothing more.
	if out, dr = d.sync(ctx, t); len(out) != 0 || len(dr) != 0 {
		t.Fatalf("a second idp sync: outcomes %+v, drift %+v; want none", out, dr)
	}
	if n := d.front.Removals(); n != 2 {
		t.Fatalf("kratos received %d passkey removals, want 2 (ada's and grace's lost keys, once each)", n)
	}
	dels := 0
	ins, err := d.idp.Outbox().Intents(ctx, idp.IntentDone)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		if in.Op == idp.OpDelete {
			dels++
		}
	}
	if dels != 2 {
		t.Fatalf("the provider outbox holds %d done deletes, want 2", dels)
	}
}

// setEmail changes an identity's email in Kratos, behind the desk's back.
func setEmail(ctx context.Context, t *testing.T, identityID, email string) {
	t.Helper()
	if err := srv.Admin(ctx, "PUT", "/admin/identities/"+identityID, map[string]any{"schema_id": "default", "state": "active",
		"traits": map[string]any{"email": email, "name": "Ada Lovelace"}}, nil); err != nil {
		t.Fatal(err)
	}
}

func has(ms []idp.Method, id string) bool {
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
}

func ids(ms []idp.Method) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// TestRPIDMismatchRefused: a Kratos whose passkey relying party is not the
// organisation's is refused before anything is made on a key.
func TestRPIDMismatchRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := connector(t, "other.example")
	_, err := c.Options(ctx, idp.User{ExternalID: "bob", Email: "bob@keydesk.example"})
	var re *idp.RefusedError
	if !errors.As(err, &re) || re.Code != "rp_id_mismatch" || re.Hint == "" {
		t.Fatalf("options with a different rp id: %v, want a refusal with code rp_id_mismatch", err)
	}
}

// TestUnreachableIsTemporary: a Kratos that is not listening is a
// temporary error (the write is queued), and an unknown user is
// ErrUserNotFound.
func TestUnreachableIsTemporary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	settings, _ := json.Marshal(kratos.Settings{AdminURL: "http://127.0.0.1:1", PublicURL: "http://127.0.0.1:1", RPID: enroltest.RPID})
	c, err := idp.Open(idp.Config{Kind: "kratos", Name: "down", Settings: settings}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Options(ctx, idp.User{ExternalID: "bob", Email: "bob@keydesk.example"})
	var te *idp.TemporaryError
	if !errors.As(err, &te) {
		t.Fatalf("options from a kratos that is down: %v, want a temporary error", err)
	}
	_, err = connector(t, enroltest.RPID).List(ctx, idp.User{ExternalID: "nobody", Email: "nobody@keydesk.example"})
	if !errors.Is(err, idp.ErrUserNotFound) {
		t.Fatalf("listing an unknown user: %v, want ErrUserNotFound", err)
	}
}

// TestLostAnswer: when Kratos's answer to the registration is lost, the
// connector finds out from the identity's passkeys whether Kratos stored
// it: a request that never reached Kratos is a temporary error (the
// write is retried), one that did is a registration.
func TestLostAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	target, err := url.Parse(srv.PublicURL)
	if err != nil {
		t.Fatal(err)
	}
	var mode atomic.Value // "", "before" (never forwarded) or "after" (forwarded, answer dropped)
	mode.Store("")
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(res *http.Response) error {
		if res.Request.Method == http.MethodPost && res.Request.URL.Path == "/self-service/settings" && mode.Load() == "after" {
			return errors.New("answer lost on the way back")
		}
		return nil
	}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/self-service/settings" && mode.Load() == "before" {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	settings, _ := json.Marshal(kratos.Settings{AdminURL: srv.AdminURL, PublicURL: front.URL, RPID: enroltest.RPID})
	c, err := idp.Open(idp.Config{Kind: "kratos", Name: "kratos", Settings: settings}, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := fidotest.Start(t, 31000077)
	u := idp.User{ExternalID: "bob", Email: "bob@keydesk.example", DisplayName: "Bob"}
	make := func() (*idp.CreationOptions, idp.Credential) {
		opts, err := c.Options(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		reg, err := fidokey.Open(key.Path).MakeCredential(ctx, fidokey.MakeOptions{RPID: opts.RPID, UserID: opts.UserID,
			UserName: opts.UserName, Challenge: opts.Challenge, Discoverable: true, CredProtect: 2}, device.Callbacks{})
		if err != nil {
			t.Fatal(err)
		}
		return opts, idp.Credential{ID: reg.CredentialID, ClientDataJSON: reg.ClientDataJSON, AttestationObject: reg.AttestationObject}
	}

	mode.Store("before")
	opts, cred := make()
	_, err = c.Register(ctx, u, opts, cred)
	var te *idp.TemporaryError
	if !errors.As(err, &te) {
		t.Fatalf("registering through a gateway that never reached kratos: %v, want a temporary error", err)
	}
	if ms, err := c.List(ctx, u); err != nil || len(ms) != 0 {
		t.Fatalf("after the unsent registration kratos lists %v (%v), want none", ids(ms), err)
	}

	mode.Store("after")
	opts, cred = make()
	id, err := c.Register(ctx, u, opts, cred)
	if err != nil {
		t.Fatalf("registering when only kratos's answer was lost: %v", err)
	}
	if ms, err := c.List(ctx, u); err != nil || len(ms) != 1 || ms[0].ID != id {
		t.Fatalf("after the registration whose answer was lost kratos lists %v (%v), want %s", ids(ms), err, id)
	}
}

type secrets map[string]string

func (s secrets) Secret(name string) (string, error) {
	if v, ok := s[name]; ok {
		return v, nil
	}
	return "", errors.New("no such secret")
}

// TestAdminToken: with token_secret set, the admin API is called with the
// secret as a bearer token (for a Kratos behind an authenticating proxy);
// settings without an rp id or with a secret the keyring lacks are
// refused when the connector is opened.
func TestAdminToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	target, err := url.Parse(srv.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	guard := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer admin-token-1" {
			http.Error(w, `{"error":{"code":401,"message":"no valid token"}}`, http.StatusUnauthorized)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer guard.Close()
	open := func(tokenSecret string, sec idp.Secrets) (idp.Connector, error) {
		settings, _ := json.Marshal(kratos.Settings{AdminURL: guard.URL, PublicURL: srv.PublicURL, RPID: enroltest.RPID, TokenSecret: tokenSecret})
		return idp.Open(idp.Config{Kind: "kratos", Name: "kratos", Settings: settings}, sec)
	}
	u := idp.User{ExternalID: "carol", Email: "carol@keydesk.example"}
	with, err := open("kratos-admin", secrets{"kratos-admin": "admin-token-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := with.List(ctx, u); !errors.Is(err, idp.ErrUserNotFound) {
		t.Fatalf("listing through the guard with the token: %v, want kratos's answer (no such user)", err)
	}
	without, err := open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = without.List(ctx, u)
	var re *idp.RefusedError
	if !errors.As(err, &re) || re.Status != http.StatusUnauthorized {
		t.Fatalf("listing through the guard without a token: %v, want a 401 refusal", err)
	}
	if _, err := open("kratos-admin", secrets{}); err == nil {
		t.Fatal("a token secret missing from the keyring was accepted")
	}
	bad, _ := json.Marshal(kratos.Settings{AdminURL: srv.AdminURL, PublicURL: srv.PublicURL})
	if _, err := idp.Open(idp.Config{Kind: "kratos", Name: "kratos", Settings: bad}, nil); err == nil {
		t.Fatal("settings without an rp id were accepted")
	}
}
