package entra

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/virtual/fidotest"
)

type secrets map[string]string

func (s secrets) Secret(name string) (string, error) {
	v, ok := s[name]
	if !ok {
		return "", fmt.Errorf("no secret %q", name)
	}
	return v, nil
}

type prompter struct{ shown []DeviceCode }

func (p *prompter) ShowDeviceCode(_ context.Context, dc DeviceCode) error {
	p.shown = append(p.shown, dc)
	return nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func secretConnector(t *testing.T, g *graphServer) *Connector {
	t.Helper()
	c, err := New("corp-entra", g.settings(AuthSecret), secrets{"entra/corp-entra/client-secret": g.secret}, nil, g.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const pin = "246810"

// virtualKey is a fresh virtual YubiKey reached through libfido2, with a
// FIDO2 PIN set (Entra asks for user verification).
func virtualKey(t *testing.T, serial uint32) (*fidokey.Device, device.Callbacks) {
	t.Helper()
	k := fidotest.Start(t, serial)
	dev := fidokey.Open(k.Path)
	if err := dev.SetPIN(ctxT(t), pin); err != nil {
		t.Fatal(err)
	}
	return dev, device.Callbacks{PIN: func(context.Context, string) (string, error) { return pin, nil }, Touch: func(context.Context) {}}
}

// enrol runs the ceremony the desk runs: options from Entra, the credential
// made on the key with exactly those options, the credential posted.
func enrol(t *testing.T, c *Connector, dev *fidokey.Device, cb device.Callbacks, u idp.User, serial uint32) (string, *fidokey.Registration) {
	t.Helper()
	ctx := ctxT(t)
	o, err := c.Options(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	// As an enrolment holding only an idp.Connector finds the key options.
	ko, ok := idp.Connector(c).(interface {
		KeyOptions(*idp.CreationOptions) (fidokey.MakeOptions, error)
	})
	if !ok {
		t.Fatal("the connector does not offer KeyOptions")
	}
	mo, err := ko.KeyOptions(o)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := dev.MakeCredential(ctx, mo, cb)
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Register(ctx, u, o, Credential(reg, fmt.Sprintf("YubiKey 5C NFC %d", serial), serial))
	if err != nil {
		t.Fatalf("register: %v (hint: %s)", err, Hint(err))
	}
	return id, reg
}

// TestEndToEnd: options → a real virtual key through libfido2 → register
// (verified by the test Graph with go-webauthn against the options it
// handed out, the body checked against Microsoft's contract) → list →
// the exclude list keeps the key from registering twice → delete → gone.
func TestEndToEnd(t *testing.T) {
	g := newGraphServer(t)
	c := secretConnector(t, g)
	dev, cb := virtualKey(t, 31000001)
	ctx := ctxT(t)
	u := idp.User{Email: "ada@contoso.example", ProviderUserID: "ada@contoso.example"}

	id, reg := enrol(t, c, dev, cb, u, 31000001)
	if !reg.UserVerified || reg.CredProtect != 2 {
		t.Errorf("credential made with UV %v, credProtect %d; Entra asked for required UV and credProtect 2", reg.UserVerified, reg.CredProtect)
	}
	if want := `"origin":"https://login.microsoft.com"`; !bytes.Contains(reg.ClientDataJSON, []byte(want)) {
		t.Errorf("clientDataJSON %s", reg.ClientDataJSON)
	}
	ms, err := c.List(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].ID != id || ms[0].DisplayName != "YubiKey 5C NFC 31000001" || ms[0].Created.IsZero() || ms[0].AAGUID == "" {
		t.Fatalf("listing after register: %+v, want method %s", ms, id)
	}

	// Entra now excludes the credential: the same key refuses to make another.
	o, err := c.Options(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.ExcludeCredentials) != 1 || !bytes.Equal(o.ExcludeCredentials[0], reg.CredentialID) {
		t.Fatalf("exclude list %x, want the registered credential %x", o.ExcludeCredentials, reg.CredentialID)
	}
	mo, _ := KeyOptions(o, c.Origin())
	if _, err := dev.MakeCredential(ctx, mo, cb); !errors.Is(err, fidokey.ErrExcluded) {
		t.Fatalf("the same key with its credential excluded: %v, want fidokey.ErrExcluded", err)
	}

	// A second key for the same user: two methods, listed over two pages.
	dev2, cb2 := virtualKey(t, 31000002)
	id2, _ := enrol(t, c, dev2, cb2, u, 31000002)
	if ms, err = c.List(ctx, u); err != nil || len(ms) != 2 || ms[1].ID != id2 {
		t.Fatalf("listing two keys: %+v, %v", ms, err)
	}

	if err := c.Delete(ctx, u, id); err != nil {
		t.Fatal(err)
	}
	if ms, err = c.List(ctx, u); err != nil || len(ms) != 1 || ms[0].ID != id2 {
		t.Fatalf("listing after delete: %+v, %v", ms, err)
	}
	// Already gone (Graph answers 404): success.
	if err := c.Delete(ctx, u, id); err != nil {
		t.Fatalf("deleting a method already gone: %v", err)
	}
	g.mu.Lock()
	tokens, posts := g.tokens, len(g.bodies)
	g.mu.Unlock()
	if tokens != 1 || posts != 2 {
		t.Errorf("%d tokens fetched, %d bodies posted; want 1 and 2", tokens, posts)
	}
}

func TestOptionsMapping(t *testing.T) {
	g := newGraphServer(t)
	c := secretConnector(t, g)
	o, err := c.Options(ctxT(t), idp.User{ProviderUserID: "ada@contoso.example"})
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	iss := g.pending["ada@contoso.example"]
	g.mu.Unlock()
	if o.RPID != testRPID || o.RPName != "Microsoft" || !bytes.Equal(o.Challenge, iss.challenge) || !bytes.Equal(o.UserID, iss.userID) ||
		o.UserName != "ada@contoso.example" || o.UserDisplayName != "Ada Lovelace" || o.ResidentKey != "required" ||
		o.UserVerification != "required" || o.Attestation != "direct" || o.CredProtect != 2 || !o.EnforceCredProtect ||
		o.Timeout != 5*time.Minute || len(o.ExcludeCredentials) != 0 || !json.Valid(o.Raw) {
		t.Fatalf("mapped options %+v", o)
	}
	mo, err := KeyOptions(o, c.Origin())
	if err != nil {
		t.Fatal(err)
	}
	if !mo.Discoverable || !mo.RequireUV || mo.CredProtect != 2 || !mo.EnforceCredProtect || !mo.HMACSecret || mo.Origin != testOrigin || mo.RPID != testRPID {
		t.Fatalf("key options %+v", mo)
	}
	for name, tc := range map[string]struct {
		body string
		ok   bool
		prot int
	}{
		"integer policy":     {`{"publicKey":{"challenge":"AQ","rp":{"id":"r"},"user":{"id":"AQ"},"extensions":{"credentialProtectionPolicy":3}}}`, true, 3},
		"named policy":       {`{"publicKey":{"challenge":"AQ","rp":{"id":"r"},"user":{"id":"AQ"},"extensions":{"credentialProtectionPolicy":"userVerificationRequired"}}}`, true, 3},
		"unknown policy":     {`{"publicKey":{"challenge":"AQ","rp":{"id":"r"},"user":{"id":"AQ"},"extensions":{"credentialProtectionPolicy":"sometimes"}}}`, false, 0},
		"padded challenge":   {`{"publicKey":{"challenge":"AQ==","rp":{"id":"r"},"user":{"id":"AQ"}}}`, true, 0},
		"std base64 exclude": {`{"publicKey":{"challenge":"AQ","rp":{"id":"r"},"user":{"id":"AQ"},"excludeCredentials":[{"id":"g/V3+A=="},{"id":"-_8"}]}}`, true, 0},
		"not base64":         {`{"publicKey":{"challenge":"A$","rp":{"id":"r"},"user":{"id":"AQ"}}}`, false, 0},
		"no ES256":           {`{"publicKey":{"challenge":"AQ","rp":{"id":"r"},"user":{"id":"AQ"},"pubKeyCredParams":[{"type":"public-key","alg":-257}]}}`, false, 0},
		"no relying party":   {`{"publicKey":{"challenge":"AQ","user":{"id":"AQ"}}}`, false, 0},
		"bad exclude id":     {`{"publicKey":{"challenge":"AQ","rp":{"id":"r"},"user":{"id":"AQ"},"excludeCredentials":[{"id":"*"}]}}`, false, 0},
		"defaults (minimal)": {`{"publicKey":{"challenge":"AQ","rp":{"id":"r"},"user":{"id":"AQ"}}}`, true, 0},
	} {
		o, err := parseCreationOptions([]byte(tc.body))
		if (err == nil) != tc.ok || (err == nil && o.CredProtect != tc.prot) {
			t.Errorf("%s: %+v, %v", name, o, err)
		}
		if name == "std base64 exclude" && err == nil && (len(o.ExcludeCredentials) != 2 || !bytes.Equal(o.ExcludeCredentials[0], []byte{0x83, 0xf5, 0x77, 0xf8}) || !bytes.Equal(o.ExcludeCredentials[1], []byte{0xfb, 0xff})) {
			t.Errorf("exclude ids %x", o.ExcludeCredentials)
		}
		if name == "defaults (minimal)" && err == nil && (o.ResidentKey != "discouraged" || o.UserVerification != "preferred" || o.Attestation != "none") {
			t.Errorf("defaults: %+v", o)
		}
	}
}

// TestDocumentedErrors: every documented refusal is a plain hint with
// nothing lost (status, Graph code, request id and body in the chain);
// 429 and 503 are temporary with their Retry-After.
func TestDocumentedErrors(t *testing.T) {
	g := newGraphServer(t)
	c := secretConnector(t, g)
	ctx := ctxT(t)
	for _, tc := range []struct {
		user   string
		status int
		code   string
		hint   string
		retry  time.Duration
		temp   bool
		isErr  error
	}{
		{"nobody@contoso.example", 404, "Request_ResourceNotFound", HintUserNotFound, 0, false, idp.ErrUserNotFound},
		{"policy@contoso.example", 403, "accessDenied", HintSelfService, 0, false, nil},
		{"noperm@contoso.example", 403, "Authorization_RequestDenied", HintForbidden, 0, false, nil},
		{"restricted@contoso.example", 403, "accessDenied", HintPolicy, 0, false, nil},
		{"busy@contoso.example", 429, "TooManyRequests", HintThrottled, 7 * time.Second, true, nil},
		{"down@contoso.example", 503, "serviceNotAvailable", HintThrottled, 3 * time.Second, true, nil},
	} {
		u := idp.User{ProviderUserID: tc.user}
		_, err := c.Options(ctx, u)
		if err == nil {
			t.Fatalf("%s: no error", tc.user)
		}
		var ge *GraphError
		if !errors.As(err, &ge) || ge.Status != tc.status || ge.Code != tc.code || ge.RequestID == "" || len(ge.ClientRequestID) != 36 || !json.Valid(ge.Body) {
			t.Errorf("%s: graph error not kept whole: %#v", tc.user, ge)
		}
		if tc.isErr != nil && !errors.Is(err, tc.isErr) {
			t.Errorf("%s: %v is not %v", tc.user, err, tc.isErr)
		}
		if Hint(err) != tc.hint {
			t.Errorf("%s: hint %q, want %q", tc.user, Hint(err), tc.hint)
		}
		var te *idp.TemporaryError
		var re *idp.RefusedError
		switch {
		case tc.temp && (!errors.As(err, &te) || te.RetryAfter != tc.retry || te.Status != tc.status):
			t.Errorf("%s: %v, want temporary with retry %v", tc.user, err, tc.retry)
		case !tc.temp && (!errors.As(err, &re) || re.Status != tc.status || re.Code != tc.code):
			t.Errorf("%s: %v, want refused %d %s", tc.user, err, tc.status, tc.code)
		}
		// Every call of the connector reports alike.
		if _, lerr := c.List(ctx, u); Hint(lerr) != tc.hint {
			t.Errorf("%s: list hint %q", tc.user, Hint(lerr))
		}
		if _, rerr := c.Register(ctx, u, nil, idp.Credential{ID: []byte{1}, ClientDataJSON: []byte("{}"), AttestationObject: []byte{0xa0}}); Hint(rerr) != tc.hint {
			t.Errorf("%s: register hint %q", tc.user, Hint(rerr))
		}
	}
	// Error text is lowercase-first and carries the detail.
	_, err := c.Options(ctx, idp.User{ProviderUserID: "policy@contoso.example"})
	if s := err.Error(); !strings.Contains(s, "http 403 accessDenied") || !strings.Contains(s, "request-id") {
		t.Errorf("error text %q", s)
	}
}

// TestBadAttestation: a credential Entra cannot verify (a signature
// changed, or no live challenge) is a 400 with the attestation hint.
func TestBadAttestation(t *testing.T) {
	g := newGraphServer(t)
	c := secretConnector(t, g)
	dev, cb := virtualKey(t, 31000003)
	ctx := ctxT(t)
	u := idp.User{ProviderUserID: "ada@contoso.example"}
	o, err := c.Options(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	mo, _ := KeyOptions(o, c.Origin())
	reg, err := dev.MakeCredential(ctx, mo, cb)
	if err != nil {
		t.Fatal(err)
	}
	cred := Credential(reg, "YubiKey", 31000003)
	// The challenge the key signed is another one: Graph's challenge check fails.
	cred.ClientDataJSON = bytes.Replace(reg.ClientDataJSON, []byte(b64.EncodeToString(o.Challenge)), []byte(b64.EncodeToString([]byte("another challenge"))), 1)
	_, err = c.Register(ctx, u, o, cred)
	var re *idp.RefusedError
	if !errors.As(err, &re) || re.Status != 400 || Hint(err) != HintBadAttestation {
		t.Fatalf("tampered client data: %v, want refused 400 with the attestation hint", err)
	}
	// The challenge was used up: posting the genuine credential now fails too.
	if _, err = c.Register(ctx, u, o, Credential(reg, "YubiKey", 31000003)); Hint(err) != HintBadAttestation {
		t.Fatalf("after the challenge was spent: %v", err)
	}
	if ms, _ := c.List(ctx, u); len(ms) != 0 {
		t.Fatalf("methods after refused registrations: %+v", ms)
	}
}

func TestRegisterBodyKeepsContract(t *testing.T) {
	con := loadContract(t)
	opts, err := parseCreationOptions([]byte(`{"publicKey":{"challenge":"AQ","rp":{"id":"r"},"user":{"id":"AQ"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := RegisterBody(opts, idp.Credential{ID: []byte{1, 2, 3}, ClientDataJSON: []byte(`{"type":"webauthn.create"}`), AttestationObject: []byte{0xa0}, DisplayName: "YubiKey 5 NFC 31000001"})
	if err != nil {
		t.Fatal(err)
	}
	if err := con.validateJSON(b, "graph.fido2AuthenticationMethod"); err != nil {
		t.Fatal(err)
	}
	// base64url without padding, as Graph hands binary out.
	if !bytes.Contains(b, []byte(`"id":"AQID"`)) || bytes.Contains(b, []byte("=")) {
		t.Fatalf("body %s", b)
	}
	if _, err := RegisterBody(opts, idp.Credential{ID: []byte{1}}); err == nil {
		t.Fatal("a credential without client data or attestation makes a body")
	}
}

func selfSigned(t *testing.T) (*x509.Certificate, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keydesk entra connector"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pk8, _ := x509.MarshalPKCS8PrivateKey(key)
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) // certificate first, as exported
	p = append(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk8})...)
	return cert, string(p)
}

// TestCertificateSignIn: the client assertion verifies against the
// uploaded certificate; a certificate Entra does not hold is refused with
// the certificate hint.
func TestCertificateSignIn(t *testing.T) {
	g := newGraphServer(t)
	cert, p := selfSigned(t)
	g.cert = cert
	c, err := New("corp", g.settings(AuthCertificate), secrets{"entra/corp/certificate": p}, nil, g.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.List(ctxT(t), idp.User{ProviderUserID: "ada@contoso.example"}); err != nil {
		t.Fatalf("certificate sign-in: %v", err)
	}
	_, other := selfSigned(t)
	c, _ = New("corp", g.settings(AuthCertificate), secrets{"entra/corp/certificate": other}, nil, g.srv.Client())
	_, err = c.List(ctxT(t), idp.User{ProviderUserID: "ada@contoso.example"})
	var tok *TokenError
	if !errors.As(err, &tok) || tok.Status != 401 || !strings.Contains(Hint(err), "certificate") {
		t.Fatalf("unknown certificate: %v (hint %q)", err, Hint(err))
	}
	// A PEM with only the certificate is refused before any request.
	c, _ = New("corp", g.settings(AuthCertificate), secrets{"entra/corp/certificate": p[:strings.Index(p, "-----BEGIN PRIVATE KEY")]}, nil, g.srv.Client())
	if _, err := c.List(ctxT(t), idp.User{ProviderUserID: "ada@contoso.example"}); err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("certificate without key: %v", err)
	}
}

// TestDeviceCodeSignIn: the code goes to the prompter, never to output;
// the token is polled for past authorization_pending and then reused.
func TestDeviceCodeSignIn(t *testing.T) {
	g := newGraphServer(t)
	p := &prompter{}
	c, err := New("corp", g.settings(AuthDeviceCode), nil, p, g.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	u := idp.User{ProviderUserID: "ada@contoso.example"}
	for range 2 {
		if _, err := c.List(ctxT(t), u); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.shown) != 1 || p.shown[0].UserCode != "ABCD-EFGH" || p.shown[0].VerificationURI == "" || p.shown[0].ExpiresIn != 15*time.Minute {
		t.Fatalf("device codes shown: %+v", p.shown)
	}
	g.mu.Lock()
	polls := g.deviceCodes["device-code-1"]
	g.mu.Unlock()
	if polls != 2 {
		t.Errorf("token endpoint polled %d times, want 2 (pending, then granted)", polls)
	}
	// Once expired, the refresh token signs in again without a new code.
	c.tokens.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, err := c.List(ctxT(t), u); err != nil {
		t.Fatal(err)
	}
	if len(p.shown) != 1 {
		t.Errorf("a new device code was shown instead of refreshing")
	}
	if _, err := New("corp", g.settings(AuthDeviceCode), nil, nil, nil); err == nil {
		t.Error("device-code connector without a prompter")
	}
}

// TestTokenCache: one token for many calls; a new one after expiry, and
// after Graph answers 401 (the call is retried once).
func TestTokenCache(t *testing.T) {
	g := newGraphServer(t)
	c := secretConnector(t, g)
	u := idp.User{ProviderUserID: "ada@contoso.example"}
	tokens := func() int { g.mu.Lock(); defer g.mu.Unlock(); return g.tokens }
	for range 3 {
		if _, err := c.List(ctxT(t), u); err != nil {
			t.Fatal(err)
		}
	}
	if n := tokens(); n != 1 {
		t.Fatalf("%d tokens for 3 calls", n)
	}
	c.tokens.now = func() time.Time { return time.Now().Add(3599*time.Second - skew + time.Second) }
	if _, err := c.List(ctxT(t), u); err != nil || tokens() != 2 {
		t.Fatalf("after expiry: %v, %d tokens", err, tokens())
	}
	c.tokens.now = nil
	g.mu.Lock()
	g.revokeNext = true
	g.mu.Unlock()
	if _, err := c.List(ctxT(t), u); err != nil || tokens() != 3 {
		t.Fatalf("after a 401: %v, %d tokens", err, tokens())
	}
}

func TestSignInRefusals(t *testing.T) {
	g := newGraphServer(t)
	u := idp.User{ProviderUserID: "ada@contoso.example"}
	c, _ := New("corp", g.settings(AuthSecret), secrets{"entra/corp/client-secret": "wrong"}, nil, g.srv.Client())
	_, err := c.List(ctxT(t), u)
	var re *idp.RefusedError
	var te *TokenError
	if !errors.As(err, &re) || !errors.As(err, &te) || te.ErrorCodes[0] != 7000215 || !strings.Contains(Hint(err), "client secret") {
		t.Fatalf("wrong secret: %v (hint %q)", err, Hint(err))
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("the secret leaks into the error: %v", err)
	}
	set := g.settings(AuthSecret)
	set.TenantID = "fabrikam.example"
	c, _ = New("corp", set, secrets{"entra/corp/client-secret": g.secret}, nil, g.srv.Client())
	if _, err := c.List(ctxT(t), u); !strings.Contains(Hint(err), "tenant") {
		t.Fatalf("unknown tenant: %v (hint %q)", err, Hint(err))
	}
	c, _ = New("corp", g.settings(AuthSecret), secrets{}, nil, g.srv.Client())
	if _, err := c.List(ctxT(t), u); err == nil || !strings.Contains(err.Error(), "keyring") {
		t.Fatalf("secret missing from the keyring: %v", err)
	}
}

// TestUnreachable: a Graph that cannot be reached is temporary.
func TestUnreachable(t *testing.T) {
	g := newGraphServer(t)
	c := secretConnector(t, g)
	g.srv.Close()
	_, err := c.Options(ctxT(t), idp.User{ProviderUserID: "ada@contoso.example"})
	var te *idp.TemporaryError
	if !errors.As(err, &te) || Hint(err) != HintUnavailable {
		t.Fatalf("unreachable: %v", err)
	}
}

func TestOpenFromConfig(t *testing.T) {
	ok := `{"tenant_id":"contoso.example","client_id":"c","auth":"client-secret","graph_url":"http://127.0.0.1:1/v1.0"}`
	conn, err := idp.Open(idp.Config{Kind: Kind, Name: "corp", Settings: json.RawMessage(ok)}, secrets{})
	if err != nil || conn.Name() != "corp" {
		t.Fatalf("open: %v", err)
	}
	for name, s := range map[string]string{
		"unknown field":     `{"tenant_id":"t","client_id":"c","auth":"client-secret","secret":"x"}`,
		"bad auth":          `{"tenant_id":"t","client_id":"c","auth":"password"}`,
		"no tenant":         `{"client_id":"c","auth":"client-secret"}`,
		"bad url":           `{"tenant_id":"t","client_id":"c","auth":"client-secret","login_url":"ftp://x"}`,
		"tenant with slash": `{"tenant_id":"t/../x","client_id":"c","auth":"client-secret"}`,
	} {
		if _, err := idp.Open(idp.Config{Kind: Kind, Name: "corp", Settings: json.RawMessage(s)}, secrets{}); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	// A keyring that can also show a device code is used as the prompter.
	dc := `{"tenant_id":"t","client_id":"c","auth":"device-code"}`
	if _, err := idp.Open(idp.Config{Kind: Kind, Name: "corp", Settings: json.RawMessage(dc)}, secrets{}); err == nil {
		t.Error("device-code connector opened without a prompter")
	}
	if _, err := idp.Open(idp.Config{Kind: Kind, Name: "corp", Settings: json.RawMessage(dc)}, promptingSecrets{secrets{}, &prompter{}}); err != nil {
		t.Errorf("device-code connector with a prompting keyring: %v", err)
	}
}

type promptingSecrets struct {
	secrets
	*prompter
}
