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
	"sync/atomic"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/idp/kratos"
	"github.com/keydesk/keydesk/app/idp/kratos/kratostest"
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

// register makes the credential Kratos's options ask for on key k and hands
// it to the connector, as the enrolment does for a provider with options.
func register(ctx context.Context, t *testing.T, c idp.Connector, u idp.User, k device.Key) (string, []byte) {
	t.Helper()
	opts, err := c.Options(ctx, u)
	if err != nil {
		t.Fatalf("options: %v", err)
	}
	if opts.RPID != enroltest.RPID || len(opts.Challenge) < 16 || len(opts.UserID) == 0 || opts.ResidentKey != "required" {
		t.Fatalf("kratos's creation options: rp %q, challenge %d bytes, user id %d bytes, resident key %q", opts.RPID, len(opts.Challenge), len(opts.UserID), opts.ResidentKey)
	}
	reg, err := fidokey.Open(k.FIDOPath).MakeCredential(ctx, fidokey.MakeOptions{
		RPID: opts.RPID, RPName: opts.RPName, UserID: opts.UserID, UserName: opts.UserName, DisplayName: opts.UserDisplayName,
		Challenge: opts.Challenge, Discoverable: opts.ResidentKey == "required", CredProtect: 2,
	}, pinCB(k.Serial))
	if err != nil {
		t.Fatalf("making the credential on key %d: %v", k.Serial, err)
	}
	id, err := c.Register(ctx, u, opts, idp.Credential{
		ID: reg.CredentialID, ClientDataJSON: reg.ClientDataJSON, AttestationObject: reg.AttestationObject,
		PublicKey: reg.PublicKey, AAGUID: reg.AAGUID, SignCount: reg.SignCount, Transports: []string{"usb"},
		DisplayName: fmt.Sprintf("YubiKey %d", k.Serial), Serial: k.Serial,
	})
	if err != nil {
		t.Fatalf("registering key %d: %v", k.Serial, err)
	}
	return id, reg.CredentialID
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

// TestEnrolledKeySignsInUntilLost: a user's primary and backup keys are
// enrolled at the desk by the enrolment use case into a real registry,
// registered in Kratos through the connector, and sign in through Kratos's
// own login flow; after the primary is marked lost at the desk and its
// method deleted, that key no longer signs in and the backup still does.
func TestEnrolledKeySignsInUntilLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	user := "ada"
	set := settings.Default()
	set.RPID = enroltest.RPID
	set.Practice = true
	set.HelpdeskRecipients = []string{env.Recipient}
	en, err := enrol.New(enrol.Config{Settings: set, Keys: env.Keys, Registry: env.Admin, JournalPath: filepath.Join(t.TempDir(), "journal.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer en.Close()
	ui := enrol.UI{
		NewPIN: func(_ context.Context, r enrol.PINRequest) (string, error) {
			if r.Kind == enrol.FIDO2PIN {
				return fidoPIN(r.Serial), nil
			}
			return fmt.Sprintf("p%07d", r.Serial%10000000), nil
		},
		Confirm: func(context.Context, string) (bool, error) { return true, nil },
	}
	res, err := en.EnrolUser(ctx, enrol.Request{User: client.EnrolUser{ExternalID: user, DisplayName: "Ada Lovelace", Email: "ada@keydesk.example"}, CreateUser: true}, ui)
	if err != nil {
		t.Fatalf("enrolling ada's keys: %v", err)
	}
	if len(res) == 0 {
		t.Fatal("the enrolment enrolled no key")
	}
	ks, err := env.Admin.UserKeys(ctx, res[0].UserID)
	if err != nil {
		t.Fatal(err)
	}
	var keys []device.Key
	var enrolled []registry.Key
	for _, role := range []registry.KeyRole{registry.RolePrimary, registry.RoleBackup} {
		for _, k := range ks {
			if k.Role != role || k.Status != registry.KeyActive {
				continue
			}
			serial, _ := strconv.ParseUint(k.Serial, 10, 32)
			dk, err := env.Key(ctx, uint32(serial))
			if err != nil {
				t.Fatal(err)
			}
			keys, enrolled = append(keys, dk), append(enrolled, k)
		}
	}
	if len(keys) != 2 {
		t.Fatalf("the enrolment left %d active keys (%+v), want a primary and a backup", len(keys), ks)
	}
	u := idp.User{ExternalID: user, Email: "ada@keydesk.example", DisplayName: "Ada Lovelace"}
	c := connector(t, enroltest.RPID)

	methods := make([]string, 2)
	credIDs := make([][]byte, 2)
	for i, k := range keys {
		methods[i], credIDs[i] = register(ctx, t, c, u, k)
	}
	listed, err := c.List(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 || !has(listed, methods[0]) || !has(listed, methods[1]) {
		t.Fatalf("kratos lists %v, want the two registered passkeys %v", ids(listed), methods)
	}

	var identityID string
	for i, k := range keys {
		s, err := signIn(ctx, k, credIDs[i])
		if err != nil {
			t.Fatalf("key %d (%s) signing in through kratos: %v", k.Serial, enrolled[i].Role, err)
		}
		if identityID == "" {
			identityID = s.IdentityID
		}
		if s.IdentityID != identityID {
			t.Fatalf("key %d signed in as identity %s, key %d as %s", keys[0].Serial, identityID, k.Serial, s.IdentityID)
		}
	}

	// The primary is lost: the registry transition, then the provider.
	lost := enrolled[0]
	if _, err := env.Admin.SetKeyStatus(ctx, lost.ID, lost.Version, registry.KeyLost, ""); err != nil {
		t.Fatalf("marking key %d lost: %v", keys[0].Serial, err)
	}
	// Ada's email changed in Kratos meanwhile: the delete still reaches
	// her identity, whose id the method id carries.
	if err := srv.Admin(ctx, "PUT", "/admin/identities/"+identityID, map[string]any{"schema_id": "default", "state": "active",
		"traits": map[string]any{"email": "ada.lovelace@keydesk.example", "name": "Ada Lovelace"}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, u, methods[0]); err != nil {
		t.Fatalf("deleting the lost key's passkey: %v", err)
	}
	u.Email, u.ProviderUserID = "ada.lovelace@keydesk.example", identityID
	if _, err := signIn(ctx, keys[0], credIDs[0]); err == nil {
		t.Fatalf("key %d, marked lost and deleted, still signs in through kratos", keys[0].Serial)
	} else {
		t.Logf("lost key refused as expected: %v", err)
	}
	if _, err := signIn(ctx, keys[1], credIDs[1]); err != nil {
		t.Fatalf("backup key %d no longer signs in after the primary was deleted: %v", keys[1].Serial, err)
	}
	listed, err = c.List(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].ID != methods[1] {
		t.Fatalf("after the delete kratos lists %v, want only %s", ids(listed), methods[1])
	}
	// Deleting again is not an error: the method is gone.
	if err := c.Delete(ctx, u, methods[0]); err != nil {
		t.Fatalf("deleting a deleted passkey: %v", err)
	}
	// Kratos keeps a user's last sign-in credential; the connector says so.
	err = c.Delete(ctx, u, methods[1])
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
