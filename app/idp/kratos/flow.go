package kratos

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"github.com/keydesk/keydesk/app/idp"
)

// flowUI is a self-service flow's UI container (Kratos's uiContainer).
type flowUI struct {
	Action   string   `json:"action"`
	Nodes    []uiNode `json:"nodes"`
	Messages []uiText `json:"messages"`
}

type uiNode struct {
	Type       string `json:"type"`
	Group      string `json:"group"`
	Attributes struct {
		Name  string          `json:"name"`
		Value json.RawMessage `json:"value"`
	} `json:"attributes"`
	Messages []uiText `json:"messages"`
}

type uiText struct {
	ID   int64  `json:"id"`
	Text string `json:"text"`
	Type string `json:"type"`
}

// Flow is a self-service flow as the public API returns it.
type Flow struct {
	ID    string `json:"id"`
	State string `json:"state"`
	UI    flowUI `json:"ui"`
}

// value returns the string value of the input node called name.
func (f *Flow) value(name string) (string, bool) {
	for _, n := range f.UI.Nodes {
		if n.Attributes.Name == name {
			var s string
			if json.Unmarshal(n.Attributes.Value, &s) == nil {
				return s, true
			}
			return "", false
		}
	}
	return "", false
}

// settingsSession is a browser session at Kratos for one identity, opened
// with an admin-issued recovery code, and the settings flow it was sent to.
type settingsSession struct {
	identityID string
	hc         *http.Client // its cookie jar holds the session and CSRF cookies
	flow       Flow
	sessionID  string
	opened     time.Time
}

// browser is an HTTP client that keeps cookies and does not follow
// redirects, as a single-page app talking to Kratos does.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// openSettings redeems an admin recovery code for identity id in a browser
// recovery flow and loads the settings flow Kratos sends the session to.
func (c *Connector) openSettings(ctx context.Context, id string) (*settingsSession, error) {
	var rc struct {
		RecoveryLink string `json:"recovery_link"`
		RecoveryCode string `json:"recovery_code"`
	}
	if _, err := c.adminDo(ctx, http.MethodPost, "/admin/recovery/code",
		map[string]any{"identity_id": id, "expires_in": "5m"}, &rc, http.StatusCreated, http.StatusOK); err != nil {
		return nil, fmt.Errorf("issuing a recovery code: %w", err)
	}
	link, err := url.Parse(rc.RecoveryLink)
	if err != nil || link.Query().Get("flow") == "" || rc.RecoveryCode == "" {
		return nil, fmt.Errorf("kratos %q: issuing a recovery code: the answer has no flow or code", c.name)
	}
	ss := &settingsSession{identityID: id, hc: browser(), opened: time.Now()}
	var ans struct {
		RedirectBrowserTo string `json:"redirect_browser_to"`
		ContinueWith      []struct {
			Action string `json:"action"`
			Flow   struct {
				ID string `json:"id"`
			} `json:"flow"`
		} `json:"continue_with"`
	}
	_, raw, err := c.publicDo(ctx, ss.hc, http.MethodPost, "/self-service/recovery?flow="+url.QueryEscape(link.Query().Get("flow")),
		map[string]any{"method": "code", "code": rc.RecoveryCode}, &ans, http.StatusOK, http.StatusUnprocessableEntity)
	if err != nil {
		return nil, fmt.Errorf("redeeming the recovery code: %w", err)
	}
	flowID := ""
	if u, err := url.Parse(ans.RedirectBrowserTo); err == nil && ans.RedirectBrowserTo != "" {
		flowID = u.Query().Get("flow")
	}
	for _, cw := range ans.ContinueWith {
		if cw.Action == "show_settings_ui" && cw.Flow.ID != "" {
			flowID = cw.Flow.ID
		}
	}
	if flowID == "" {
		return nil, &idp.RefusedError{Provider: c.name, Code: "recovery_failed",
			Hint: "Kratos did not open a session for the user: check that recovery by code is enabled (selfservice.flows.recovery.use: code)",
			Err:  fmt.Errorf("redeeming the recovery code: no settings flow in the answer: %s", kratosMessage(raw))}
	}
	var who struct {
		ID string `json:"id"`
	}
	if _, _, err := c.publicDo(ctx, ss.hc, http.MethodGet, "/sessions/whoami", nil, &who, http.StatusOK); err != nil {
		return nil, fmt.Errorf("reading the recovery session: %w", err)
	}
	ss.sessionID = who.ID
	if _, _, err := c.publicDo(ctx, ss.hc, http.MethodGet, "/self-service/settings/flows?id="+url.QueryEscape(flowID), nil, &ss.flow, http.StatusOK); err != nil {
		ss.close(ctx, c)
		return nil, fmt.Errorf("loading the settings flow: %w", err)
	}
	return ss, nil
}

