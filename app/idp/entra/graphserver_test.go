package entra

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// graphServer is a test stand-in for Microsoft Graph and the identity
// platform's token endpoint. It hands out creation options shaped as
// Graph documents them, checks every body it is sent and every answer it
// gives against Microsoft's CSDL metadata and OpenAPI description
// (testdata/README.md), verifies POSTed attestations with go-webauthn against the very
// options it handed out, and answers Graph's documented errors for the
// users whose names ask for them.
type graphServer struct {
	t        *testing.T
	srv      *httptest.Server
	contract *csdl
	openapi  *openAPI
	tenant   string
	clientID string
	secret   string
	cert     *x509.Certificate // AuthCertificate: the uploaded certificate

	mu            sync.Mutex
	tokens        int               // tokens issued
	valid         map[string]bool   // access tokens
	pending       map[string]*issue // user → last creation options
	methods       map[string][]storedMethod
	deviceCodes   map[string]int // device code → polls so far
	bodies        []string       // every POST body, for the record
	revokeNext    bool           // answer the next Graph call 401
	userVerifyReq bool
	seq           int
}

type issue struct {
	challenge []byte
	userID    []byte
	expires   time.Time
}

type storedMethod struct {
	ID          string
	DisplayName string
	AAGUID      string
	Created     time.Time
	CredID      []byte
}

const (
	testRPID   = "login.microsoft.com"
	testOrigin = "https://login.microsoft.com"
)

func newGraphServer(t *testing.T) *graphServer {
	g := &graphServer{t: t, contract: loadContract(t), openapi: loadOpenAPI(t), tenant: "contoso.example", clientID: "11111111-2222-3333-4444-555555555555",
		secret: "s3cret-value", valid: map[string]bool{}, pending: map[string]*issue{}, methods: map[string][]storedMethod{},
		deviceCodes: map[string]int{}, userVerifyReq: true}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", g.token)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/devicecode", g.devicecode)
	mux.HandleFunc("GET /v1.0/users/{user}/authentication/fido2Methods/creationOptions", g.graph(g.options))
	mux.HandleFunc("POST /v1.0/users/{user}/authentication/fido2Methods", g.graph(g.register))
	mux.HandleFunc("GET /v1.0/users/{user}/authentication/fido2Methods", g.graph(g.list))
	mux.HandleFunc("DELETE /v1.0/users/{user}/authentication/fido2Methods/{id}", g.graph(g.delete))
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *graphServer) settings(auth string) Settings {
	return Settings{TenantID: g.tenant, ClientID: g.clientID, Auth: auth,
		GraphURL: g.srv.URL + "/v1.0", LoginURL: g.srv.URL}
}

// graphError writes Graph's JSON error format.
func graphError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("request-id", "9f4c1a2e-0000-4000-8000-000000000001")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg,
		"innerError": map[string]any{"date": "2026-12-06T12:00:00", "request-id": "9f4c1a2e-0000-4000-8000-000000000001",
			"client-request-id": "9f4c1a2e-0000-4000-8000-000000000001"}}})
}

// graph checks the bearer token and answers the users that stand for
// Graph's documented errors before the handler runs.
func (g *graphServer) graph(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	serve := g.serveGraph(h)
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &answerRecorder{ResponseWriter: w, status: http.StatusOK}
		serve(rec, r)
		g.checkAnswer(r, rec.status, rec.body.Bytes())
	}
}

// answerRecorder keeps the status and body the test Graph answers with.
type answerRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (a *answerRecorder) WriteHeader(status int) {
	a.status = status
	a.ResponseWriter.WriteHeader(status)
}

func (a *answerRecorder) Write(b []byte) (int, error) {
	a.body.Write(b)
	return a.ResponseWriter.Write(b)
}

