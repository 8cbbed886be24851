package okta_test

// The fake org below answers as the Okta Management API's OpenAPI
// description (release 2026.06.3, github.com/okta/okta-management-openapi-spec,
// dist/current/management-oneOfInheritance.yaml) documents the operations
// the connector uses, and refuses any request the description does not
// allow:
//
//   - enrollFactor    POST   /api/v1/users/{userId}/factors
//     query tokenLifetimeSeconds: integer, 1-86400 (default 300);
//     body UserFactorWebAuthn {factorType: "webauthn", provider: "FIDO"};
//     200: the factor, status PENDING_ACTIVATION, _embedded.activation
//     (example EnrollFactorWebauthnResponse: attestation, authenticatorSelection,
//     challenge, excludeCredentials, pubKeyCredParams, rp {name}, user
//     {displayName, name, id}); security apiToken or oauth2 okta.users.manage.
//   - activateFactor  POST   /api/v1/users/{userId}/factors/{factorId}/lifecycle/activate
//     body UserFactorActivateRequest, webauthn: {attestation, clientData},
//     "Base64-encoded" strings; 200: the factor, status ACTIVE, profile
//     UserFactorWebAuthnProfile {credentialId, authenticatorName}.
//   - unenrollFactor  DELETE /api/v1/users/{userId}/factors/{factorId}: 204.
//   - listFactors     GET    /api/v1/users/{userId}/factors: 200 array.
//   - getUser         GET    /api/v1/users/{id-or-login}.
//   - errors: Error {errorCode, errorSummary, errorLink, errorId, errorCauses};
//     400 ErrorApiValidationFailed400 (E0000001), 403 ErrorAccessDenied403
//     (E0000006), 404 ErrorResourceNotFound404 (E0000007), 429
//     ErrorTooManyRequests429 (E0000047).
//   - security apiToken: "Authorization: SSWS {API Token}"; oauth2:
//     "Authorization: Bearer {access_token}".
//
// The activation is verified as Okta would, with go-webauthn, against the
// challenge the fake handed out, rp id = the org's host and origin
// https://{host}; the credential is made by a virtual key through libfido2.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"

	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/idp/okta"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/virtual/fidotest"
)

const (
	host   = "example.com" // httptest's certificate names it
	token  = "00test-okta-api-token"
	userID = "00u15s1KDETTQMQYABRL"
	login  = "ada@example.com"
)

type fakeFactor struct {
	ID, Status, Challenge string
	CredentialID          []byte
	Created               time.Time
}

// fakeOrg is an Okta org's Factors API as the OpenAPI description has it.
type fakeOrg struct {
	t          *testing.T
	mu         sync.Mutex
	factors    map[string]*fakeFactor
	n          int
	failNext   int // answer the next request with this status
	violations []string
}

func (o *fakeOrg) violate(format string, a ...any) {
	o.violations = append(o.violations, fmt.Sprintf(format, a...))
}

func oktaErr(w http.ResponseWriter, status int, code, summary string) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusTooManyRequests {
		w.Header().Set("X-Rate-Limit-Reset", strconv.FormatInt(time.Now().Add(30*time.Second).Unix(), 10))
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errorCode": code, "errorSummary": summary,
		"errorLink": code, "errorId": "oaeTestError", "errorCauses": []any{}})
}

