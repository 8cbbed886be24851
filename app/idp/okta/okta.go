// Package okta is the identity-provider connector for Okta (connector kind
// "okta"), through the admin Factors API of the Okta Management API:
//
//   - Options: POST /api/v1/users/{userId}/factors?tokenLifetimeSeconds=N
//     with {"factorType": "webauthn", "provider": "FIDO"} enrolls a WebAuthn
//     factor for the user (status PENDING_ACTIVATION); its
//     _embedded.activation is the PublicKeyCredentialCreationOptions
//     (WebAuthn L3 §5.4), without an rp id: the rp id is the org's host.
//   - Register: POST /api/v1/users/{userId}/factors/{factorId}/lifecycle/activate
//     with {"attestation", "clientData"} (base64) activates it; the method
//     id is the Okta user id and the factor id, joined by a colon.
//   - Delete: DELETE /api/v1/users/{userId}/factors/{factorId} (unenrollFactor).
//   - List: GET /api/v1/users/{userId}/factors, the webauthn ones, with
//     profile.credentialId.
//
// Enroll, activate and unenroll need the okta.users.manage scope (or an
// API token of an admin allowed to manage the user's factors); listing
// needs okta.users.read. The org's Passkey (FIDO2 WebAuthn) authenticator
// must be enabled and allowed by the user's authenticator enrollment
// policy. Source: Okta Management API OpenAPI description, release
// 2026.06.3 (github.com/okta/okta-management-openapi-spec,
// dist/current/management-oneOfInheritance.yaml, operations enrollFactor,
// activateFactor, unenrollFactor, listFactors).
package okta

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keydesk/keydesk/app/idp"
)

// Kind is the connector kind in the settings' provider list.
const Kind = "okta"

func init() { idp.RegisterKind(Kind, Open) }

// Settings are the kind's settings (idp.Config.Settings).
type Settings struct {
	// OrgURL is the Okta org (or its custom domain), "https://example.okta.com".
	OrgURL string `json:"org_url"`
	// RPID is the organisation's relying party id. Okta's WebAuthn rp id
	// is the org's host, so it must equal OrgURL's host: the desk's
	// clientDataJSON carries the origin "https://" + RPID.
	RPID string `json:"rp_id"`
	// TokenSecret names the secret (idp.Secrets) holding the token.
	TokenSecret string `json:"token_secret"`
	// TokenScheme is "SSWS" for an Okta API token (the default) or "Bearer"
	// for an OAuth 2.0 access token with okta.users.manage.
	TokenScheme string `json:"token_scheme,omitempty"`
	// ChallengeLifetimeSeconds is how long the factor's challenge lives
	// (tokenLifetimeSeconds, 1 to 86400; Okta's default 300 when zero).
	ChallengeLifetimeSeconds int `json:"challenge_lifetime_seconds,omitempty"`
}

// Connector is one Okta org.
type Connector struct {
	name  string
	s     Settings
	org   *url.URL
	auth  string
	hc    *http.Client
	clock func() time.Time
}

// Open makes a connector from its configuration.
func Open(cfg idp.Config, sec idp.Secrets) (idp.Connector, error) {
	s, err := idp.ReadSettings[Settings](idp.SettingsReader{Kind: Kind, Name: cfg.Name}, cfg.Settings)
	if err != nil {
		return nil, err
	}
	return New(cfg.Name, s, sec, nil)
}

// New makes a connector named name; hc nil uses a client with a 30 s
// timeout.
func New(name string, s Settings, sec idp.Secrets, hc *http.Client) (*Connector, error) {
	r := idp.SettingsReader{Kind: Kind, Name: name}
	org, err := idp.BaseURL(s.OrgURL)
	if err != nil {
		return nil, r.Errorf("settings: org_url %q is not an https URL", s.OrgURL)
	}
	if s.RPID == "" {
		s.RPID = org.Hostname()
	}
	if s.RPID != org.Hostname() {
		return nil, r.Errorf("settings: rp_id %q is not the org's host %q: Okta's WebAuthn relying party is the host the org is reached at", s.RPID, org.Hostname())
	}
	if s.ChallengeLifetimeSeconds < 0 || s.ChallengeLifetimeSeconds > 86400 {
		return nil, r.Errorf("settings: challenge_lifetime_seconds %d is outside 1-86400", s.ChallengeLifetimeSeconds)
	}
	scheme := s.TokenScheme
	if scheme == "" {
		scheme = "SSWS"
	}
	if scheme != "SSWS" && scheme != "Bearer" {
		return nil, r.Errorf("settings: token_scheme %q is neither SSWS nor Bearer", s.TokenScheme)
	}
	if s.TokenSecret == "" || sec == nil {
		return nil, r.Errorf("settings: token_secret names no secret")
	}
	tok, err := r.Secret(sec, "token secret", s.TokenSecret)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Connector{name: name, s: s, org: org, auth: scheme + " " + tok, hc: hc, clock: time.Now}, nil
}