// close revokes the session through the admin API. Revoking is best
// effort: a session it could not revoke ends at Kratos's session lifespan.
func (ss *settingsSession) close(ctx context.Context, c *Connector) {
	if ss.sessionID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	c.adminDo(ctx, http.MethodDelete, "/admin/sessions/"+url.PathEscape(ss.sessionID), nil, nil, http.StatusNoContent, http.StatusNotFound)
	ss.sessionID = ""
}

// submit posts body (with the flow's CSRF token) to the settings flow and
// requires it to succeed.
func (ss *settingsSession) submit(ctx context.Context, c *Connector, body map[string]any) error {
	if tok, ok := ss.flow.value("csrf_token"); ok {
		body["csrf_token"] = tok
	}
	var f Flow
	_, raw, err := c.publicDo(ctx, ss.hc, http.MethodPost, "/self-service/settings?flow="+url.QueryEscape(ss.flow.ID), body, &f, http.StatusOK)
	if err != nil {
		return err
	}
	if f.State != "success" {
		return &idp.RefusedError{Provider: c.name, Status: http.StatusOK,
			Err: fmt.Errorf("settings flow ended in state %q: %s", f.State, kratosMessage(raw))}
	}
	return nil
}

// publicKeyCreation is PublicKeyCredentialCreationOptions (WebAuthn L3
// §5.4) as go-webauthn encodes it: binary members base64url.
type publicKeyCreation struct {
	RP struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"rp"`
	User struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		DisplayName string `json:"displayName"`
	} `json:"user"`
	Challenge          string `json:"challenge"`
	Timeout            int64  `json:"timeout"`
	ExcludeCredentials []struct {
		ID string `json:"id"`
	} `json:"excludeCredentials"`
	AuthenticatorSelection struct {
		ResidentKey        string `json:"residentKey"`
		RequireResidentKey *bool  `json:"requireResidentKey"`
		UserVerification   string `json:"userVerification"`
	} `json:"authenticatorSelection"`
	Attestation string `json:"attestation"`
}

// creationOptions reads the settings flow's passkey_create_data node.
func (ss *settingsSession) creationOptions(c *Connector) (*idp.CreationOptions, error) {
	data, ok := ss.flow.value("passkey_create_data")
	if !ok {
		return nil, &idp.RefusedError{Provider: c.name, Code: "passkey_disabled",
			Hint: "Kratos offers no passkey registration: enable selfservice.methods.passkey in its configuration, with rp.id set to the organisation's rp id",
			Err:  errors.New("the settings flow has no passkey_create_data node")}
	}
	// Kratos v1.3 puts the CredentialCreation ({"publicKey": …}) in the
	// node; later versions wrap it as {"credentialOptions": {"publicKey": …}}.
	var d struct {
		PublicKey         *publicKeyCreation `json:"publicKey"`
		CredentialOptions struct {
			PublicKey *publicKeyCreation `json:"publicKey"`
		} `json:"credentialOptions"`
	}
	if err := json.Unmarshal([]byte(data), &d); err != nil {
		return nil, fmt.Errorf("kratos %q: passkey creation options: %w", c.name, err)
	}
	pk := d.PublicKey
	if pk == nil {
		pk = d.CredentialOptions.PublicKey
	}
	if pk == nil {
		return nil, fmt.Errorf("kratos %q: passkey creation options: no publicKey member", c.name)
	}
	o := &idp.CreationOptions{
		RPID: pk.RP.ID, RPName: pk.RP.Name, UserName: pk.User.Name, UserDisplayName: pk.User.DisplayName,
		ResidentKey: pk.AuthenticatorSelection.ResidentKey, UserVerification: pk.AuthenticatorSelection.UserVerification,
		Attestation: pk.Attestation, Timeout: time.Duration(pk.Timeout) * time.Millisecond, Raw: []byte(data),
	}
	if o.ResidentKey == "" && pk.AuthenticatorSelection.RequireResidentKey != nil && *pk.AuthenticatorSelection.RequireResidentKey {
		o.ResidentKey = "required"
	}
	var err error
	if o.UserID, err = b64url(pk.User.ID); err != nil {
		return nil, fmt.Errorf("kratos %q: passkey creation options: user id: %w", c.name, err)
	}
	if o.Challenge, err = b64url(pk.Challenge); err != nil || len(o.Challenge) == 0 {
		return nil, fmt.Errorf("kratos %q: passkey creation options: challenge: %v", c.name, err)
	}
	for _, ex := range pk.ExcludeCredentials {
		id, err := b64url(ex.ID)
		if err != nil {
			return nil, fmt.Errorf("kratos %q: passkey creation options: excluded credential: %w", c.name, err)
		}
		o.ExcludeCredentials = append(o.ExcludeCredentials, id)
	}
	return o, nil
}

// b64url decodes base64url with or without padding.
func b64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
