// Package client is the typed client of the registry API v1, with a durable
// outbox: writes queued while the registry is unreachable are kept in a
// local SQLite file and replayed in order, exactly once (each carries its
// own Idempotency-Key), when it is back. Conflicts are reported, never
// overwritten.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/keydesk/keydesk/internal/osdirs"
	"github.com/keydesk/keydesk/registry"
)

// Options configure a Client.
type Options struct {
	// HTTPClient defaults to a client whose requests time out after
	// Timeout.
	HTTPClient *http.Client
	// Timeout bounds each request of the default HTTPClient, from dialling
	// to the last byte of the answer (default 30 s).
	Timeout time.Duration
	// OutboxPath is the outbox's SQLite file; DefaultOutboxPath when empty.
	OutboxPath string
}

// DefaultOutboxPath is keydesk/outbox.db in the user's data directory
// (osdirs.Data): $XDG_DATA_HOME or ~/.local/share on Linux,
// %LOCALAPPDATA% on Windows.
func DefaultOutboxPath() (string, error) {
	d, err := osdirs.Data()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "keydesk", "outbox.db"), nil
}

// Client talks to one registry with one token.
type Client struct {
	base   string
	token  string
	hc     *http.Client
	outbox *outbox
}

// New opens a client and its outbox.
func New(baseURL, token string, opt Options) (*Client, error) {
	if opt.Timeout <= 0 {
		opt.Timeout = 30 * time.Second
	}
	if opt.HTTPClient == nil {
		opt.HTTPClient = &http.Client{Timeout: opt.Timeout}
	}
	if opt.OutboxPath == "" {
		p, err := DefaultOutboxPath()
		if err != nil {
			return nil, err
		}
		opt.OutboxPath = p
	}
	ob, err := openOutbox(opt.OutboxPath)
	if err != nil {
		return nil, err
	}
	return &Client{base: baseURL, token: token, hc: opt.HTTPClient, outbox: ob}, nil
}

// Close closes the outbox.
func (c *Client) Close() error { return c.outbox.close() }

// ErrUnreachable: the registry could not be reached (network error, 5xx,
// rate limited). Queued work stays queued. A TLS failure (a certificate
// the client does not trust, or one for another name) is wrapped too, so
// errors.As finds the *tls.CertificateVerificationError.
var ErrUnreachable = errors.New("registry unreachable")

// ErrBadResponse: something answered that is not the registry speaking its
// API: an answer over MaxResponse bytes, a success that is not JSON, or a
// refusal without the registry's JSON error. Queued work stays queued.
var ErrBadResponse = errors.New("unusable answer from the registry")

// MaxResponse is the largest answer the client reads. The registry's
// largest, a full page of the change feed, is far smaller.
const MaxResponse = 64 << 20

// UnavailableError is the registry answering 503 because its storage
// takes no writes (codes storage_full, read_only, storage_error): it was
// reached, and nothing was written. errors.Is matches ErrUnreachable, so
// queued work stays queued and callers retry as for an outage, and
// registry.ErrStorageFull, registry.ErrReadOnly or registry.ErrStorageIO.
type UnavailableError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration // from Retry-After; 0 when absent
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("registry: %d %s: %s", e.Status, e.Code, e.Message)
}

// Is lets errors.Is match the registry's storage faults.
func (e *UnavailableError) Is(target error) bool {
	switch target {
	case ErrUnreachable:
		return true
	case registry.ErrStorageFull:
		return e.Code == "storage_full"
	case registry.ErrReadOnly:
		return e.Code == "read_only"
	case registry.ErrStorageIO:
		return e.Code == "storage_error"
	}
	return false
}

// unavailable reads a 503 with one of the storage codes; nil otherwise.
func unavailable(res *http.Response, raw []byte) *UnavailableError {
	if res.StatusCode != http.StatusServiceUnavailable {
		return nil
	}
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return nil
	}
	switch e.Code {
	case "storage_full", "read_only", "storage_error":
	default:
		return nil
	}
	ue := &UnavailableError{Status: res.StatusCode, Code: e.Code, Message: e.Message}
	if n, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && n > 0 {
		ue.RetryAfter = time.Duration(n) * time.Second
	}
	return ue
}

// APIError is a 4xx answer from the registry.
type APIError struct {
	Status  int
	Code    string
	Message string
	// Current is the registry's current state on a version conflict.
	Current json.RawMessage
}

func (e *APIError) Error() string {
	return fmt.Sprintf("registry: %d %s: %s", e.Status, e.Code, e.Message)
}

