// Package kratos is the identity-provider connector for Ory Kratos, the
// open-source identity server (connector kind "kratos").
//
// Kratos v1.3's admin API cannot import a WebAuthn or passkey credential
// (its identity import takes passwords and social sign-in only), so the
// connector registers the key the way Kratos itself does, through its own
// passkey settings flow, on the user's behalf:
//
//  1. The identity is found by email (admin API, credentials_identifier) or
//     created with the traits email and name.
//  2. An admin-issued recovery code (POST /admin/recovery/code) is redeemed
//     in a browser recovery flow driven over HTTP with a cookie jar; Kratos
//     answers with a privileged session and a settings flow.
//  3. Options returns the settings flow's passkey creation options
//     (WebAuthn L3 §5.4) — Kratos's rp id, challenge and random user handle
//     — and the desk makes a discoverable credential on the key with them.
//  4. Register submits the key's attestation to the same settings flow
//     (passkey_settings_register); Kratos verifies it (WebAuthn L3 §7.1)
//     and stores the passkey. The desk's session is then revoked through
//     the admin API (DELETE /admin/sessions/{id}).
//
// Delete removes one passkey through the settings flow (passkey_remove),
// keeping the identity's other credentials; Kratos refuses to remove a
// user's last sign-in credential, which the connector reports as a refusal
// with a hint. List reads the identity's passkey and WebAuthn credentials
// (GET /admin/identities/{id}?include_credential=passkey).
//
// The method id is the identity id and the credential id (base64url without
// padding), joined by a colon.
package kratos

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keydesk/keydesk/app/idp"
)

// Kind is the connector kind in the settings' provider list.
const Kind = "kratos"

func init() { idp.RegisterKind(Kind, Open) }

// Settings are the kind's settings (idp.Config.Settings).
type Settings struct {
	// AdminURL and PublicURL are Kratos's admin and public API base URLs.
	AdminURL  string `json:"admin_url"`
	PublicURL string `json:"public_url"`
	// SchemaID is the identity schema new identities get ("default" when
	// empty); it must have the traits email and, optionally, name.
	SchemaID string `json:"schema_id,omitempty"`
	// RPID is the organisation's relying party id. Kratos's passkey rp id
	// (selfservice.methods.passkey.config.rp.id) must equal it, and its
	// rp origins must include "https://" + RPID, the origin of the desk's
	// clientDataJSON.
	RPID string `json:"rp_id"`
	// TokenSecret names the secret (idp.Secrets) holding a bearer token for
	// the admin API, for a Kratos behind an authenticating proxy; empty
	// sends none (Kratos's admin API has no authentication of its own).
	TokenSecret string `json:"token_secret,omitempty"`
}

// Connector is one Kratos.
type Connector struct {
	name          string
	s             Settings
	admin, public *url.URL
	token         string
	hc            *http.Client

	mu      sync.Mutex
	pending map[string]*settingsSession // by base64url challenge
}

// pendingLife is how long a settings flow opened by Options waits for
// Register before its session is revoked.
const pendingLife = 10 * time.Minute

// Open makes a connector from its configuration.
func Open(cfg idp.Config, sec idp.Secrets) (idp.Connector, error) {
	s, err := idp.ReadSettings[Settings](idp.SettingsReader{Kind: Kind, Name: cfg.Name}, cfg.Settings)
	if err != nil {
		return nil, err
	}
	return New(cfg.Name, s, sec)
}

