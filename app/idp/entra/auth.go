package entra

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/keydesk/keydesk/app/idp"
)

// tokenSource gets and caches an access token from the Microsoft identity
// platform's v2.0 token endpoint ({login}/{tenant}/oauth2/v2.0/token):
// client credentials with a secret or a certificate assertion, or a
// delegated admin's device code. A token is reused until a minute before
// it expires.
type tokenSource struct {
	c        *Connector
	loginURL string
	now      func() time.Time // nil: time.Now

	mu      sync.Mutex
	access  string
	expires time.Time
	refresh string // device code only
}

// skew is how long before its expiry a token is no longer used.
const skew = time.Minute

func (ts *tokenSource) clock() time.Time {
	if ts.now != nil {
		return ts.now()
	}
	return time.Now()
}

func (ts *tokenSource) endpoint(path string) string {
	return ts.loginURL + "/" + url.PathEscape(ts.c.set.TenantID) + "/oauth2/v2.0/" + path
}

// token returns a valid access token, signing in when there is none. The
// lock is held while signing in so concurrent calls sign in once.
func (ts *tokenSource) token(ctx context.Context) (string, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.access != "" && ts.clock().Before(ts.expires.Add(-skew)) {
		return ts.access, nil
	}
	var (
		t   *tokenAnswer
		err error
	)
	switch ts.c.set.Auth {
	case AuthSecret:
		t, err = ts.clientSecret(ctx)
	case AuthCertificate:
		t, err = ts.clientCertificate(ctx)
	case AuthDeviceCode:
		if ts.refresh != "" {
			t, err = ts.post(ctx, url.Values{"grant_type": {"refresh_token"}, "client_id": {ts.c.set.ClientID},
				"refresh_token": {ts.refresh}, "scope": {DelegatedScope + " offline_access"}})
			if err != nil {
				ts.refresh = ""
			}
		}
		if t == nil {
			t, err = ts.deviceCode(ctx)
		}
	}
	if err != nil {
		return "", err
	}
	if t.AccessToken == "" {
		return "", &idp.RefusedError{Provider: ts.c.name, Hint: HintSignIn, Err: fmt.Errorf("%s: the answer carries no access token", opToken)}
	}
	ts.access = t.AccessToken
	ts.expires = ts.clock().Add(time.Duration(t.ExpiresIn) * time.Second)
	if t.RefreshToken != "" {
		ts.refresh = t.RefreshToken
	}
	return ts.access, nil
}

// drop forgets tok if it is the cached token (Graph answered 401).
func (ts *tokenSource) drop(tok string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.access == tok {
		ts.access = ""
	}
}

type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// TokenError is an error answer of the token endpoint (RFC 6749 §5.2),
// with Entra's AADSTS codes.
type TokenError struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
	ErrorCodes  []int  `json:"error_codes"`
	TraceID     string `json:"trace_id"`
	Body        []byte `json:"-"`
}

func (e *TokenError) Error() string {
	s := fmt.Sprintf("%s: http %d %s", opToken, e.Status, e.Code)
	if d, _, _ := strings.Cut(e.Description, "\r\n"); d != "" {
		s += ": " + d
	}
	return s
}

func (ts *tokenSource) clientSecret(ctx context.Context) (*tokenAnswer, error) {
	secret, err := ts.c.secrets.Secret(ts.c.set.SecretName)
	if err != nil {
		return nil, fmt.Errorf("%s: client secret %q from the keyring: %w", opToken, ts.c.set.SecretName, err)
	}
	return ts.post(ctx, url.Values{"grant_type": {"client_credentials"}, "client_id": {ts.c.set.ClientID},
		"client_secret": {secret}, "scope": {GraphScope}})
}

func (ts *tokenSource) clientCertificate(ctx context.Context) (*tokenAnswer, error) {
	p, err := ts.c.secrets.Secret(ts.c.set.CertificateName)
	if err != nil {
		return nil, fmt.Errorf("%s: certificate %q from the keyring: %w", opToken, ts.c.set.CertificateName, err)
	}
	cert, key, err := parseCertificatePEM([]byte(p))
	if err != nil {
		return nil, fmt.Errorf("%s: certificate %q: %w", opToken, ts.c.set.CertificateName, err)
	}
	aud := ts.endpoint("token")
	jwt, err := clientAssertion(cert, key, ts.c.set.ClientID, aud, ts.clock())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", opToken, err)
	}
	return ts.post(ctx, url.Values{"grant_type": {"client_credentials"}, "client_id": {ts.c.set.ClientID},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {jwt}, "scope": {GraphScope}})
}