// Is lets errors.Is match the registry's typed errors.
func (e *APIError) Is(target error) bool {
	switch target {
	case registry.ErrNotFound:
		return e.Code == "not_found"
	case registry.ErrLastKey:
		return e.Code == "last_active_key"
	case registry.ErrProofRequired:
		return e.Code == "proof_required"
	case registry.ErrUserNotActive:
		return e.Code == "user_not_active"
	case registry.ErrKeyNotInService:
		return e.Code == "key_not_in_service"
	case registry.ErrChallenge:
		return e.Code == "challenge_unusable"
	case registry.ErrIdempotencyMismatch:
		return e.Code == "idempotency_key_reused"
	}
	return false
}

// Conflict reports whether the registry refused because of a conflicting
// state (stale version, duplicate, last key).
func (e *APIError) Conflict() bool { return e.Status == http.StatusConflict }

func newKey() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// do sends one request; out receives a 2xx body. Returns the raw body too.
func (c *Client) do(ctx context.Context, method, path string, body []byte, hdr map[string]string, out any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, MaxResponse+1))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: reading response: %w", ErrUnreachable, err)
	}
	if len(raw) > MaxResponse {
		return res.StatusCode, nil, fmt.Errorf("%w: %s %s: status %d with over %d bytes", ErrBadResponse, method, path, res.StatusCode, MaxResponse)
	}
	switch {
	case res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests:
		if ue := unavailable(res, raw); ue != nil {
			return res.StatusCode, raw, ue
		}
		return res.StatusCode, raw, fmt.Errorf("%w: status %d", ErrUnreachable, res.StatusCode)
	case res.StatusCode >= 400:
		var e struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Current json.RawMessage `json:"current"`
		}
		if err := json.Unmarshal(raw, &e); err != nil || e.Code == "" {
			return res.StatusCode, raw, fmt.Errorf("%w: %s %s: status %d without the registry's error body", ErrBadResponse, method, path, res.StatusCode)
		}
		return res.StatusCode, raw, &APIError{Status: res.StatusCode, Code: e.Code, Message: e.Message, Current: e.Current}
	case res.StatusCode < 200 || res.StatusCode >= 300:
		return res.StatusCode, raw, fmt.Errorf("%w: %s %s: status %d", ErrBadResponse, method, path, res.StatusCode)
	}
	if !json.Valid(raw) {
		return res.StatusCode, raw, fmt.Errorf("%w: %s %s: status %d with a body that is not JSON", ErrBadResponse, method, path, res.StatusCode)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return res.StatusCode, raw, fmt.Errorf("%w: decoding %s %s: %w", ErrBadResponse, method, path, err)
		}
	}
	return res.StatusCode, raw, nil
}

func (c *Client) write(ctx context.Context, method, path string, in, out any, hdr map[string]string) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	h := map[string]string{"Idempotency-Key": newKey()}
	for k, v := range hdr {
		h[k] = v
	}
	_, _, err = c.do(ctx, method, path, b, h, out)
	return err
}

// FIDO2Credential is a FIDO2 credential to register.
type FIDO2Credential struct {
	CredentialID      []byte `json:"credential_id"`
	PublicKey         []byte `json:"public_key"` // COSE_Key
	AAGUID            []byte `json:"aaguid,omitempty"`
	RPID              string `json:"rp_id"`
	SignCount         uint32 `json:"sign_count,omitempty"`
	CredProtect       int    `json:"cred_protect,omitempty"`
	AttestationObject []byte `json:"attestation_object,omitempty"`
	// AttestationClientDataJSON is the clientDataJSON the attestation
	// signed (WebAuthn L2 §5.2.1); the registry requires it with an
	// attestation object, checks the attestation with it and keeps it.
	AttestationClientDataJSON []byte `json:"attestation_client_data_json,omitempty"`
}

// PIVSlot is a PIV slot to register.
type PIVSlot struct {
	Slot            string `json:"slot"`
	PublicKey       []byte `json:"public_key"` // PKIX DER
	Certificate     []byte `json:"certificate,omitempty"`
	AttestationCert []byte `json:"attestation_certificate,omitempty"`
	// AttestationIntermediate is the key's F9 device certificate.
	AttestationIntermediate []byte `json:"attestation_intermediate,omitempty"`
}

// EnrolUser names the user of an enrolment (created if new).
type EnrolUser struct {
	ExternalID  string   `json:"external_id"`
	DisplayName string   `json:"display_name,omitempty"`
	Email       string   `json:"email,omitempty"`
	Groups      []string `json:"groups,omitempty"`
}