// New makes a connector named name.
func New(name string, s Settings, sec idp.Secrets) (*Connector, error) {
	r := idp.SettingsReader{Kind: Kind, Name: name}
	if s.SchemaID == "" {
		s.SchemaID = "default"
	}
	if s.RPID == "" {
		return nil, r.Errorf("settings: rp_id is required")
	}
	admin, err := idp.BaseURL(s.AdminURL)
	if err != nil {
		return nil, r.Errorf("settings: admin_url: %w", err)
	}
	public, err := idp.BaseURL(s.PublicURL)
	if err != nil {
		return nil, r.Errorf("settings: public_url: %w", err)
	}
	c := &Connector{name: name, s: s, admin: admin, public: public,
		hc: &http.Client{Timeout: 30 * time.Second}, pending: map[string]*settingsSession{}}
	if s.TokenSecret != "" {
		if sec == nil {
			return nil, r.Errorf("settings name token secret %q but no secret store was given", s.TokenSecret)
		}
		if c.token, err = r.Secret(sec, "token secret", s.TokenSecret); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Name is the provider's configured name.
func (c *Connector) Name() string { return c.name }

// identity is the part of a Kratos identity (admin API) the connector reads.
type identity struct {
	ID          string                     `json:"id"`
	SchemaID    string                     `json:"schema_id"`
	Traits      map[string]any             `json:"traits"`
	Credentials map[string]identityCredSet `json:"credentials"`
}

type identityCredSet struct {
	Type        string          `json:"type"`
	Identifiers []string        `json:"identifiers"`
	Config      json.RawMessage `json:"config"`
}

// webauthnConfig is Kratos's stored passkey/WebAuthn credential config
// (identity.CredentialsWebAuthnConfig): []byte fields are standard base64.
type webauthnConfig struct {
	Credentials []struct {
		ID             []byte    `json:"id"`
		DisplayName    string    `json:"display_name"`
		AddedAt        time.Time `json:"added_at"`
		IsPasswordless bool      `json:"is_passwordless"`
		Authenticator  *struct {
			AAGUID    []byte `json:"aaguid"`
			SignCount uint32 `json:"sign_count"`
		} `json:"authenticator"`
	} `json:"credentials"`
	UserHandle []byte `json:"user_handle"`
}

// findIdentity returns u's identity: by ProviderUserID, else by email (the
// schema's code identifier). found is false when Kratos has none.
func (c *Connector) findIdentity(ctx context.Context, u idp.User, include ...string) (identity, bool, error) {
	var id identity
	q := url.Values{}
	for _, t := range include {
		q.Add("include_credential", t)
	}
	if u.ProviderUserID != "" {
		status, err := c.adminDo(ctx, http.MethodGet, "/admin/identities/"+url.PathEscape(u.ProviderUserID)+"?"+q.Encode(), nil, &id, http.StatusOK)
		if status == http.StatusNotFound {
			return id, false, nil
		}
		return id, err == nil, err
	}
	email := strings.ToLower(strings.TrimSpace(u.Email))
	if email == "" {
		return id, false, fmt.Errorf("kratos %q: user %q has neither a kratos identity id nor an email", c.name, u.ExternalID)
	}
	var list []identity
	lq := url.Values{"credentials_identifier": {email}}
	if _, err := c.adminDo(ctx, http.MethodGet, "/admin/identities?"+lq.Encode(), nil, &list, http.StatusOK); err != nil {
		return id, false, err
	}
	if len(list) == 0 {
		return id, false, nil
	}
	if len(include) == 0 {
		return list[0], true, nil
	}
	_, err := c.adminDo(ctx, http.MethodGet, "/admin/identities/"+url.PathEscape(list[0].ID)+"?"+q.Encode(), nil, &id, http.StatusOK)
	return id, err == nil, err
}

// ensureIdentity finds u's identity or creates it.
func (c *Connector) ensureIdentity(ctx context.Context, u idp.User) (identity, error) {
	id, ok, err := c.findIdentity(ctx, u)
	if err != nil || ok {
		return id, err
	}
	if u.ProviderUserID != "" {
		return id, &idp.RefusedError{Provider: c.name, Status: http.StatusNotFound,
			Hint: "Kratos has no identity " + u.ProviderUserID + ": check the user's Kratos identity id",
			Err:  fmt.Errorf("identity %s: %w", u.ProviderUserID, idp.ErrUserNotFound)}
	}
	traits := map[string]any{"email": strings.ToLower(strings.TrimSpace(u.Email))}
	if u.DisplayName != "" {
		traits["name"] = u.DisplayName
	}
	body := map[string]any{"schema_id": c.s.SchemaID, "traits": traits, "state": "active",
		"metadata_admin": map[string]any{"keydesk_external_id": u.ExternalID}}
	status, err := c.adminDo(ctx, http.MethodPost, "/admin/identities", body, &id, http.StatusCreated)
	if status == http.StatusConflict {
		// Created meanwhile by another desk.
		if id, ok, err = c.findIdentity(ctx, u); err == nil && ok {
			return id, nil
		}
	}
	return id, err
}

// Options opens a passkey settings flow for u (creating u's identity when
// Kratos has none) and returns its creation options.
func (c *Connector) Options(ctx context.Context, u idp.User) (*idp.CreationOptions, error) {
	c.sweep(ctx)
	id, err := c.ensureIdentity(ctx, u)
	if err != nil {
		return nil, err
	}
	ss, err := c.openSettings(ctx, id.ID)
	if err != nil {
		return nil, err
	}
	opts, err := ss.creationOptions(c)
	if err != nil {
		ss.close(ctx, c)
		return nil, err
	}
	if opts.RPID != c.s.RPID {
		ss.close(ctx, c)
		return nil, &idp.RefusedError{Provider: c.name, Code: "rp_id_mismatch",
			Hint: fmt.Sprintf("Kratos's passkey relying party is %q but the organisation's is %q: set selfservice.methods.passkey.config.rp.id in Kratos's configuration to %q, or the desk's rp id to Kratos's", opts.RPID, c.s.RPID, c.s.RPID),
			Err:  fmt.Errorf("kratos passkey rp id %q is not the organisation's rp id %q", opts.RPID, c.s.RPID)}
	}
	c.mu.Lock()
	c.pending[base64.RawURLEncoding.EncodeToString(opts.Challenge)] = ss
	c.mu.Unlock()
	return opts, nil
}

// sweep revokes the sessions of settings flows Register never finished.
func (c *Connector) sweep(ctx context.Context) {
	var old []*settingsSession
	c.mu.Lock()
	for k, ss := range c.pending {
		if time.Since(ss.opened) > pendingLife {
			old = append(old, ss)
			delete(c.pending, k)
		}
	}
	c.mu.Unlock()
	for _, ss := range old {
		ss.close(ctx, c)
	}
}

// Register submits the key's attestation to the settings flow Options
// opened for opts and returns the method id (the credential id, base64url).
func (c *Connector) Register(ctx context.Context, u idp.User, opts *idp.CreationOptions, cred idp.Credential) (string, error) {
	if opts == nil {
		return "", fmt.Errorf("kratos %q: registering needs the creation options Options returned: kratos verifies a credential made for its own challenge", c.name)
	}
	key := base64.RawURLEncoding.EncodeToString(opts.Challenge)
	c.mu.Lock()
	ss := c.pending[key]
	delete(c.pending, key)
	c.mu.Unlock()
	if ss == nil {
		return "", fmt.Errorf("kratos %q: no open settings flow for these creation options (expired, or opened by another desk process): ask for new options", c.name)
	}
	defer ss.close(ctx, c)
	b64 := base64.RawURLEncoding.EncodeToString
	transports := cred.Transports
	if transports == nil {
		transports = []string{}
	}
	resp, err := json.Marshal(map[string]any{
		"id": b64(cred.ID), "rawId": b64(cred.ID), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64(cred.ClientDataJSON),
			"attestationObject": b64(cred.AttestationObject),
			"transports":        transports,
		},
		"clientExtensionResults": map[string]any{},
	})
	if err != nil {
		return "", err
	}
	if err := ss.submit(ctx, c, map[string]any{"method": "passkey", "passkey_settings_register": string(resp)}); err != nil {
		// An answer lost after Kratos stored the passkey is not a failure:
		// the identity's passkeys say whether it did.
		var te *idp.TemporaryError
		if errors.As(err, &te) && c.holds(ctx, ss.identityID, cred.ID) {
			return methodID(ss.identityID, cred.ID), nil
		}
		return "", fmt.Errorf("registering the passkey: %w", err)
	}
	return methodID(ss.identityID, cred.ID), nil
}

// methodID names a passkey: the Kratos identity id and the credential id
// (base64url without padding), joined by a colon, so a delete reaches the
// identity even after its email changed.
func methodID(identityID string, credID []byte) string {
	return identityID + ":" + base64.RawURLEncoding.EncodeToString(credID)
}

// parseMethodID splits a method id; identityID is empty for a bare
// credential id.
func parseMethodID(id string) (identityID string, credID []byte, err error) {
	cred := id
	if i := strings.LastIndexByte(id, ':'); i >= 0 {
		identityID, cred = id[:i], id[i+1:]
	}
	credID, err = base64.RawURLEncoding.DecodeString(cred)
	if err != nil || len(credID) == 0 {
		return "", nil, fmt.Errorf("method id %q is not IDENTITY:CREDENTIAL (base64url)", id)
	}
	return identityID, credID, nil
}

// holds reports whether identity id has the passkey credID; an error
// reading it is a no.
func (c *Connector) holds(ctx context.Context, id string, credID []byte) bool {
	found, ok, err := c.findIdentity(ctx, idp.User{ProviderUserID: id}, "passkey")
	if err != nil || !ok {
		return false
	}
	for _, m := range methods(found, "passkey") {
		if bytes.Equal(m.CredentialID, credID) {
			return true
		}
	}
	return false
}

// Delete removes the passkey methodID from u's identity, keeping its other
// credentials. A passkey or identity already gone is not an error.
func (c *Connector) Delete(ctx context.Context, u idp.User, methodID string) error {
	identityID, credID, err := parseMethodID(methodID)
	if err != nil {
		return fmt.Errorf("kratos %q: %w", c.name, err)
	}
	var id identity
	var ok bool
	if identityID != "" {
		// The identity the passkey was registered to: gone means the
		// passkey is gone too.
		if id, ok, err = c.findIdentity(ctx, idp.User{ProviderUserID: identityID}, "passkey"); err != nil {
			return err
		}
		if !ok {
			return nil
		}
	} else {
		// A bare credential id: the user's identity must be found, or the
		// desk would believe a passkey removed that Kratos still holds.
		if id, ok, err = c.findIdentity(ctx, u, "passkey"); err != nil {
			return err
		}
		if !ok {
			return &idp.RefusedError{Provider: c.name, Status: http.StatusNotFound,
				Hint: "Kratos has no identity for this user's email: find the identity in Kratos and remove the passkey there",
				Err:  fmt.Errorf("user %s: %w", firstNonEmpty(u.ProviderUserID, u.Email, u.ExternalID), idp.ErrUserNotFound)}
		}
	}
	held := false
	for _, m := range methods(id, "passkey") {
		if bytes.Equal(m.CredentialID, credID) {
			held = true
		}
	}
	if !held {
		return nil
	}
	ss, err := c.openSettings(ctx, id.ID)
	if err != nil {
		return err
	}
	defer ss.close(ctx, c)
	err = ss.submit(ctx, c, map[string]any{"method": "passkey", "passkey_remove": hex.EncodeToString(credID)})
	// Kratos v1.3 refuses with webauthnx.ErrNotEnoughCredentials, a
	// validation error with no message id: "unable to remove this security
	// key because it would lock you out of your account".
	var re *idp.RefusedError
	if errors.As(err, &re) && strings.Contains(re.Err.Error(), "lock you out") {
		re.Code = "last_credential"
		re.Hint = "Kratos keeps at least one way to sign in: give the user another key (or sign-in method) in Kratos first, or disable the identity in Kratos"
	}
	if err != nil {
		return fmt.Errorf("removing the passkey: %w", err)
	}
	return nil
}

// List returns u's passkeys and WebAuthn credentials.
func (c *Connector) List(ctx context.Context, u idp.User) ([]idp.Method, error) {
	id, ok, err := c.findIdentity(ctx, u, "passkey", "webauthn")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &idp.RefusedError{Provider: c.name, Status: http.StatusNotFound,
			Hint: "Kratos has no identity for this user",
			Err:  fmt.Errorf("user %s: %w", firstNonEmpty(u.ProviderUserID, u.Email, u.ExternalID), idp.ErrUserNotFound)}
	}
	return append(methods(id, "passkey"), methods(id, "webauthn")...), nil
}

