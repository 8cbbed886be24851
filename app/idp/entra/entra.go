// Package entra is the Microsoft Entra ID connector: it registers a key's
// FIDO2 credential as a passkey (fido2AuthenticationMethod) of a user
// through Microsoft Graph v1.0, on the user's behalf.
//
// The ceremony is the one Graph documents for provisioning passkeys
// (learn.microsoft.com/graph/api/fido2authenticationmethod-creationoptions
// and .../authentication-post-fido2methods):
//
//	GET    /users/{id}/authentication/fido2Methods/creationOptions
//	       (the desk makes the credential on the key with exactly these options)
//	POST   /users/{id}/authentication/fido2Methods
//	GET    /users/{id}/authentication/fido2Methods
//	DELETE /users/{id}/authentication/fido2Methods/{methodId}
//
// The least-privileged Graph permission is UserAuthMethod-Passkey.ReadWrite.All
// (application, or delegated to an Authentication Administrator). The
// listing never returns the credential id, so the caller records the method
// id Register returns beside the credential id and the key's serial.
package entra

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/keydesk/keydesk/app/idp"
)

// Kind is the connector kind in idp.Config.
const Kind = "entra"

// Default endpoints of Microsoft's global cloud.
const (
	DefaultGraphURL = "https://graph.microsoft.com/v1.0"
	DefaultLoginURL = "https://login.microsoftonline.com"
	// DefaultOrigin is the WebAuthn origin written into clientDataJSON.
	// Entra's relying party id for passkeys is login.microsoft.com and its
	// sign-in page's origin is https://login.microsoft.com; tools that
	// provision Entra passkeys from outside a browser write the same
	// (DSInternals.Passkeys, through MichaelGrafnetter/webauthn-interop,
	// whose client-data test vector uses this origin).
	DefaultOrigin = "https://login.microsoft.com"
	// GraphScope is the client-credentials scope: the application
	// permissions granted to the app registration.
	GraphScope = "https://graph.microsoft.com/.default"
	// DelegatedScope is the device-code scope: the least-privileged
	// delegated permission for passkey methods.
	DelegatedScope = "https://graph.microsoft.com/UserAuthMethod-Passkey.ReadWrite.All"
)

// Auth modes.
const (
	AuthSecret      = "client-secret"
	AuthCertificate = "certificate"
	AuthDeviceCode  = "device-code"
)

// Settings are the connector's settings as idp.Config.Settings keeps them.
// Secrets are never here: SecretName and CertificateName name entries of
// the OS keyring (idp.Secrets).
type Settings struct {
	TenantID string `json:"tenant_id"`
	ClientID string `json:"client_id"`
	// Auth is AuthSecret, AuthCertificate or AuthDeviceCode.
	Auth string `json:"auth"`
	// SecretName names the client secret (AuthSecret); default
	// "entra/<name>/client-secret".
	SecretName string `json:"secret_name,omitempty"`
	// CertificateName names a PEM holding the app registration's
	// certificate and its RSA private key (AuthCertificate); default
	// "entra/<name>/certificate".
	CertificateName string `json:"certificate_name,omitempty"`
	// GraphURL, LoginURL and Origin override the defaults (for national
	// clouds, or a test server).
	GraphURL string `json:"graph_url,omitempty"`
	LoginURL string `json:"login_url,omitempty"`
	Origin   string `json:"origin,omitempty"`
}

// DeviceCode is what a delegated admin is shown to sign in with the
// device-code flow (RFC 8628 §3.3).
type DeviceCode struct {
	UserCode        string
	VerificationURI string
	// Message is Entra's own instruction, in the admin's language.
	Message   string
	ExpiresIn time.Duration
}

// DevicePrompter shows a device code to the admin. Library code never
// prints: a Secrets value that also implements DevicePrompter is used by
// Open, or pass one to New.
type DevicePrompter interface {
	ShowDeviceCode(ctx context.Context, dc DeviceCode) error
}

// Connector is the Entra ID connector.
type Connector struct {
	name     string
	set      Settings
	secrets  idp.Secrets
	prompt   DevicePrompter
	http     *http.Client
	tokens   *tokenSource
	graphURL string
}

func init() {
	idp.RegisterKind(Kind, func(cfg idp.Config, s idp.Secrets) (idp.Connector, error) {
		set, err := idp.ReadSettings[Settings](idp.SettingsReader{Kind: Kind, Name: cfg.Name, Strict: true}, cfg.Settings)
		if err != nil {
			return nil, err
		}
		p, _ := s.(DevicePrompter)
		return New(cfg.Name, set, s, p, nil)
	})
}