// EnrolKey describes the enrolled key.
type EnrolKey struct {
	Serial   string   `json:"serial"`
	Model    string   `json:"model,omitempty"`
	Firmware string   `json:"firmware,omitempty"`
	Label    string   `json:"label,omitempty"`
	Role     string   `json:"role,omitempty"`
	Status   string   `json:"status,omitempty"`
	KeySets  []string `json:"key_sets,omitempty"`
}

// Enrolment is a key registration: user, key, credentials, in one change set.
type Enrolment struct {
	User  EnrolUser         `json:"user"`
	Key   EnrolKey          `json:"key"`
	FIDO2 []FIDO2Credential `json:"fido2,omitempty"`
	PIV   []PIVSlot         `json:"piv,omitempty"`
}

// Enrolled is the registry's record of an enrolment.
type Enrolled struct {
	User  registry.User             `json:"user"`
	Key   registry.Key              `json:"key"`
	FIDO2 []registry.FIDOCredential `json:"fido2"`
	PIV   []registry.PIVSlot        `json:"piv"`
}

// Enrol registers e now (no outbox).
func (c *Client) Enrol(ctx context.Context, e Enrolment) (Enrolled, error) {
	var out Enrolled
	return out, c.write(ctx, "POST", "/v1/enrolments", e, &out, nil)
}

// User reads a user.
func (c *Client) User(ctx context.Context, id string) (registry.User, error) {
	var u registry.User
	_, _, err := c.do(ctx, "GET", "/v1/users/"+url.PathEscape(id), nil, nil, &u)
	return u, err
}

// Users reads one page of users after the given id.
func (c *Client) Users(ctx context.Context, after string, limit int) ([]registry.User, string, error) {
	var out struct {
		Users []registry.User `json:"users"`
		Next  string          `json:"next"`
	}
	_, _, err := c.do(ctx, "GET", "/v1/users?after="+url.QueryEscape(after)+"&limit="+strconv.Itoa(limit), nil, nil, &out)
	return out.Users, out.Next, err
}

// EachUser calls f with every user, reading pages of pageSize in the
// registry's order, until f returns false or an error (which EachUser
// returns).
func (c *Client) EachUser(ctx context.Context, pageSize int, f func(registry.User) (bool, error)) error {
	after := ""
	for {
		us, next, err := c.Users(ctx, after, pageSize)
		if err != nil {
			return err
		}
		for _, u := range us {
			if more, err := f(u); err != nil || !more {
				return err
			}
		}
		if next == "" || len(us) == 0 {
			return nil
		}
		after = next
	}
}

// FindUser reads a user by registry id or, failing that, by external id.
// A user neither names is registry.ErrNotFound.
func (c *Client) FindUser(ctx context.Context, id string) (registry.User, error) {
	u, err := c.User(ctx, id)
	if !errors.Is(err, registry.ErrNotFound) {
		return u, err
	}
	var found *registry.User
	err = c.EachUser(ctx, 1000, func(u registry.User) (bool, error) {
		if registry.SameExternalID(u.ExternalID, id) {
			found = &u
		}
		return found == nil, nil
	})
	if err != nil {
		return registry.User{}, err
	}
	if found == nil {
		return registry.User{}, fmt.Errorf("user %q: %w", id, registry.ErrNotFound)
	}
	return *found, nil
}

// UserKeys lists a user's keys.
func (c *Client) UserKeys(ctx context.Context, userID string) ([]registry.Key, error) {
	var out struct {
		Keys []registry.Key `json:"keys"`
	}
	_, _, err := c.do(ctx, "GET", "/v1/users/"+url.PathEscape(userID)+"/keys", nil, nil, &out)
	return out.Keys, err
}

// SetKeyStatus changes a key's status if its version is still version.
func (c *Client) SetKeyStatus(ctx context.Context, keyID string, version int64, status registry.KeyStatus, breakGlass string) (registry.Key, error) {
	var k registry.Key
	err := c.write(ctx, "POST", "/v1/keys/"+url.PathEscape(keyID)+"/status",
		map[string]string{"status": string(status), "break_glass_reason": breakGlass}, &k, map[string]string{"If-Match": etag(version)})
	return k, err
}

func etag(version int64) string { return `"v` + strconv.FormatInt(version, 10) + `"` }