func (o *fakeOrg) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r.Header.Get("Authorization") != "SSWS "+token {
		oktaErr(w, http.StatusUnauthorized, "E0000011", "Invalid token provided")
		return
	}
	if f := o.failNext; f != 0 {
		o.failNext = 0
		switch f {
		case http.StatusForbidden:
			oktaErr(w, f, "E0000006", "You do not have permission to perform the requested action")
		case http.StatusTooManyRequests:
			oktaErr(w, f, "E0000047", "API call exceeded rate limit due to too many requests.")
		default:
			oktaErr(w, f, "E0000009", "Internal Server Error")
		}
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/users/"), "/")
	if !strings.HasPrefix(r.URL.Path, "/api/v1/users/") {
		o.violate("%s %s: not an operation the connector may use", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	if parts[0] != userID && parts[0] != login {
		oktaErr(w, http.StatusNotFound, "E0000007", "Not found: Resource not found: "+parts[0]+" (User)")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodDelete && r.Header.Get("Content-Type") != "application/json" {
		o.violate("%s %s: content type %q, not application/json", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
	}
	switch {
	case len(parts) == 1 && r.Method == http.MethodGet:
		json.NewEncoder(w).Encode(map[string]any{"id": userID, "status": "ACTIVE", "profile": map[string]any{"login": login}})
	case len(parts) == 2 && parts[1] == "factors" && r.Method == http.MethodPost:
		o.enroll(w, r)
	case len(parts) == 2 && parts[1] == "factors" && r.Method == http.MethodGet:
		var out []any
		for _, f := range o.factors {
			out = append(out, o.factorJSON(f))
		}
		json.NewEncoder(w).Encode(out)
	case len(parts) == 3 && r.Method == http.MethodDelete:
		if _, ok := o.factors[parts[2]]; !ok {
			oktaErr(w, http.StatusNotFound, "E0000007", "Not found: Resource not found: "+parts[2]+" (UserFactor)")
			return
		}
		delete(o.factors, parts[2])
		w.WriteHeader(http.StatusNoContent)
	case len(parts) == 5 && parts[3] == "lifecycle" && parts[4] == "activate" && r.Method == http.MethodPost:
		o.activate(w, r, parts[2])
	default:
		o.violate("%s %s: not an operation the connector may use", r.Method, r.URL.Path)
		http.NotFound(w, r)
	}
}

func (o *fakeOrg) enroll(w http.ResponseWriter, r *http.Request) {
	for k, v := range r.URL.Query() {
		switch k {
		case "tokenLifetimeSeconds":
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 || n > 86400 {
				o.violate("enrollFactor: tokenLifetimeSeconds %q is not an integer in 1-86400", v[0])
			}
		case "updatePhone", "templateId", "activate":
		default:
			o.violate("enrollFactor: unknown query parameter %q", k)
		}
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		o.violate("enrollFactor: body is not JSON: %v", err)
	}
	if body["factorType"] != "webauthn" || body["provider"] != "FIDO" || len(body) != 2 {
		o.violate("enrollFactor: body %v is not UserFactorWebAuthn {factorType: webauthn, provider: FIDO}", body)
	}
	chal := make([]byte, 15) // 20 base64url characters, as Okta's
	rand.Read(chal)
	o.n++
	f := &fakeFactor{ID: fmt.Sprintf("fwf%017d", o.n), Status: "PENDING_ACTIVATION",
		Challenge: base64.RawURLEncoding.EncodeToString(chal), Created: time.Now().UTC().Truncate(time.Second)}
	if o.factors == nil {
		o.factors = map[string]*fakeFactor{}
	}
	o.factors[f.ID] = f
	out := o.factorJSON(f)
	out["_embedded"] = map[string]any{"activation": map[string]any{
		"attestation":            "direct",
		"authenticatorSelection": map[string]any{"userVerification": "preferred", "requireResidentKey": false},
		"challenge":              f.Challenge,
		"excludeCredentials":     []any{},
		"pubKeyCredParams":       []any{map[string]any{"type": "public-key", "alg": -7}, map[string]any{"type": "public-key", "alg": -257}},
		"rp":                     map[string]any{"name": "Keydesk Test Org"},
		"user":                   map[string]any{"displayName": "Ada Lovelace", "name": login, "id": userID},
	}}
	json.NewEncoder(w).Encode(out)
}

func (o *fakeOrg) activate(w http.ResponseWriter, r *http.Request, id string) {
	f, ok := o.factors[id]
	if !ok {
		oktaErr(w, http.StatusNotFound, "E0000007", "Not found: Resource not found: "+id+" (UserFactor)")
		return
	}
	var body map[string]string
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		o.violate("activateFactor: body is not an object of strings: %v", err)
	}
	if len(body) != 2 || body["attestation"] == "" || body["clientData"] == "" {
		o.violate("activateFactor: body members %v are not the webauthn UserFactorActivateRequest {attestation, clientData}", keys(body))
	}
	att, err1 := base64.StdEncoding.DecodeString(body["attestation"])
	cd, err2 := base64.StdEncoding.DecodeString(body["clientData"])
	if err1 != nil || err2 != nil {
		o.violate("activateFactor: attestation or clientData is not base64: %v %v", err1, err2)
		oktaErr(w, http.StatusBadRequest, "E0000001", "Api validation failed: attestation")
		return
	}
	b64 := base64.RawURLEncoding.EncodeToString
	// The credential id comes from the attestation, as Okta reads it.
	reg, _ := json.Marshal(map[string]any{"id": "AA", "rawId": "AA", "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64(cd), "attestationObject": b64(att)}})
	pcc, err := protocol.ParseCredentialCreationResponseBytes(fixID(reg, att))
	if err == nil {
		_, err = pcc.Verify(f.Challenge, host, []string{"https://" + host}, nil, nil, protocol.TopOriginImplicitVerificationMode,
			false, false, true, nil, []protocol.CredentialParameter{
				{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgES256},
				{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgRS256},
			}, protocol.AttestationPolicy{}, protocol.SignaturePolicy{})
	}
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			err = fmt.Errorf("%v: %s", err, pe.DevInfo)
		}
		oktaErr(w, http.StatusBadRequest, "E0000001", "Api validation failed: "+err.Error())
		return
	}
	f.Status, f.CredentialID = "ACTIVE", pcc.Response.AttestationObject.AuthData.AttData.CredentialID
	json.NewEncoder(w).Encode(o.factorJSON(f))
}

// fixID puts the attested credential id in the registration JSON, which
// go-webauthn requires to match.
func fixID(reg, att []byte) []byte {
	pcc, err := protocol.ParseCredentialCreationResponseBytes(reg)
	if err != nil {
		return reg
	}
	id := base64.RawURLEncoding.EncodeToString(pcc.Response.AttestationObject.AuthData.AttData.CredentialID)
	return []byte(strings.ReplaceAll(string(reg), `"AA"`, `"`+id+`"`))
}

func (o *fakeOrg) factorJSON(f *fakeFactor) map[string]any {
	m := map[string]any{"id": f.ID, "factorType": "webauthn", "provider": "FIDO", "vendorName": "FIDO",
		"status": f.Status, "created": f.Created.Format(time.RFC3339), "lastUpdated": f.Created.Format(time.RFC3339)}
	if f.Status == "ACTIVE" {
		m["profile"] = map[string]any{"credentialId": base64.RawURLEncoding.EncodeToString(f.CredentialID), "authenticatorName": "YubiKey 5 Series"}
	}
	return m
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

type secrets map[string]string

func (s secrets) Secret(name string) (string, error) {
	v, ok := s[name]
	if !ok {
		return "", errors.New("no such secret")
	}
	return v, nil
}

// start runs the fake org at https://example.com (dialled to loopback).
func start(t *testing.T) (*fakeOrg, idp.Connector) {
	t.Helper()
	return startWith(t, token)
}

// startWith is start with the connector holding tok.
func startWith(t *testing.T, tok string) (*fakeOrg, idp.Connector) {
	t.Helper()
	org := &fakeOrg{t: t}
	srv := httptest.NewTLSServer(org)
	t.Cleanup(func() {
		srv.Close()
		for _, v := range org.violations {
			t.Errorf("request outside Okta's published contract: %s", v)
		}
	})
	hc := srv.Client()
	tr := hc.Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: tr.TLSClientConfig.RootCAs, ServerName: host}
	hc.Transport = tr
	c, err := okta.New("okta", okta.Settings{OrgURL: "https://" + host, TokenSecret: "okta-token", ChallengeLifetimeSeconds: 600},
		secrets{"okta-token": tok}, hc)
	if err != nil {
		t.Fatal(err)
	}
	return org, c
}

// TestRegisterListDelete: a virtual key makes the credential Okta's
// activation options ask for; the connector activates, lists and
// unenrolls the factor within Okta's published contract.
func TestRegisterListDelete(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	org, c := start(t)
	key := fidotest.Start(t, 31000042)
	u := idp.User{ExternalID: "ada", Email: login, DisplayName: "Ada Lovelace"}

	opts, err := c.Options(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if opts.RPID != host || len(opts.Challenge) != 15 || string(opts.UserID) == "" || opts.ResidentKey != "discouraged" {
		t.Fatalf("options: rp %q, challenge %d bytes, user id %x, resident key %q", opts.RPID, len(opts.Challenge), opts.UserID, opts.ResidentKey)
	}
	reg, err := fidokey.Open(key.Path).MakeCredential(ctx, fidokey.MakeOptions{RPID: opts.RPID, RPName: opts.RPName,
		UserID: opts.UserID, UserName: opts.UserName, DisplayName: opts.UserDisplayName, Challenge: opts.Challenge, CredProtect: 2}, device.Callbacks{})
	if err != nil {
		t.Fatal(err)
	}
	cred := idp.Credential{ID: reg.CredentialID, ClientDataJSON: reg.ClientDataJSON, AttestationObject: reg.AttestationObject,
		PublicKey: reg.PublicKey, AAGUID: reg.AAGUID}
	id, err := c.Register(ctx, u, opts, cred)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	ms, err := c.List(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].ID != id || string(ms[0].CredentialID) != string(reg.CredentialID) {
		t.Fatalf("list: %+v, want factor %s with the key's credential id", ms, id)
	}
	if err := c.Delete(ctx, u, id); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, u, id); err != nil {
		t.Fatalf("deleting a deleted factor: %v", err)
	}
	if ms, err := c.List(ctx, u); err != nil || len(ms) != 0 {
		t.Fatalf("list after delete: %v %v", ms, err)
	}

	// A credential made for another challenge is refused with a hint.
	opts2, err := c.Options(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Register(ctx, u, opts2, cred)
	var re *idp.RefusedError
	if !errors.As(err, &re) || re.Status != http.StatusBadRequest || re.Code != "E0000001" || re.Hint == "" {
		t.Fatalf("activating with a stale attestation: %v, want a 400 refusal with a hint", err)
	}
	if len(org.factors) != 1 {
		t.Fatalf("okta holds %d factors, want the one pending activation", len(org.factors))
	}
}

// TestErrors: every documented error is a plain refusal or a temporary
// error, as Okta's contract describes it.
func TestErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	org, c := start(t)
	u := idp.User{ExternalID: "ada", Email: login}

	org.failNext = http.StatusForbidden
	_, err := c.Options(ctx, u)
	var re *idp.RefusedError
	if !errors.As(err, &re) || re.Status != http.StatusForbidden || !strings.Contains(re.Hint, "okta.users.manage") {
		t.Fatalf("403: %v, want a refusal naming okta.users.manage", err)
	}
	org.failNext = http.StatusTooManyRequests
	_, err = c.Options(ctx, u)
	var te *idp.TemporaryError
	if !errors.As(err, &te) || te.Status != http.StatusTooManyRequests || te.RetryAfter <= 0 || te.RetryAfter > 31*time.Second {
		t.Fatalf("429: %v, want a temporary error retrying after X-Rate-Limit-Reset", err)
	}
	org.failNext = http.StatusInternalServerError
	if _, err = c.List(ctx, u); !errors.As(err, &te) {
		t.Fatalf("500: %v, want a temporary error", err)
	}
	_, err = c.Options(ctx, idp.User{ExternalID: "nobody", Email: "nobody@example.com"})
	if !errors.Is(err, idp.ErrUserNotFound) {
		t.Fatalf("unknown login: %v, want ErrUserNotFound", err)
	}
	if err := c.Delete(ctx, idp.User{Email: "nobody@example.com"}, "00uGONE00000000000000:fwf1"); err != nil {
		t.Fatalf("deleting for a user Okta no longer has: %v", err)
	}
	if err := c.Delete(ctx, idp.User{Email: "nobody@example.com"}, "fwf1"); !errors.Is(err, idp.ErrUserNotFound) {
		t.Fatalf("deleting a bare factor id for a login Okta does not know: %v, want ErrUserNotFound", err)
	}
	_, wrong := startWith(t, "not-the-token")
	_, err = wrong.List(ctx, u)
	if !errors.As(err, &re) || re.Status != http.StatusUnauthorized || re.Hint == "" {
		t.Fatalf("401: %v, want a refusal with a hint", err)
	}
	if _, err := okta.New("okta", okta.Settings{OrgURL: "https://" + host, RPID: "other.example", TokenSecret: "t"}, secrets{"t": "x"}, nil); err == nil {
		t.Fatal("an rp id other than the org's host was accepted")
	}
}