// parseCertificatePEM finds the certificate and its RSA private key (PKCS#1
// or PKCS#8) in one PEM text.
func parseCertificatePEM(p []byte) (*x509.Certificate, *rsa.PrivateKey, error) {
	var cert *x509.Certificate
	var key *rsa.PrivateKey
	for {
		var b *pem.Block
		b, p = pem.Decode(p)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			if cert == nil {
				c, err := x509.ParseCertificate(b.Bytes)
				if err != nil {
					return nil, nil, err
				}
				cert = c
			}
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
			if err != nil {
				return nil, nil, err
			}
			key = k
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, nil, err
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, nil, errors.New("the private key is not RSA; Entra certificate credentials are RSA")
			}
			key = rk
		}
	}
	if cert == nil || key == nil {
		return nil, nil, errors.New("a CERTIFICATE and an RSA PRIVATE KEY (or PRIVATE KEY) block are both needed")
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, nil, errors.New("the private key does not belong to the certificate")
	}
	return cert, key, nil
}

// clientAssertion is the signed JWT (RFC 7523 §2.2) the Microsoft identity
// platform takes as a certificate credential: header alg PS256 with
// x5t#S256 (and the older SHA-1 x5t) of the certificate; claims aud (the
// token endpoint), iss and sub (the client id), jti, nbf, iat, exp.
func clientAssertion(cert *x509.Certificate, key *rsa.PrivateKey, clientID, aud string, now time.Time) (string, error) {
	s256 := sha256.Sum256(cert.Raw)
	s1 := sha1.Sum(cert.Raw)
	hdr, _ := json.Marshal(map[string]string{"alg": "PS256", "typ": "JWT",
		"x5t#S256": b64.EncodeToString(s256[:]), "x5t": b64.EncodeToString(s1[:])})
	jti := make([]byte, 16)
	if _, err := io.ReadFull(rand.Reader, jti); err != nil {
		return "", err
	}
	claims, _ := json.Marshal(map[string]any{"aud": aud, "iss": clientID, "sub": clientID,
		"jti": b64.EncodeToString(jti), "nbf": now.Unix(), "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()})
	signing := b64.EncodeToString(hdr) + "." + b64.EncodeToString(claims)
	h := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPSS(rand.Reader, key, crypto.SHA256, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil {
		return "", fmt.Errorf("signing the client assertion: %w", err)
	}
	return signing + "." + b64.EncodeToString(sig), nil
}

// deviceCode runs the device authorization grant (RFC 8628) for a
// delegated admin: the code is shown through the prompter, then the token
// endpoint is polled at the interval Entra asks for.
func (ts *tokenSource) deviceCode(ctx context.Context) (*tokenAnswer, error) {
	scope := DelegatedScope + " offline_access"
	body, status, err := ts.form(ctx, ts.endpoint("devicecode"), url.Values{"client_id": {ts.c.set.ClientID}, "scope": {scope}})
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, ts.tokenError(status, body)
	}
	var dc struct {
		DeviceCode      string `json:"device_code"`
		UserCode        string `json:"user_code"`
		VerificationURI string `json:"verification_uri"`
		ExpiresIn       int64  `json:"expires_in"`
		Interval        *int64 `json:"interval"`
		Message         string `json:"message"`
	}
	if err := json.Unmarshal(body, &dc); err != nil || dc.DeviceCode == "" {
		return nil, fmt.Errorf("%s: the device-code answer is unreadable", opToken)
	}
	interval := 5 * time.Second // RFC 8628 §3.2 default
	if dc.Interval != nil {
		interval = time.Duration(*dc.Interval) * time.Second
	}
	if err := ts.c.prompt.ShowDeviceCode(ctx, DeviceCode{UserCode: dc.UserCode, VerificationURI: dc.VerificationURI,
		Message: dc.Message, ExpiresIn: time.Duration(dc.ExpiresIn) * time.Second}); err != nil {
		return nil, fmt.Errorf("%s: showing the device code: %w", opToken, err)
	}
	deadline := ts.clock().Add(time.Duration(dc.ExpiresIn) * time.Second)
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "client_id": {ts.c.set.ClientID}, "device_code": {dc.DeviceCode}}
	for {
		if dc.ExpiresIn > 0 && ts.clock().After(deadline) {
			return nil, &idp.RefusedError{Provider: ts.c.name, Code: "expired_token", Hint: "The sign-in code expired before it was used; try again.",
				Err: fmt.Errorf("%s: the device code expired", opToken)}
		}
		if interval > 0 {
			t := time.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("%s: %w", opToken, ctx.Err())
			case <-t.C:
			}
		}
		body, status, err := ts.form(ctx, ts.endpoint("token"), form)
		if err != nil {
			return nil, err
		}
		if status == http.StatusOK {
			var t tokenAnswer
			if err := json.Unmarshal(body, &t); err != nil {
				return nil, fmt.Errorf("%s: the token answer: %w", opToken, err)
			}
			return &t, nil
		}
		te := ts.tokenError(status, body)
		var e *TokenError
		if errors.As(te, &e) {
			switch e.Code {
			case "authorization_pending": // RFC 8628 §3.5
				continue
			case "slow_down":
				interval += 5 * time.Second
				continue
			}
		}
		return nil, te
	}
}