// checkAnswer checks every answer the test Graph gives against
// Microsoft's OpenAPI description: the operations it describes against
// their responses, and for the two it does not (creationOptions and POST
// fido2Methods, see testdata/README.md) the errors against its error
// response and the 201 against fido2AuthenticationMethod.
func (g *graphServer) checkAnswer(r *http.Request, status int, body []byte) {
	var err error
	switch r.Pattern {
	case "GET /v1.0/users/{user}/authentication/fido2Methods":
		err = g.openapi.validateAnswer(oaList, "get", status, body)
	case "DELETE /v1.0/users/{user}/authentication/fido2Methods/{id}":
		err = g.openapi.validateAnswer(oaMethod, "delete", status, body)
	default:
		switch {
		case status >= 400:
			err = g.openapi.validateError(body)
		case r.Method == http.MethodPost:
			err = g.openapi.validateSchema(body, "microsoft.graph.fido2AuthenticationMethod")
		}
	}
	if err != nil {
		g.t.Errorf("the test Graph's %d answer to %s %s breaks the OpenAPI description: %v\n%s", status, r.Method, r.URL.Path, err, body)
	}
}

func (g *graphServer) serveGraph(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		g.mu.Lock()
		ok := g.valid[tok]
		if g.revokeNext {
			g.revokeNext, ok = false, false
			delete(g.valid, tok)
		}
		g.mu.Unlock()
		if !ok {
			graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
			return
		}
		user := r.PathValue("user")
		switch user {
		case "nobody@contoso.example":
			graphError(w, http.StatusNotFound, "Request_ResourceNotFound", "Resource 'nobody@contoso.example' does not exist or one of its queried reference-property objects are not present.")
			return
		case "policy@contoso.example":
			graphError(w, http.StatusForbidden, "accessDenied", "Request denied: self-service setup of passkeys (FIDO2) is not allowed by the authentication methods policy.")
			return
		case "restricted@contoso.example":
			graphError(w, http.StatusForbidden, "accessDenied", "The FIDO2 authentication method policy does not allow this authenticator.")
			return
		case "noperm@contoso.example":
			graphError(w, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
			return
		case "busy@contoso.example":
			w.Header().Set("Retry-After", "7")
			graphError(w, http.StatusTooManyRequests, "TooManyRequests", "Too many requests.")
			return
		case "down@contoso.example":
			w.Header().Set("Retry-After", "3")
			graphError(w, http.StatusServiceUnavailable, "serviceNotAvailable", "The service is temporarily unavailable.")
			return
		}
		h(w, r, user)
	}
}