// New makes a connector. prompt is needed for AuthDeviceCode only; client
// nil means a client with a 60 s timeout.
func New(name string, set Settings, s idp.Secrets, prompt DevicePrompter, client *http.Client) (*Connector, error) {
	if name == "" {
		name = Kind
	}
	r := idp.SettingsReader{Kind: Kind, Name: name}
	if err := set.check(); err != nil {
		return nil, r.Errorf("%w", err)
	}
	if set.Auth == AuthDeviceCode && prompt == nil {
		return nil, r.Errorf("device-code sign-in needs a prompter to show the code")
	}
	if set.Auth != AuthDeviceCode && s == nil {
		return nil, r.Errorf("%s sign-in needs the keyring", set.Auth)
	}
	if client == nil {
		client = &http.Client{Timeout: 60 * time.Second}
	}
	if set.SecretName == "" {
		set.SecretName = "entra/" + name + "/client-secret"
	}
	if set.CertificateName == "" {
		set.CertificateName = "entra/" + name + "/certificate"
	}
	c := &Connector{name: name, set: set, secrets: s, prompt: prompt, http: client,
		graphURL: strings.TrimSuffix(orDefault(set.GraphURL, DefaultGraphURL), "/")}
	c.tokens = &tokenSource{c: c, loginURL: strings.TrimSuffix(orDefault(set.LoginURL, DefaultLoginURL), "/")}
	return c, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (s Settings) check() error {
	if s.TenantID == "" || s.ClientID == "" {
		return errors.New("tenant_id and client_id are required")
	}
	if strings.ContainsAny(s.TenantID, "/?#") {
		return fmt.Errorf("tenant_id %q is not a tenant id or domain", s.TenantID)
	}
	switch s.Auth {
	case AuthSecret, AuthCertificate, AuthDeviceCode:
	default:
		return fmt.Errorf("auth %q must be %s, %s or %s", s.Auth, AuthSecret, AuthCertificate, AuthDeviceCode)
	}
	for _, u := range []string{s.GraphURL, s.LoginURL, s.Origin} {
		if u == "" {
			continue
		}
		if _, err := idp.BaseURL(u); err != nil {
			return fmt.Errorf("%q is not an http(s) url", u)
		}
	}
	return nil
}

// Name is the configured provider name.
func (c *Connector) Name() string { return c.name }

// Origin is the WebAuthn origin the credential's clientDataJSON must carry.
func (c *Connector) Origin() string { return orDefault(c.set.Origin, DefaultOrigin) }

// userPath is /users/{id}: the Entra object id, else the UPN (email).
func (c *Connector) userPath(u idp.User) (string, error) {
	id := u.ProviderUserID
	if id == "" {
		id = u.Email
	}
	if id == "" {
		id = u.ExternalID
	}
	if id == "" {
		return "", errors.New("the user has no entra object id, user principal name or email")
	}
	return "/users/" + url.PathEscape(id) + "/authentication/fido2Methods", nil
}

// Options fetches creation options for u (GET .../creationOptions).
func (c *Connector) Options(ctx context.Context, u idp.User) (*idp.CreationOptions, error) {
	p, err := c.userPath(u)
	if err != nil {
		return nil, fmt.Errorf("entra creation options: %w", err)
	}
	body, err := c.call(ctx, opOptions, http.MethodGet, p+"/creationOptions", nil)
	if err != nil {
		return nil, err
	}
	o, err := parseCreationOptions(body)
	if err != nil {
		return nil, fmt.Errorf("entra creation options: %w", err)
	}
	o.HMACSecret, o.Origin = hmacCreateSecret(o), c.Origin()
	return o, nil
}

// registerBody is the fido2AuthenticationMethod a POST creates; binary
// members are base64url without padding, as creationOptions hands them out.
type registerBody struct {
	DisplayName         string              `json:"displayName,omitempty"`
	PublicKeyCredential publicKeyCredential `json:"publicKeyCredential"`
}

type publicKeyCredential struct {
	ID                     string              `json:"id"`
	Response               attestationResponse `json:"response"`
	ClientExtensionResults map[string]any      `json:"clientExtensionResults"`
}

type attestationResponse struct {
	ClientDataJSON    string `json:"clientDataJSON"`
	AttestationObject string `json:"attestationObject"`
}

var b64 = base64.RawURLEncoding

// RegisterBody is the JSON Register posts for cred, made for opts: the
// client extension results are the ones a browser reports for the
// extensions opts asked for — hmacCreateSecret with whether the key made
// the secret (CTAP 2.1 §12.5); credProtect has no client output (§12.1).
func RegisterBody(opts *idp.CreationOptions, cred idp.Credential) ([]byte, error) {
	if len(cred.ID) == 0 || len(cred.ClientDataJSON) == 0 || len(cred.AttestationObject) == 0 {
		return nil, errors.New("the credential lacks its id, client data or attestation object")
	}
	results := map[string]any{}
	if opts != nil && hmacCreateSecret(opts) {
		ext, err := authenticatorExtensions(cred.AttestationObject)
		if err != nil {
			return nil, err
		}
		made := false
		if raw, ok := ext["hmac-secret"]; ok {
			_ = cbor.Unmarshal(raw, &made)
		}
		results["hmacCreateSecret"] = made
	}
	rb := registerBody{DisplayName: cred.DisplayName, PublicKeyCredential: publicKeyCredential{
		ID: b64.EncodeToString(cred.ID),
		Response: attestationResponse{
			ClientDataJSON:    b64.EncodeToString(cred.ClientDataJSON),
			AttestationObject: b64.EncodeToString(cred.AttestationObject),
		},
		ClientExtensionResults: results,
	}}
	return json.Marshal(rb)
}

// Register posts the credential (POST .../fido2Methods) and returns the new
// method's id.
func (c *Connector) Register(ctx context.Context, u idp.User, opts *idp.CreationOptions, cred idp.Credential) (string, error) {
	p, err := c.userPath(u)
	if err != nil {
		return "", fmt.Errorf("entra register: %w", err)
	}
	body, err := RegisterBody(opts, cred)
	if err != nil {
		return "", fmt.Errorf("entra register: %w", err)
	}
	resp, err := c.call(ctx, opRegister, http.MethodPost, p, body)
	if err != nil {
		return "", err
	}
	var m method
	if err := json.Unmarshal(resp, &m); err != nil {
		return "", fmt.Errorf("entra register: the answer: %w", err)
	}
	if m.ID == "" {
		return "", errors.New("entra register: the answer carries no method id")
	}
	return m.ID, nil
}

// Delete removes a method (DELETE .../fido2Methods/{id}); one already gone
// (404) is not an error.
func (c *Connector) Delete(ctx context.Context, u idp.User, methodID string) error {
	p, err := c.userPath(u)
	if err != nil {
		return fmt.Errorf("entra delete: %w", err)
	}
	if methodID == "" {
		return errors.New("entra delete: no method id")
	}
	_, err = c.call(ctx, opDelete, http.MethodDelete, p+"/"+url.PathEscape(methodID), nil)
	return err
}

// method is a fido2AuthenticationMethod as Graph returns it.
type method struct {
	ID              string    `json:"id"`
	DisplayName     string    `json:"displayName"`
	AAGUID          string    `json:"aaGuid"`
	Model           string    `json:"model"`
	CreatedDateTime time.Time `json:"createdDateTime"`
}

// List returns u's FIDO2 methods (GET .../fido2Methods), following
// @odata.nextLink.
func (c *Connector) List(ctx context.Context, u idp.User) ([]idp.Method, error) {
	p, err := c.userPath(u)
	if err != nil {
		return nil, fmt.Errorf("entra list: %w", err)
	}
	var out []idp.Method
	next := p
	for page := 0; next != ""; page++ {
		if page == 100 {
			return nil, errors.New("entra list: more than 100 pages")
		}
		body, err := c.call(ctx, opList, http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		var l struct {
			Value    []method `json:"value"`
			NextLink string   `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(body, &l); err != nil {
			return nil, fmt.Errorf("entra list: the answer: %w", err)
		}
		for _, m := range l.Value {
			out = append(out, idp.Method{ID: m.ID, DisplayName: m.DisplayName, AAGUID: m.AAGUID, Created: m.CreatedDateTime})
		}
		next = l.NextLink
		if next != "" && !strings.HasPrefix(next, c.graphURL+"/") {
			// The bearer token goes only to the configured Graph.
			return nil, fmt.Errorf("entra list: next page %q is not on %s", next, c.graphURL)
		}
	}
	return out, nil
}

var _ idp.Connector = (*Connector)(nil)