func (ts *tokenSource) post(ctx context.Context, v url.Values) (*tokenAnswer, error) {
	body, status, err := ts.form(ctx, ts.endpoint("token"), v)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, ts.tokenError(status, body)
	}
	var t tokenAnswer
	if err := json.Unmarshal(body, &t); err != nil {
		return nil, fmt.Errorf("%s: the token answer: %w", opToken, err)
	}
	return &t, nil
}

// form posts a form; a transport failure is temporary.
func (ts *tokenSource) form(ctx context.Context, u string, v url.Values) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(v.Encode()))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", opToken, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := ts.c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, fmt.Errorf("%s: %w", opToken, ctx.Err())
		}
		return nil, 0, &idp.TemporaryError{Provider: ts.c.name, Err: fmt.Errorf("%s: %w", opToken, err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, 0, &idp.TemporaryError{Provider: ts.c.name, Status: resp.StatusCode, Err: fmt.Errorf("%s: reading the answer: %w", opToken, err)}
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return nil, 0, &idp.TemporaryError{Provider: ts.c.name, Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header, time.Now()),
			Err: ts.tokenError(resp.StatusCode, b)}
	}
	return b, resp.StatusCode, nil
}

// tokenError is a refused sign-in with a hint; the TokenError, with the
// whole body, stays in the chain.
func (ts *tokenSource) tokenError(status int, body []byte) error {
	e := &TokenError{Status: status, Body: body}
	_ = json.Unmarshal(body, e)
	if e.Code == "authorization_pending" || e.Code == "slow_down" {
		return e
	}
	return &idp.RefusedError{Provider: ts.c.name, Status: status, Code: e.Code, Hint: signInHint(e), Err: e}
}

// signInHint explains the AADSTS codes an admin meets setting a desk up
// (learn.microsoft.com/entra/identity-platform/reference-error-codes).
func signInHint(e *TokenError) string {
	for _, c := range e.ErrorCodes {
		switch c {
		case 7000215:
			return "Entra rejected the client secret: it is wrong or was replaced. Put the current secret in the keyring."
		case 7000222:
			return "The client secret has expired. Create a new one for the app registration and put it in the keyring."
		case 700027:
			return "Entra rejected the certificate assertion: upload this certificate to the app registration, or check the key matches it."
		case 700016:
			return "Entra has no application with this client id in the tenant. Check the client id and tenant id."
		case 90002, 900023:
			return "Entra has no such tenant. Check the tenant id."
		case 65001:
			return "The app's permission UserAuthMethod-Passkey.ReadWrite.All has no admin consent yet; grant it in the Entra admin center."
		}
	}
	switch e.Code {
	case "authorization_declined":
		return "The admin declined the sign-in."
	case "expired_token":
		return "The sign-in code expired before it was used; try again."
	}
	return HintSignIn
}