// Name is the provider's configured name.
func (c *Connector) Name() string { return c.name }

// factor is a UserFactor as the Factors API returns it.
type factor struct {
	ID         string    `json:"id"`
	FactorType string    `json:"factorType"`
	Provider   string    `json:"provider"`
	Status     string    `json:"status"`
	Created    time.Time `json:"created"`
	Profile    struct {
		CredentialID      string `json:"credentialId"`
		AuthenticatorName string `json:"authenticatorName"`
	} `json:"profile"`
	Embedded struct {
		Activation *activation `json:"activation"`
	} `json:"_embedded"`
}

// activation is the webauthn factor's PublicKeyCredentialCreationOptions:
// challenge and user.id are base64url strings, as Okta's own sign-in
// widget decodes them.
type activation struct {
	Attestation            string `json:"attestation"`
	AuthenticatorSelection struct {
		UserVerification   string `json:"userVerification"`
		RequireResidentKey bool   `json:"requireResidentKey"`
		ResidentKey        string `json:"residentKey"`
	} `json:"authenticatorSelection"`
	Challenge          string `json:"challenge"`
	ExcludeCredentials []struct {
		ID string `json:"id"`
	} `json:"excludeCredentials"`
	RP struct {
		Name string `json:"name"`
	} `json:"rp"`
	User struct {
		DisplayName string `json:"displayName"`
		Name        string `json:"name"`
		ID          string `json:"id"`
	} `json:"user"`
	Timeout int64 `json:"timeout"`
}

// pending is what Options keeps in CreationOptions.Raw for Register.
type pending struct {
	UserID   string `json:"okta_user_id"`
	FactorID string `json:"factor_id"`
	Factor   json.RawMessage
}