func methods(id identity, typ string) []idp.Method {
	set, ok := id.Credentials[typ]
	if !ok || len(set.Config) == 0 {
		return nil
	}
	var cfg webauthnConfig
	if err := json.Unmarshal(set.Config, &cfg); err != nil {
		return nil
	}
	var out []idp.Method
	for _, cr := range cfg.Credentials {
		m := idp.Method{ID: methodID(id.ID, cr.ID), CredentialID: cr.ID,
			DisplayName: cr.DisplayName, Created: cr.AddedAt}
		if cr.Authenticator != nil && len(cr.Authenticator.AAGUID) == 16 {
			a := cr.Authenticator.AAGUID
			m.AAGUID = fmt.Sprintf("%x-%x-%x-%x-%x", a[0:4], a[4:6], a[6:8], a[8:10], a[10:16])
		}
		out = append(out, m)
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// api is one of Kratos's two APIs.
type api struct {
	base  *url.URL
	admin bool
}

// adminDo sends one request to the admin API.
func (c *Connector) adminDo(ctx context.Context, method, path string, body, out any, ok ...int) (int, error) {
	status, _, err := api{base: c.admin, admin: true}.do(ctx, c, nil, method, path, body, out, ok...)
	return status, err
}

// publicDo sends one request to the public API with client hc (its cookie
// jar is the browser's).
func (c *Connector) publicDo(ctx context.Context, hc *http.Client, method, path string, body, out any, ok ...int) (int, []byte, error) {
	return api{base: c.public}.do(ctx, c, hc, method, path, body, out, ok...)
}

// do sends one JSON request with client hc (nil: the connector's) and
// decodes an answer whose status is one of ok into out. It returns the
// status it got. Errors: *idp.TemporaryError for a Kratos that cannot be
// reached or answers 5xx/429, *idp.RefusedError for any other answer.
func (a api) do(ctx context.Context, c *Connector, hc *http.Client, method, path string, body, out any, ok ...int) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := a.base.String() + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.admin && c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if hc == nil {
		hc = c.hc
	}
	op := method + " " + strings.SplitN(path, "?", 2)[0]
	res, err := hc.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection refused") {
			return 0, nil, &idp.TemporaryError{Provider: c.name, Err: fmt.Errorf("%s: %w", op, err)}
		}
		return 0, nil, fmt.Errorf("kratos %q: %s: %w", c.name, op, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return res.StatusCode, nil, &idp.TemporaryError{Provider: c.name, Status: res.StatusCode, Err: fmt.Errorf("%s: reading the answer: %w", op, err)}
	}
	for _, s := range ok {
		if res.StatusCode == s {
			if out != nil && len(raw) > 0 {
				if err := json.Unmarshal(raw, out); err != nil {
					return res.StatusCode, raw, fmt.Errorf("kratos %q: %s: decoding the answer: %w", c.name, op, err)
				}
			}
			return res.StatusCode, raw, nil
		}
	}
	msg := kratosMessage(raw)
	if res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests {
		te := &idp.TemporaryError{Provider: c.name, Status: res.StatusCode, Err: fmt.Errorf("%s: %d %s", op, res.StatusCode, msg)}
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s >= 0 {
			te.RetryAfter = time.Duration(s) * time.Second
		}
		return res.StatusCode, raw, te
	}
	re := &idp.RefusedError{Provider: c.name, Status: res.StatusCode, Err: fmt.Errorf("%s: %d %s", op, res.StatusCode, msg)}
	if res.StatusCode == http.StatusNotFound && strings.HasPrefix(path, "/admin/identities/") {
		re.Err = fmt.Errorf("%s: %w", op, idp.ErrUserNotFound)
		re.Hint = "Kratos has no such identity"
	}
	return res.StatusCode, raw, re
}

// kratosMessage is the plain message in a Kratos error answer: the generic
// error's reason or message, or the messages of a flow's UI.
func kratosMessage(raw []byte) string {
	var e struct {
		Error *struct {
			ID      string `json:"id"`
			Message string `json:"message"`
			Reason  string `json:"reason"`
		} `json:"error"`
		UI *flowUI `json:"ui"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return strings.TrimSpace(string(raw[:min(len(raw), 200)]))
	}
	if e.Error != nil {
		return strings.TrimSpace(firstNonEmpty(e.Error.Reason, e.Error.Message, e.Error.ID))
	}
	if e.UI != nil {
		var msgs []string
		for _, m := range e.UI.Messages {
			msgs = append(msgs, m.Text)
		}
		for _, n := range e.UI.Nodes {
			for _, m := range n.Messages {
				msgs = append(msgs, m.Text)
			}
		}
		return strings.Join(msgs, "; ")
	}
	return ""
}
