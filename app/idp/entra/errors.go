package entra

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keydesk/keydesk/app/idp"
)

type op string

const (
	opOptions  op = "getting passkey creation options"
	opRegister op = "registering the passkey"
	opDelete   op = "deleting the passkey"
	opList     op = "listing passkeys"
	opToken    op = "signing in to entra"
)

// GraphError is a Microsoft Graph error response as it came: the HTTP
// status, the error resource's code and message (Graph's JSON error
// format: {"error": {"code", "message", "innerError": {"request-id",
// "client-request-id", "date"}}}), and the whole body, so nothing is lost
// when it is logged or queued.
type GraphError struct {
	Op        string
	Status    int
	Code      string
	Message   string
	RequestID string
	// ClientRequestID is the id the connector sent in client-request-id,
	// which Microsoft support can trace.
	ClientRequestID string
	Body            []byte
}

func (e *GraphError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: http %d", e.Op, e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request-id " + e.RequestID + ")")
	} else if e.ClientRequestID != "" {
		b.WriteString(" (client-request-id " + e.ClientRequestID + ")")
	}
	return b.String()
}

func parseGraphError(o op, status int, h http.Header, body []byte) *GraphError {
	e := &GraphError{Op: string(o), Status: status, Body: body, RequestID: h.Get("request-id"), ClientRequestID: h.Get("client-request-id")}
	var g struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError struct {
				RequestID string `json:"request-id"`
			} `json:"innerError"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &g) == nil {
		e.Code, e.Message = g.Error.Code, g.Error.Message
		if g.Error.InnerError.RequestID != "" {
			e.RequestID = g.Error.InnerError.RequestID
		}
	} else if len(body) > 0 && len(body) < 300 {
		e.Message = strings.TrimSpace(string(body))
	}
	return e
}

// Plain-language hints, kept apart from the error text.
const (
	HintSelfService = "Entra refuses to provision passkeys for users while \"Allow self-service setup\" is off. " +
		"In the Entra admin center open Protection > Authentication methods > Policies > Passkey (FIDO2), " +
		"turn on \"Allow self-service setup\" under Configure, save, and enrol again."
	HintForbidden = "Entra refused the desk's access. The app registration needs the Microsoft Graph permission " +
		"UserAuthMethod-Passkey.ReadWrite.All with admin consent; a signed-in admin also needs the " +
		"Authentication Administrator or Privileged Authentication Administrator role. If those are in place, " +
		"check that the Passkey (FIDO2) policy is enabled for this user with \"Allow self-service setup\" on."
	HintPolicy = "Entra's Passkey (FIDO2) authentication-method policy refuses this key: check the policy is enabled " +
		"and targets this user, that \"Allow self-service setup\" is on, and that its key restrictions allow this key model."
	HintUserNotFound = "Entra has no such user. Check the user's object id or user principal name in the desk " +
		"against the Entra admin center."
	HintBadAttestation = "Entra did not accept the key's credential (its attestation or the challenge). " +
		"The challenge lasts 5 minutes: enrol again. If it keeps failing, check the passkey policy's " +
		"attestation and key restrictions (AAGUIDs) allow this key model."
	HintBadRequest  = "Entra rejected the request as malformed; the details are in the error."
	HintThrottled   = "Entra is busy or throttling the desk; the write is kept and retried."
	HintSignIn      = "Signing in to Entra failed: check the tenant id, the client id and the secret or certificate in the keyring."
	HintUnavailable = "Entra could not be reached; the write is kept and retried."
)

// isSelfServicePolicy recognises Entra's known refusal when the
// passkey (FIDO2) policy's "Allow self-service setup"
// (isSelfServiceRegistrationAllowed) is off. Microsoft documents the
// requirement as a known issue of creationOptions and POST fido2Methods but
// not the exact body, so it is matched on the policy's names in the error.
func isSelfServicePolicy(e *GraphError) bool {
	t := strings.ToLower(e.Code + " " + e.Message + " " + string(e.Body))
	for _, s := range []string{"self-service", "selfservice", "self service", "isselfserviceregistrationallowed"} {
		if strings.Contains(t, s) {
			return true
		}
	}
	return false
}

// isPasskeyPolicy recognises another refusal by the passkey (FIDO2)
// policy: an error naming a policy and FIDO2 or passkeys.
func isPasskeyPolicy(e *GraphError) bool {
	t := strings.ToLower(e.Code + " " + e.Message)
	return strings.Contains(t, "polic") && (strings.Contains(t, "fido") || strings.Contains(t, "passkey"))
}

// classify turns a failed Graph answer into the connector's error
// contract: *idp.TemporaryError for 429 and 5xx (with Retry-After),
// *idp.RefusedError with a hint for the rest. The GraphError stays in
// the chain.
func (c *Connector) classify(o op, resp *http.Response, body []byte) error {
	ge := parseGraphError(o, resp.StatusCode, resp.Header, body)
	if ge.ClientRequestID == "" {
		ge.ClientRequestID = resp.Request.Header.Get("client-request-id")
	}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests || s >= 500:
		return &idp.TemporaryError{Provider: c.name, Status: s, RetryAfter: retryAfter(resp.Header, time.Now()), Err: ge}
	case s == http.StatusNotFound:
		return &idp.RefusedError{Provider: c.name, Status: s, Code: ge.Code, Hint: HintUserNotFound,
			Err: fmt.Errorf("%w: %w", idp.ErrUserNotFound, ge)}
	case s == http.StatusForbidden && isSelfServicePolicy(ge):
		return &idp.RefusedError{Provider: c.name, Status: s, Code: ge.Code, Hint: HintSelfService, Err: ge}
	case s == http.StatusBadRequest && isSelfServicePolicy(ge):
		return &idp.RefusedError{Provider: c.name, Status: s, Code: ge.Code, Hint: HintSelfService, Err: ge}
	case (s == http.StatusForbidden || s == http.StatusBadRequest) && isPasskeyPolicy(ge):
		return &idp.RefusedError{Provider: c.name, Status: s, Code: ge.Code, Hint: HintPolicy, Err: ge}
	case s == http.StatusForbidden:
		return &idp.RefusedError{Provider: c.name, Status: s, Code: ge.Code, Hint: HintForbidden, Err: ge}
	case s == http.StatusUnauthorized:
		return &idp.RefusedError{Provider: c.name, Status: s, Code: ge.Code, Hint: HintSignIn, Err: ge}
	case s == http.StatusBadRequest && o == opRegister:
		return &idp.RefusedError{Provider: c.name, Status: s, Code: ge.Code, Hint: HintBadAttestation, Err: ge}
	default:
		return &idp.RefusedError{Provider: c.name, Status: s, Code: ge.Code, Hint: HintBadRequest, Err: ge}
	}
}

// retryAfter reads Retry-After, delay-seconds or an HTTP date (RFC 9110
// §10.2.3); zero when absent or unreadable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// maxBody bounds what is read from Graph or the token endpoint.
const maxBody = 4 << 20

// call makes one Graph request with a bearer token and returns the body of
// a 2xx answer. A 404 on DELETE is success: the method is already gone.
// A 401 drops the cached token and retries once.
func (c *Connector) call(ctx context.Context, o op, method, path string, body []byte) ([]byte, error) {
	u := path
	if !strings.HasPrefix(path, "https://") && !strings.HasPrefix(path, "http://") {
		u = c.graphURL + path
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.tokens.token(ctx)
		if err != nil {
			return nil, err
		}
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return nil, fmt.Errorf("entra %s: %w", o, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		// Graph echoes it and logs it (Microsoft Graph's client-request-id header).
		req.Header.Set("client-request-id", uuid.NewString())
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("entra %s: %w", o, ctx.Err())
			}
			return nil, &idp.TemporaryError{Provider: c.name, Err: fmt.Errorf("%s: %w", o, err)}
		}
		rb, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		if err != nil {
			return nil, &idp.TemporaryError{Provider: c.name, Status: resp.StatusCode, Err: fmt.Errorf("%s: reading the answer: %w", o, err)}
		}
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			return rb, nil
		case resp.StatusCode == http.StatusNotFound && o == opDelete:
			return nil, nil
		case resp.StatusCode == http.StatusUnauthorized && attempt == 0:
			c.tokens.drop(tok)
			continue
		}
		return nil, c.classify(o, resp, rb)
	}
}

// Hint is the plain-language hint for an error from this connector, or "".
func Hint(err error) string {
	var re *idp.RefusedError
	if errors.As(err, &re) {
		return re.Hint
	}
	var te *idp.TemporaryError
	if errors.As(err, &te) {
		if te.Status == 0 {
			return HintUnavailable
		}
		return HintThrottled
	}
	return ""
}