func (g *graphServer) options(w http.ResponseWriter, r *http.Request, user string) {
	chal := make([]byte, 32)
	rand.Read(chal)
	uid := sha256.Sum256([]byte(user))
	g.mu.Lock()
	var exclude []map[string]any
	for _, m := range g.methods[user] {
		// Standard base64 with padding, as Graph has been seen to send
		// credential ids here, though it documents base64url.
		exclude = append(exclude, map[string]any{"id": base64.StdEncoding.EncodeToString(m.CredID), "type": "public-key", "transports": []string{"usb"}})
	}
	exp := time.Now().Add(5 * time.Minute)
	g.pending[user] = &issue{challenge: chal, userID: uid[:], expires: exp}
	uv := "discouraged"
	if g.userVerifyReq {
		uv = "required"
	}
	g.mu.Unlock()
	if exclude == nil {
		exclude = []map[string]any{}
	}
	body, _ := json.Marshal(map[string]any{
		"@odata.context":           g.srv.URL + "/v1.0/$metadata#microsoft.graph.webauthnCredentialCreationOptions",
		"challengeTimeoutDateTime": exp.UTC().Format(time.RFC3339),
		"publicKey": map[string]any{
			"challenge": b64.EncodeToString(chal), "timeout": 300000, "attestation": "direct",
			"rp":                 map[string]any{"id": testRPID, "name": "Microsoft"},
			"user":               map[string]any{"id": b64.EncodeToString(uid[:]), "name": user, "displayName": "Ada Lovelace"},
			"pubKeyCredParams":   []map[string]any{{"type": "public-key", "alg": -7}, {"type": "public-key", "alg": -257}},
			"excludeCredentials": exclude,
			"authenticatorSelection": map[string]any{"authenticatorAttachment": "cross-platform", "requireResidentKey": true,
				"userVerification": uv},
			"extensions": map[string]any{"hmacCreateSecret": true, "enforceCredentialProtectionPolicy": true,
				"credentialProtectionPolicy": "userVerificationOptionalWithCredentialIDList"},
		},
	})
	// What the server hands out keeps the contract as well.
	if err := g.contract.validateJSON(body, "graph.webauthnCredentialCreationOptions"); err != nil {
		g.t.Errorf("the test server's creation options break the contract: %v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

func (g *graphServer) register(w http.ResponseWriter, r *http.Request, user string) {
	body, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	g.bodies = append(g.bodies, string(body))
	iss := g.pending[user]
	delete(g.pending, user) // a challenge is good once
	uvReq := g.userVerifyReq
	g.mu.Unlock()
	// Both descriptions check the body, each on its own. Graph's OpenAPI
	// description has no POST on fido2Methods; the API reference documents
	// the body as a fido2AuthenticationMethod.
	var bad []error
	if err := g.contract.validateJSON(body, "graph.fido2AuthenticationMethod"); err != nil {
		bad = append(bad, fmt.Errorf("breaks the CSDL contract: %w", err))
	}
	if err := g.openapi.validateSchema(body, "microsoft.graph.fido2AuthenticationMethod"); err != nil {
		bad = append(bad, fmt.Errorf("breaks the OpenAPI description: %w", err))
	}
	if err := checkBinaryMembers(body); err != nil {
		bad = append(bad, err)
	}
	if len(bad) > 0 {
		err := errors.Join(bad...)
		g.t.Errorf("POST fido2Methods body: %v\n%s", err, body)
		graphError(w, http.StatusBadRequest, "invalidRequest", err.Error())
		return
	}
	if iss == nil || time.Now().After(iss.expires) {
		graphError(w, http.StatusBadRequest, "invalidRequest", "No active passkey registration challenge for the user.")
		return
	}
	var fm struct {
		DisplayName         string `json:"displayName"`
		PublicKeyCredential struct {
			ID       string `json:"id"`
			Response struct {
				ClientDataJSON    string `json:"clientDataJSON"`
				AttestationObject string `json:"attestationObject"`
			} `json:"response"`
			ClientExtensionResults map[string]any `json:"clientExtensionResults"`
		} `json:"publicKeyCredential"`
	}
	if err := json.Unmarshal(body, &fm); err != nil {
		graphError(w, http.StatusBadRequest, "invalidRequest", err.Error())
		return
	}
	pkc := fm.PublicKeyCredential
	// go-webauthn parses the credential as a browser posts it.
	wire, _ := json.Marshal(map[string]any{"id": pkc.ID, "rawId": pkc.ID, "type": "public-key",
		"response":               map[string]any{"clientDataJSON": pkc.Response.ClientDataJSON, "attestationObject": pkc.Response.AttestationObject},
		"clientExtensionResults": pkc.ClientExtensionResults})
	pcc, err := protocol.ParseCredentialCreationResponseBytes(wire)
	if err == nil {
		params := []protocol.CredentialParameter{{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgES256},
			{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgRS256}}
		_, err = pcc.Verify(b64.EncodeToString(iss.challenge), testRPID, []string{testOrigin}, nil, nil,
			protocol.TopOriginImplicitVerificationMode, false, uvReq, true, nil, params, protocol.AttestationPolicy{}, protocol.SignaturePolicy{})
	}
	if err == nil && pcc.Response.AttestationObject.Format != "packed" && pcc.Response.AttestationObject.Format != "none" {
		err = fmt.Errorf("attestation format %q", pcc.Response.AttestationObject.Format)
	}
	if err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			err = fmt.Errorf("%v: %s", err, pe.Details)
		}
		g.t.Logf("test graph rejects the attestation: %v", err)
		graphError(w, http.StatusBadRequest, "invalidRequest", "The attestation could not be verified: "+err.Error())
		return
	}
	ad := pcc.Response.AttestationObject.AuthData
	// The key made it with what was asked: resident key, credProtect 2,
	// hmac-secret (the extension outputs of the authenticator data).
	var ext struct {
		CredProtect int  `cbor:"credProtect"`
		HMACSecret  bool `cbor:"hmac-secret"`
	}
	if err := cbor.Unmarshal(ad.ExtData, &ext); err != nil || ext.CredProtect != 2 || !ext.HMACSecret {
		g.t.Errorf("the key did not make the credential with the options handed out: extensions %+v, %v", ext, err)
		graphError(w, http.StatusBadRequest, "invalidRequest", "The credential does not meet the credential protection policy.")
		return
	}
	if made, _ := pkc.ClientExtensionResults["hmacCreateSecret"].(bool); !made {
		g.t.Errorf("clientExtensionResults %v lack hmacCreateSecret true", pkc.ClientExtensionResults)
	}
	var aaguid [16]byte
	copy(aaguid[:], ad.AttData.AAGUID)
	g.mu.Lock()
	g.seq++
	m := storedMethod{ID: fmt.Sprintf("method-%04d-%x", g.seq, aaguid[:4]), DisplayName: fm.DisplayName,
		AAGUID:  fmt.Sprintf("%x-%x-%x-%x-%x", aaguid[0:4], aaguid[4:6], aaguid[6:8], aaguid[8:10], aaguid[10:]),
		Created: time.Now().UTC().Truncate(time.Second), CredID: ad.AttData.CredentialID}
	g.methods[user] = append(g.methods[user], m)
	g.mu.Unlock()
	answer, _ := json.Marshal(methodJSON(m))
	if err := g.contract.validateJSON(answer, "graph.fido2AuthenticationMethod"); err != nil {
		g.t.Errorf("the test server's 201 answer breaks the contract: %v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	w.Write(answer)
}

func methodJSON(m storedMethod) map[string]any {
	return map[string]any{"@odata.type": "#microsoft.graph.fido2AuthenticationMethod", "id": m.ID,
		"displayName": m.DisplayName, "aaGuid": m.AAGUID, "model": "YubiKey 5 Series", "attestationLevel": "attested",
		"createdDateTime": m.Created.Format(time.RFC3339), "passkeyType": "deviceBound",
		"attestationCertificates": []string{}}
}

func (g *graphServer) list(w http.ResponseWriter, r *http.Request, user string) {
	g.mu.Lock()
	ms := g.methods[user]
	g.mu.Unlock()
	// One method a page, so the connector follows @odata.nextLink.
	skip := 0
	fmt.Sscan(r.URL.Query().Get("$skiptoken"), &skip)
	page := map[string]any{"value": []any{}}
	if skip < len(ms) {
		page["value"] = []any{methodJSON(ms[skip])}
		if skip+1 < len(ms) {
			page["@odata.nextLink"] = g.srv.URL + r.URL.Path + "?$skiptoken=" + fmt.Sprint(skip+1)
		}
	}
	for _, v := range page["value"].([]any) {
		b, _ := json.Marshal(v)
		if err := g.contract.validateJSON(b, "graph.fido2AuthenticationMethod"); err != nil {
			g.t.Errorf("the test server's listing breaks the contract: %v", err)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(page)
}

func (g *graphServer) delete(w http.ResponseWriter, r *http.Request, user string) {
	id := r.PathValue("id")
	g.mu.Lock()
	found := false
	for i, m := range g.methods[user] {
		if m.ID == id {
			g.methods[user] = append(g.methods[user][:i], g.methods[user][i+1:]...)
			found = true
			break
		}
	}
	g.mu.Unlock()
	if !found {
		graphError(w, http.StatusNotFound, "itemNotFound", "The requested authentication method was not found.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// tokenErr writes the identity platform's error answer.
func tokenErr(w http.ResponseWriter, status int, code string, aadsts int, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": code, "error_description": fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: t\r\nCorrelation ID: c", aadsts, desc),
		"error_codes": []int{aadsts}, "trace_id": "t", "correlation_id": "c"})
}

func (g *graphServer) issueToken(w http.ResponseWriter) {
	g.mu.Lock()
	g.tokens++
	tok := fmt.Sprintf("access-token-%d", g.tokens)
	g.valid[tok] = true
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": 3599, "access_token": tok,
		"refresh_token": "refresh-" + tok})
}

func (g *graphServer) token(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("tenant") != g.tenant {
		tokenErr(w, http.StatusBadRequest, "invalid_request", 90002, "Tenant not found.")
		return
	}
	r.ParseForm()
	f := r.PostForm
	if f.Get("client_id") != g.clientID {
		tokenErr(w, http.StatusBadRequest, "unauthorized_client", 700016, "Application not found in the directory.")
		return
	}
	switch f.Get("grant_type") {
	case "client_credentials":
		if f.Get("scope") != GraphScope {
			tokenErr(w, http.StatusBadRequest, "invalid_scope", 1002012, "The provided value for scope is not valid.")
			return
		}
		if a := f.Get("client_assertion"); a != "" {
			if err := g.checkAssertion(a, f.Get("client_assertion_type"), "http://"+r.Host+r.URL.Path); err != nil {
				g.t.Logf("test token endpoint rejects the assertion: %v", err)
				tokenErr(w, http.StatusUnauthorized, "invalid_client", 700027, "Client assertion failed signature validation.")
				return
			}
		} else if f.Get("client_secret") != g.secret {
			tokenErr(w, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided.")
			return
		}
		g.issueToken(w)
	case "urn:ietf:params:oauth:grant-type:device_code":
		g.mu.Lock()
		n, ok := g.deviceCodes[f.Get("device_code")]
		g.deviceCodes[f.Get("device_code")] = n + 1
		g.mu.Unlock()
		switch {
		case !ok:
			tokenErr(w, http.StatusBadRequest, "invalid_grant", 70000, "Unknown device code.")
		case n == 0:
			tokenErr(w, http.StatusBadRequest, "authorization_pending", 70016, "Pending end-user authorization.")
		default:
			g.issueToken(w)
		}
	case "refresh_token":
		if !strings.HasPrefix(f.Get("refresh_token"), "refresh-") {
			tokenErr(w, http.StatusBadRequest, "invalid_grant", 9002313, "Invalid request.")
			return
		}
		g.issueToken(w)
	default:
		tokenErr(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "Unsupported grant type.")
	}
}

func (g *graphServer) devicecode(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	if r.PostForm.Get("scope") != DelegatedScope+" offline_access" {
		tokenErr(w, http.StatusBadRequest, "invalid_scope", 70011, "The provided value for scope is not valid.")
		return
	}
	g.mu.Lock()
	g.deviceCodes["device-code-1"] = 0
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"device_code": "device-code-1", "user_code": "ABCD-EFGH",
		"verification_uri": "https://microsoft.com/devicelogin", "expires_in": 900, "interval": 0,
		"message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-EFGH to authenticate."})
}

// checkAssertion verifies a client assertion as the identity platform
// does: PS256 or RS256 over header.claims by the uploaded certificate's
// key, x5t#S256 naming that certificate, aud the token endpoint, iss and
// sub the client id, not expired.
func (g *graphServer) checkAssertion(jwt, typ, aud string) error {
	if typ != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return fmt.Errorf("client_assertion_type %q", typ)
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("not a compact JWS")
	}
	var hdr map[string]string
	var claims map[string]any
	hb, _ := b64.DecodeString(parts[0])
	cb, _ := b64.DecodeString(parts[1])
	sig, _ := b64.DecodeString(parts[2])
	if json.Unmarshal(hb, &hdr) != nil || json.Unmarshal(cb, &claims) != nil {
		return errors.New("header or claims unreadable")
	}
	want := sha256.Sum256(g.cert.Raw)
	if hdr["x5t#S256"] != b64.EncodeToString(want[:]) {
		return fmt.Errorf("x5t#S256 %q names another certificate", hdr["x5t#S256"])
	}
	h := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	pub := g.cert.PublicKey.(*rsa.PublicKey)
	switch hdr["alg"] {
	case "PS256":
		if err := rsa.VerifyPSS(pub, crypto.SHA256, h[:], sig, nil); err != nil {
			return err
		}
	case "RS256":
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
			return err
		}
	default:
		return fmt.Errorf("alg %q", hdr["alg"])
	}
	if claims["aud"] != aud || claims["iss"] != g.clientID || claims["sub"] != g.clientID {
		return fmt.Errorf("claims %v (want aud %s)", claims, aud)
	}
	if exp, _ := claims["exp"].(float64); time.Unix(int64(exp), 0).Before(time.Now()) {
		return errors.New("expired")
	}
	if _, err := url.Parse(aud); err != nil {
		return err
	}
	return nil
}