// Key reads a key with its credentials.
func (c *Client) Key(ctx context.Context, id string) (KeyDetail, error) {
	var k KeyDetail
	_, _, err := c.do(ctx, "GET", "/v1/keys/"+url.PathEscape(id), nil, nil, &k)
	return k, err
}

// KeyDetail is a key with its FIDO2 credentials and PIV slots.
type KeyDetail struct {
	registry.Key
	FIDO2 []registry.FIDOCredential `json:"fido2"`
	PIV   []registry.PIVSlot        `json:"piv"`
}

// PutEscrow stores blob (already encrypted) as key keyID's escrow of kind,
// replacing version (0 for a new blob).
func (c *Client) PutEscrow(ctx context.Context, keyID, kind string, blob []byte, version int64) (registry.EscrowBlob, error) {
	var e registry.EscrowBlob
	var hdr map[string]string
	if version > 0 {
		hdr = map[string]string{"If-Match": etag(version)}
	}
	err := c.write(ctx, "PUT", "/v1/keys/"+url.PathEscape(keyID)+"/escrow/"+url.PathEscape(kind), map[string][]byte{"blob": blob}, &e, hdr)
	return e, err
}

// Escrow reads key keyID's escrow blob of kind.
func (c *Client) Escrow(ctx context.Context, keyID, kind string) (registry.EscrowBlob, error) {
	var e registry.EscrowBlob
	_, _, err := c.do(ctx, "GET", "/v1/keys/"+url.PathEscape(keyID)+"/escrow/"+url.PathEscape(kind), nil, nil, &e)
	return e, err
}

// Coverage reads whether a user has an active primary and backup key.
func (c *Client) Coverage(ctx context.Context, userID string) (Coverage, error) {
	var cv Coverage
	_, _, err := c.do(ctx, "GET", "/v1/users/"+url.PathEscape(userID)+"/coverage", nil, nil, &cv)
	return cv, err
}

// Coverage is GET /v1/users/{id}/coverage.
type Coverage struct {
	UserID     string   `json:"user_id"`
	ActiveKeys int      `json:"active_keys"`
	Primary    []string `json:"primary"`
	Backup     []string `json:"backup"`
	Covered    bool     `json:"covered"`
	Missing    []string `json:"missing"`
}

// Changes is one page of the change feed.
type Changes struct {
	Changes []registry.Change `json:"changes"`
	Cursor  string            `json:"cursor"`
	Head    string            `json:"head"`
	More    bool              `json:"more"`
}

// Changes reads whole change sets after cursor ("" or "0" for the start).
func (c *Client) Changes(ctx context.Context, cursor string, limit int) (Changes, error) {
	var out Changes
	if cursor == "" {
		cursor = "0"
	}
	_, _, err := c.do(ctx, "GET", "/v1/changes?after="+url.QueryEscape(cursor)+"&limit="+strconv.Itoa(limit), nil, nil, &out)
	return out, err
}

// Validity reads the validity view (for one user when userID is set).
func (c *Client) Validity(ctx context.Context, userID string) (registry.Validity, error) {
	var v registry.Validity
	p := "/v1/validity"
	if userID != "" {
		p += "?user_id=" + url.QueryEscape(userID)
	}
	_, _, err := c.do(ctx, "GET", p, nil, nil, &v)
	return v, err
}

// AuditReport is GET /v1/audit/verify: whether the registry's audit chain
// and signed checkpoints verify.
type AuditReport struct {
	OK          bool   `json:"ok"`
	Entries     int    `json:"entries"`
	Checkpoints int    `json:"checkpoints"`
	Error       string `json:"error,omitempty"`
	// Pending counts entries committed but not yet chained, so not yet
	// verified (the registry's storage took no writes when it read them).
	Pending int `json:"pending"`
}

// AuditVerify asks the registry to verify its audit log (admin only).
func (c *Client) AuditVerify(ctx context.Context) (AuditReport, error) {
	var r AuditReport
	_, _, err := c.do(ctx, "GET", "/v1/audit/verify", nil, nil, &r)
	return r, err
}

// WhoAmI is GET /v1/whoami: who the client's token speaks for.
type WhoAmI struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	UserID string `json:"user_id"` // the user a self token is bound to
}

// WhoAmI asks the registry whose token the client holds.
func (c *Client) WhoAmI(ctx context.Context) (WhoAmI, error) {
	var w WhoAmI
	_, _, err := c.do(ctx, "GET", "/v1/whoami", nil, nil, &w)
	return w, err
}

// BaseURL is the registry this client talks to.
func (c *Client) BaseURL() string { return c.base }