// userID resolves u to an Okta user id: ProviderUserID, else the login
// (email) through GET /api/v1/users/{login}.
func (c *Connector) userID(ctx context.Context, u idp.User) (string, error) {
	if u.ProviderUserID != "" {
		return u.ProviderUserID, nil
	}
	login := strings.TrimSpace(u.Email)
	if login == "" {
		return "", fmt.Errorf("okta %q: user %q has neither an okta user id nor an email (login)", c.name, u.ExternalID)
	}
	var usr struct {
		ID string `json:"id"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/api/v1/users/"+url.PathEscape(login), nil, &usr, http.StatusOK); err != nil {
		return "", err
	}
	return usr.ID, nil
}

// Options enrolls a webauthn factor for u and returns its creation options.
func (c *Connector) Options(ctx context.Context, u idp.User) (*idp.CreationOptions, error) {
	uid, err := c.userID(ctx, u)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if c.s.ChallengeLifetimeSeconds > 0 {
		q.Set("tokenLifetimeSeconds", strconv.Itoa(c.s.ChallengeLifetimeSeconds))
	}
	path := "/api/v1/users/" + url.PathEscape(uid) + "/factors"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var raw json.RawMessage
	if _, err := c.do(ctx, http.MethodPost, path, map[string]string{"factorType": "webauthn", "provider": "FIDO"}, &raw, http.StatusOK); err != nil {
		return nil, fmt.Errorf("enrolling a webauthn factor: %w", err)
	}
	var f factor
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("okta %q: enrolled factor: %w", c.name, err)
	}
	a := f.Embedded.Activation
	if f.ID == "" || a == nil || a.Challenge == "" {
		return nil, fmt.Errorf("okta %q: the enrolled factor (status %q) carries no activation challenge", c.name, f.Status)
	}
	o := &idp.CreationOptions{
		RPID: c.s.RPID, RPName: a.RP.Name, UserName: a.User.Name, UserDisplayName: a.User.DisplayName,
		UserVerification: a.AuthenticatorSelection.UserVerification, Attestation: a.Attestation,
		ResidentKey: a.AuthenticatorSelection.ResidentKey,
		Timeout:     time.Duration(a.Timeout) * time.Millisecond,
	}
	if o.ResidentKey == "" {
		o.ResidentKey = "discouraged"
		if a.AuthenticatorSelection.RequireResidentKey {
			o.ResidentKey = "required"
		}
	}
	if o.Timeout == 0 {
		o.Timeout = time.Duration(c.s.ChallengeLifetimeSeconds) * time.Second
	}
	if o.Challenge, err = b64url(a.Challenge); err != nil {
		return nil, fmt.Errorf("okta %q: activation challenge: %w", c.name, err)
	}
	if o.UserID, err = b64url(a.User.ID); err != nil {
		return nil, fmt.Errorf("okta %q: activation user id: %w", c.name, err)
	}
	for _, ex := range a.ExcludeCredentials {
		id, err := b64url(ex.ID)
		if err != nil {
			return nil, fmt.Errorf("okta %q: excluded credential: %w", c.name, err)
		}
		o.ExcludeCredentials = append(o.ExcludeCredentials, id)
	}
	if o.Raw, err = json.Marshal(pending{UserID: uid, FactorID: f.ID, Factor: raw}); err != nil {
		return nil, err
	}
	return o, nil
}

// Register activates the factor Options enrolled with the key's
// attestation and returns the method id, USER:FACTOR.
func (c *Connector) Register(ctx context.Context, u idp.User, opts *idp.CreationOptions, cred idp.Credential) (string, error) {
	if opts == nil {
		return "", fmt.Errorf("okta %q: registering needs the creation options Options returned", c.name)
	}
	var p pending
	if err := json.Unmarshal(opts.Raw, &p); err != nil || p.UserID == "" || p.FactorID == "" {
		return "", fmt.Errorf("okta %q: the creation options were not made by an okta connector", c.name)
	}
	body := map[string]string{
		"attestation": base64.StdEncoding.EncodeToString(cred.AttestationObject),
		"clientData":  base64.StdEncoding.EncodeToString(cred.ClientDataJSON),
	}
	var f factor
	if _, err := c.do(ctx, http.MethodPost, "/api/v1/users/"+url.PathEscape(p.UserID)+"/factors/"+url.PathEscape(p.FactorID)+"/lifecycle/activate", body, &f, http.StatusOK); err != nil {
		return "", fmt.Errorf("activating the webauthn factor: %w", err)
	}
	if f.Status != "ACTIVE" {
		return "", &idp.RefusedError{Provider: c.name, Status: http.StatusOK, Code: "not_active",
			Hint: "Okta did not activate the passkey: check the org's Passkey (FIDO2 WebAuthn) authenticator settings",
			Err:  fmt.Errorf("factor %s is %s after activation", p.FactorID, f.Status)}
	}
	if f.Profile.CredentialID != "" {
		if id, err := b64url(f.Profile.CredentialID); err == nil && !bytes.Equal(id, cred.ID) {
			return "", fmt.Errorf("okta %q: factor %s holds credential %s, not the key's", c.name, p.FactorID, f.Profile.CredentialID)
		}
	}
	return p.UserID + ":" + p.FactorID, nil
}

// Delete unenrolls factor methodID; a factor already gone (or a user
// deleted with it) is not an error. A bare factor id needs the user found
// by login: a user not found is then a refusal, never a silent success
// that would leave a lost key enrolled.
func (c *Connector) Delete(ctx context.Context, u idp.User, methodID string) error {
	uid, fid, ok := strings.Cut(methodID, ":")
	if !ok {
		fid = methodID
		var err error
		if uid, err = c.userID(ctx, u); err != nil {
			return err
		}
	}
	if uid == "" || fid == "" {
		return fmt.Errorf("okta %q: method id %q is not USER:FACTOR", c.name, methodID)
	}
	status, err := c.do(ctx, http.MethodDelete, "/api/v1/users/"+url.PathEscape(uid)+"/factors/"+url.PathEscape(fid), nil, nil, http.StatusNoContent)
	if status == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unenrolling factor %s: %w", fid, err)
	}
	return nil
}

// List returns u's webauthn factors.
func (c *Connector) List(ctx context.Context, u idp.User) ([]idp.Method, error) {
	uid, err := c.userID(ctx, u)
	if err != nil {
		return nil, err
	}
	var fs []factor
	if _, err := c.do(ctx, http.MethodGet, "/api/v1/users/"+url.PathEscape(uid)+"/factors", nil, &fs, http.StatusOK); err != nil {
		return nil, fmt.Errorf("listing factors: %w", err)
	}
	var out []idp.Method
	for _, f := range fs {
		if f.FactorType != "webauthn" || f.Status != "ACTIVE" {
			continue
		}
		m := idp.Method{ID: uid + ":" + f.ID, DisplayName: f.Profile.AuthenticatorName, Created: f.Created}
		m.CredentialID, _ = b64url(f.Profile.CredentialID)
		out = append(out, m)
	}
	return out, nil
}

// oktaError is the Management API's Error.
type oktaError struct {
	ErrorCode    string `json:"errorCode"`
	ErrorSummary string `json:"errorSummary"`
	ErrorID      string `json:"errorId"`
	ErrorCauses  []struct {
		ErrorSummary string `json:"errorSummary"`
	} `json:"errorCauses"`
}

// do sends one request and decodes an answer whose status is one of ok
// into out. Errors: *idp.TemporaryError for an org that cannot be reached
// or answers 5xx/429 (RetryAfter from X-Rate-Limit-Reset or Retry-After),
// *idp.RefusedError for any other answer, wrapping idp.ErrUserNotFound for
// an unknown user.
func (c *Connector) do(ctx context.Context, method, path string, body, out any, ok ...int) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.org.String()+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", c.auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	op := method + " " + strings.SplitN(path, "?", 2)[0]
	res, err := c.hc.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, io.EOF) {
			return 0, &idp.TemporaryError{Provider: c.name, Err: fmt.Errorf("%s: %w", op, err)}
		}
		return 0, fmt.Errorf("okta %q: %s: %w", c.name, op, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return res.StatusCode, &idp.TemporaryError{Provider: c.name, Status: res.StatusCode, Err: fmt.Errorf("%s: reading the answer: %w", op, err)}
	}
	for _, s := range ok {
		if res.StatusCode == s {
			if out != nil && len(raw) > 0 {
				if err := json.Unmarshal(raw, out); err != nil {
					return res.StatusCode, fmt.Errorf("okta %q: %s: decoding the answer: %w", c.name, op, err)
				}
			}
			return res.StatusCode, nil
		}
	}
	var oe oktaError
	json.Unmarshal(raw, &oe)
	msg := oe.ErrorSummary
	for _, cause := range oe.ErrorCauses {
		msg += "; " + cause.ErrorSummary
	}
	if msg == "" {
		msg = http.StatusText(res.StatusCode)
	}
	cause := fmt.Errorf("%s: %d %s: %s", op, res.StatusCode, oe.ErrorCode, msg)
	if res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests {
		return res.StatusCode, &idp.TemporaryError{Provider: c.name, Status: res.StatusCode, RetryAfter: c.retryAfter(res.Header), Err: cause}
	}
	re := &idp.RefusedError{Provider: c.name, Status: res.StatusCode, Code: oe.ErrorCode, Err: cause}
	switch {
	case res.StatusCode == http.StatusUnauthorized:
		re.Hint = "Okta did not accept the token: check the API token (SSWS) or the OAuth access token and its expiry"
	case res.StatusCode == http.StatusForbidden:
		re.Hint = "Okta refused the token: it needs the okta.users.manage scope (okta.users.read to list), and its admin must be allowed to manage this user's factors"
	case res.StatusCode == http.StatusNotFound && oe.ErrorCode == "E0000007" && !strings.Contains(path, "/factors/"):
		re.Err = fmt.Errorf("%s: %w", op, idp.ErrUserNotFound)
		re.Hint = "Okta has no such user: check the user's Okta login or id"
	case res.StatusCode == http.StatusBadRequest && strings.Contains(path, "/factors") && method == http.MethodPost && !strings.Contains(path, "/lifecycle/"):
		re.Hint = "Okta refused to enroll a passkey for this user: enable the Passkey (FIDO2 WebAuthn) authenticator and allow it in the user's authenticator enrollment policy"
	case res.StatusCode == http.StatusBadRequest && strings.Contains(path, "/lifecycle/activate"):
		re.Hint = "Okta rejected the key's attestation: the challenge may have expired (ask again) or the key's origin is not the org's"
	}
	return res.StatusCode, re
}

// retryAfter reads Okta's X-Rate-Limit-Reset (epoch seconds) or a
// Retry-After in seconds.
func (c *Connector) retryAfter(h http.Header) time.Duration {
	if s, err := strconv.ParseInt(h.Get("X-Rate-Limit-Reset"), 10, 64); err == nil {
		if d := time.Unix(s, 0).Sub(c.clock()); d > 0 {
			return d
		}
	}
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// b64url decodes base64url with or without padding.
func b64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
