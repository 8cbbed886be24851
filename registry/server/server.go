// Package server is the registry's HTTP/JSON API v1 (documented in
// registry/api/openapi.json): bearer-token auth with roles, idempotent
// writes, optimistic concurrency, server-side signature checks, the change
// feed and the validity view.
package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/attest"
	"github.com/keydesk/keydesk/registry/audit"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// Role is what a token may do.
type Role string

const (
	Admin    Role = "admin"
	Helpdesk Role = "helpdesk"
	Self     Role = "self" // a user acting on their own record and keys only
)

// ValidRole reports whether r is a defined role.
func ValidRole(r string) bool {
	return r == string(Admin) || r == string(Helpdesk) || r == string(Self) || r == string(AuthServer)
}

// MaxBody is the largest request body accepted.
const MaxBody = 1 << 20

// Options configure a Server.
type Options struct {
	ChallengeTTL time.Duration // default 2 minutes
	// AuthFailures failed authentications from one address within
	// AuthWindow lock that address out until the window ends.
	AuthFailures int           // default 20
	AuthWindow   time.Duration // default 1 minute
	// AuditKey checks checkpoints for GET /v1/audit/verify.
	AuditKey ed25519.PublicKey
	// Witness holds the signed head outside the database, checked by
	// GET /v1/audit/verify; none when nil.
	Witness *audit.Witness
	// TokenCacheTTL is how long an authenticated token is remembered
	// (default 5 s; negative disables the cache). A token revoked by
	// another process stops working within this time.
	TokenCacheTTL time.Duration
	// IdempotencyTTL is how long a write's idempotency key and stored
	// response are kept (default 7 days); the janitor deletes older ones.
	IdempotencyTTL time.Duration
	// Roots are the attestation trust anchors; attest.Yubico() when nil.
	Roots *attest.Roots
	// Now is the clock (tests inject one); time.Now when nil.
	Now func() time.Time
	// SignalRate lockout signals a second per token (default 50), with
	// bursts up to SignalBurst (default 500).
	SignalRate  float64
	SignalBurst int
	// Log receives one record for every 5xx answer, failed
	// authentication, address lockout and lockout signal (never a token,
	// pass, PIN or request body); nothing is logged when nil.
	Log *slog.Logger
}

// Server serves the API over a store.
type Server struct {
	st      *sqlstore.Store
	opt     Options
	roots   *attest.Roots
	tokens  *tokenCache
	chk     challengeKeys
	mux     *http.ServeMux
	routes  []Route
	limitMu sync.Mutex
	fails   map[string]*failWindow
	signals signalLimiter
	mdsc    mdsCache
	log     *slog.Logger
}

type failWindow struct {
	start time.Time
	n     int
}

// Route describes one endpoint: who may call it and what it does.
type Route struct {
	Method, Pattern string
	Roles           []Role // roles allowed; Self additionally passes the ownership check
	Public          bool
	MaxBody         int64 // largest request body; the package's MaxBody when 0
	handle          func(*request) (int, any, error)
}

// New builds a server over st.
func New(st *sqlstore.Store, opt Options) *Server {
	if opt.ChallengeTTL == 0 {
		opt.ChallengeTTL = 2 * time.Minute
	}
	if opt.AuthFailures == 0 {
		opt.AuthFailures = 20
	}
	if opt.AuthWindow == 0 {
		opt.AuthWindow = time.Minute
	}
	if opt.SignalRate == 0 {
		opt.SignalRate = 50
	}
	if opt.SignalBurst == 0 {
		opt.SignalBurst = 500
	}
	if opt.IdempotencyTTL == 0 {
		opt.IdempotencyTTL = 7 * 24 * time.Hour
	}
	if opt.TokenCacheTTL == 0 {
		opt.TokenCacheTTL = 5 * time.Second
	}
	if opt.Roots == nil {
		opt.Roots = attest.Yubico()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{st: st, opt: opt, roots: opt.Roots, tokens: newTokenCache(opt.TokenCacheTTL), mux: http.NewServeMux(), fails: map[string]*failWindow{}, log: opt.Log}
	all := []Role{Admin, Helpdesk, Self}
	staff := []Role{Admin, Helpdesk}
	admin := []Role{Admin}
	s.routes = []Route{
		{Method: "GET", Pattern: "/v1/health", Public: true, handle: s.health},
		{Method: "GET", Pattern: "/v1/whoami", Roles: []Role{Admin, Helpdesk, Self, AuthServer}, handle: s.whoami},
		{Method: "POST", Pattern: "/v1/users", Roles: admin, handle: s.createUser},
		{Method: "GET", Pattern: "/v1/users", Roles: staff, handle: s.listUsers},
		{Method: "GET", Pattern: "/v1/users/{id}", Roles: all, handle: s.getUser},
		{Method: "PATCH", Pattern: "/v1/users/{id}", Roles: admin, handle: s.patchUser},
		{Method: "GET", Pattern: "/v1/users/{id}/keys", Roles: all, handle: s.userKeys},
		{Method: "POST", Pattern: "/v1/users/{id}/access-passes", Roles: staff, handle: s.createAccessPass},
		{Method: "POST", Pattern: "/v1/enrolments", Roles: staff, handle: s.enrol},
		{Method: "GET", Pattern: "/v1/keys/{id}", Roles: all, handle: s.getKey},
		{Method: "POST", Pattern: "/v1/keys/{id}/status", Roles: all, handle: s.keyStatus},
		{Method: "POST", Pattern: "/v1/keys/{id}/fido2", Roles: staff, handle: s.addFIDO},
		{Method: "POST", Pattern: "/v1/keys/{id}/piv", Roles: staff, handle: s.addPIV},
		{Method: "PUT", Pattern: "/v1/keys/{id}/escrow/{kind}", Roles: staff, handle: s.putEscrow},
		{Method: "GET", Pattern: "/v1/keys/{id}/escrow/{kind}", Roles: staff, handle: s.getEscrow},
		{Method: "POST", Pattern: "/v1/challenges", Roles: all, handle: s.createChallenge},
		{Method: "POST", Pattern: "/v1/verifications", Roles: all, handle: s.verify},
		{Method: "GET", Pattern: "/v1/changes", Roles: []Role{Admin, Helpdesk, AuthServer}, handle: s.changes},
		{Method: "GET", Pattern: "/v1/validity", Roles: []Role{Admin, Helpdesk, AuthServer}, handle: s.validity},
		{Method: "GET", Pattern: "/v1/audit/verify", Roles: admin, handle: s.auditVerify},
		{Method: "GET", Pattern: "/v1/audit", Roles: admin, handle: s.listAudit},
		{Method: "GET", Pattern: "/v1/users/{id}/access-passes", Roles: staff, handle: s.listAccessPasses},
		{Method: "POST", Pattern: "/v1/access-passes/redeem", Roles: all, handle: s.redeemAccessPass},
		{Method: "GET", Pattern: "/v1/users/{id}/coverage", Roles: all, handle: s.coverage},
		{Method: "GET", Pattern: "/v1/tokens", Roles: admin, handle: s.listTokens},
		{Method: "POST", Pattern: "/v1/tokens/{name}/revoke", Roles: admin, handle: s.revokeToken},
	}
	s.routes = append(s.routes, s.migrationRoutes()...)
	s.routes = append(s.routes, s.recoveryRoutes()...)
	s.routes = append(s.routes, s.backupRoutes()...)
	s.routes = append(s.routes, s.inventoryRoutes()...)
	s.routes = append(s.routes, s.idpRoutes()...)
	for i := range s.routes {
		r := s.routes[i]
		s.mux.HandleFunc(r.Method+" "+r.Pattern, func(w http.ResponseWriter, hr *http.Request) { s.serve(w, hr, r) })
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, hr *http.Request) {
		writeJSON(w, http.StatusNotFound, apiError{Code: "no_such_endpoint", Message: "no endpoint " + hr.Method + " " + hr.URL.Path})
	})
	return s
}

// Routes lists every endpoint (the OpenAPI test compares it to the document).
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Current any    `json:"current,omitempty"`
}

// Error is a handler error with an HTTP status and a machine-readable code.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

func fail(status int, code, format string, args ...any) error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

type request struct {
	*http.Request
	w     http.ResponseWriter
	ctx   context.Context
	tok   sqlstore.Token
	role  Role
	route Route
	body  []byte
}

func (s *Server) clientAddr(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

func (s *Server) limited(addr string) bool {
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	f := s.fails[addr]
	if f == nil || s.opt.Now().Sub(f.start) > s.opt.AuthWindow {
		return false
	}
	return f.n >= s.opt.AuthFailures
}

// failedAuth counts a failed authentication from addr and logs it: which
// token (its name, or "unknown" with the first bytes of the SHA-256 of
// what was presented, never the token itself), the address and why. The
// failure that locks the address out is logged as a lockout too.
func (s *Server) failedAuth(r *http.Request, addr, token, reason string) {
	s.limitMu.Lock()
	f := s.fails[addr]
	if now := s.opt.Now(); f == nil || now.Sub(f.start) > s.opt.AuthWindow {
		f = &failWindow{start: now}
		s.fails[addr] = f
	}
	f.n++
	n := f.n
	s.limitMu.Unlock()
	s.log.Warn("authentication failed", "token", token, "remote_addr", addr, "reason", reason, "method", r.Method, "path", r.URL.Path, "failures", n)
	if n == s.opt.AuthFailures {
		s.log.Warn("address locked out", "remote_addr", addr, "failures", n, "window", s.opt.AuthWindow.String())
	}
}

// HashToken is how tokens are stored: SHA-256 of the high-entropy secret.
func HashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

func (s *Server) serve(w http.ResponseWriter, hr *http.Request, rt Route) {
	r := &request{Request: hr, w: w, ctx: hr.Context(), route: rt}
	if !rt.Public {
		addr := s.clientAddr(hr)
		if s.limited(addr) {
			s.log.Debug("request refused: address locked out", "remote_addr", addr, "method", hr.Method, "path", hr.URL.Path)
			w.Header().Set("Retry-After", strconv.Itoa(int(s.opt.AuthWindow.Seconds())))
			writeJSON(w, http.StatusTooManyRequests, apiError{Code: "rate_limited", Message: "too many failed authentications"})
			return
		}
		h := hr.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			s.failedAuth(hr, addr, "unknown", "no bearer token")
			writeJSON(w, http.StatusUnauthorized, apiError{Code: "unauthenticated", Message: "a bearer token is required"})
			return
		}
		th := sha256.Sum256([]byte(tok))
		t, err := s.tokens.lookup(r.ctx, s.st, th, s.opt.Now())
		if err != nil {
			if errors.Is(err, registry.ErrNotFound) {
				s.failedAuth(hr, addr, fmt.Sprintf("unknown (sha256 %x…)", th[:4]), "unknown or revoked token")
				writeJSON(w, http.StatusUnauthorized, apiError{Code: "unauthenticated", Message: "unknown token"})
				return
			}
			s.writeErr(r, err)
			return
		}
		// A self token speaks for its user: while the user is suspended or
		// deleted it authenticates nothing, like an unknown token.
		if Role(t.Role) == Self && t.UserStatus != registry.UserActive {
			s.failedAuth(hr, addr, t.Name, "the token's user is not active")
			writeJSON(w, http.StatusForbidden, apiError{Code: "user_not_active", Message: "this token's user is not active"})
			return
		}
		r.tok, r.role = t, Role(t.Role)
		allowed := false
		for _, ro := range rt.Roles {
			allowed = allowed || ro == r.role
		}
		if !allowed {
			writeJSON(w, http.StatusForbidden, apiError{Code: "forbidden", Message: "role " + t.Role + " may not " + rt.Method + " " + rt.Pattern})
			return
		}
	}
	if hr.Method != http.MethodGet {
		limit := rt.MaxBody
		if limit == 0 {
			limit = MaxBody
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, hr.Body, limit))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, apiError{Code: "body_too_large", Message: fmt.Sprintf("request body over %d bytes", limit)})
			return
		}
		r.body = b
	}
	status, body, err := rt.handle(r)
	if err != nil {
		s.writeErr(r, err)
		return
	}
	if status == 0 { // the handler wrote the response itself
		return
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if raw, ok := v.(json.RawMessage); ok {
		// Already encoded by this server (a write's stored result).
		w.Write(append(raw, '\n'))
		return
	}
	json.NewEncoder(w).Encode(v)
}

func errBody(err error) (int, apiError) {
	err = sqlstore.Classify(err)
	var he *Error
	var ie *registry.InvalidError
	var ce *registry.ConflictError
	var de *registry.DuplicateError
	var te *registry.KeyTransitionError
	switch {
	case errors.As(err, &he):
		return he.Status, apiError{Code: he.Code, Message: he.Message}
	case errors.As(err, &ie):
		return http.StatusUnprocessableEntity, apiError{Code: ie.Code, Message: ie.Message}
	case errors.As(err, &ce):
		return http.StatusConflict, apiError{Code: "version_conflict", Message: ce.Error(), Current: ce.Current}
	case errors.As(err, &de):
		return http.StatusConflict, apiError{Code: "duplicate", Message: de.Error()}
	case errors.As(err, &te):
		if te.By == registry.BySelf {
			return http.StatusForbidden, apiError{Code: "forbidden", Message: te.Error()}
		}
		return http.StatusConflict, apiError{Code: "invalid_transition", Message: te.Error()}
	case errors.Is(err, registry.ErrLastKey):
		return http.StatusConflict, apiError{Code: "last_active_key", Message: "this would take the user's last credential out of the validity view: give a break_glass_reason to proceed"}
	case errors.Is(err, registry.ErrFreshProofRequired):
		return http.StatusConflict, apiError{Code: "proof_required", Message: "this key was lost or revoked and has not passed a verification since: verify it again (POST /v1/verifications); no break_glass_reason stands in for that"}
	case errors.Is(err, registry.ErrProofRequired):
		return http.StatusConflict, apiError{Code: "proof_required", Message: "this key has never passed a verification: verify it (POST /v1/verifications), or an admin gives a break_glass_reason"}
	case errors.Is(err, registry.ErrUserNotActive):
		return http.StatusConflict, apiError{Code: "user_not_active", Message: err.Error()}
	case errors.Is(err, registry.ErrKeyNotInService):
		return http.StatusConflict, apiError{Code: "key_not_in_service", Message: err.Error()}
	case errors.Is(err, registry.ErrEscrowMissing):
		return http.StatusConflict, apiError{Code: "escrow_missing", Message: "this key has PIV slots and no escrow: store its escrow (PUT /v1/keys/{id}/escrow/piv) before activating it, or an admin gives a break_glass_reason"}
	case errors.Is(err, registry.ErrAccessPass):
		return http.StatusConflict, apiError{Code: "access_pass_unusable", Message: err.Error()}
	case errors.Is(err, registry.ErrChallenge):
		return http.StatusConflict, apiError{Code: "challenge_unusable", Message: err.Error()}
	case errors.Is(err, registry.ErrIdempotencyMismatch):
		return http.StatusUnprocessableEntity, apiError{Code: "idempotency_key_reused", Message: err.Error()}
	case errors.Is(err, registry.ErrNotFound):
		return http.StatusNotFound, apiError{Code: "not_found", Message: err.Error()}
	case errors.Is(err, audit.ErrTampered):
		return http.StatusInternalServerError, apiError{Code: "audit_tampered", Message: err.Error() + " (the write was refused: run keydesk-registry audit verify)"}
	case errors.Is(err, registry.ErrStorageFull):
		return http.StatusServiceUnavailable, apiError{Code: "storage_full", Message: "the registry's storage is full: nothing was written; retry once its operator has freed space"}
	case errors.Is(err, registry.ErrReadOnly):
		return http.StatusServiceUnavailable, apiError{Code: "read_only", Message: "the registry's storage is read-only: nothing was written; retry once its operator has made it writable"}
	case errors.Is(err, registry.ErrStorageIO):
		return http.StatusServiceUnavailable, apiError{Code: "storage_error", Message: "the registry's storage failed to read or write: nothing was written; retry later"}
	}
	return http.StatusInternalServerError, apiError{Code: "internal", Message: "internal error"}
}

// StorageRetryAfter is the Retry-After of a 503 for a storage fault: a
// disk freed or remounted by its operator takes minutes, not milliseconds.
const StorageRetryAfter = 30 * time.Second

// writeErr answers err. A 5xx is logged with a request id that the answer
// carries too (X-Request-Id), the route, the code and the cause; never
// the request's body.
func (s *Server) writeErr(r *request, err error) {
	status, body := errBody(err)
	if status >= 500 {
		var id [8]byte
		rand.Read(id[:])
		rid := hex.EncodeToString(id[:])
		r.w.Header().Set("X-Request-Id", rid)
		if status == http.StatusServiceUnavailable {
			r.w.Header().Set("Retry-After", strconv.Itoa(int(StorageRetryAfter.Seconds())))
		}
		s.log.Error("request failed", "request_id", rid, "method", r.Method, "route", r.route.Pattern, "status", status, "code", body.Code, "cause", err.Error(), "remote_addr", s.clientAddr(r.Request), "token", r.tok.Name)
	}
	writeJSON(r.w, status, body)
}

// decode reads the body strictly: one JSON object, no unknown fields.
func (r *request) decode(v any) error {
	d := json.NewDecoder(bytes.NewReader(r.body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fail(http.StatusBadRequest, "wrong_type", "field %s: expected %s", te.Field, te.Type)
		}
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return fail(http.StatusBadRequest, "unknown_field", "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return fail(http.StatusBadRequest, "malformed_json", "request body is not valid JSON: %v", err)
	}
	if d.More() {
		return fail(http.StatusBadRequest, "malformed_json", "trailing data after the JSON object")
	}
	return nil
}

// ifMatch reads the If-Match header as a version ("\"v3\"" or "3").
func (r *request) ifMatch() (int64, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" {
		return 0, fail(http.StatusPreconditionRequired, "if_match_required", "this write needs If-Match with the current ETag")
	}
	h = strings.TrimPrefix(strings.Trim(h, `"`), "v")
	v, err := strconv.ParseInt(h, 10, 64)
	if err != nil {
		return 0, fail(http.StatusBadRequest, "bad_if_match", "If-Match must be an ETag this API returned")
	}
	return v, nil
}

func etag(v int64) string { return `"v` + strconv.FormatInt(v, 10) + `"` }

// write runs fn as one idempotent change set. The Idempotency-Key header is
// required; a replay returns the first response (Idempotency-Replayed: true).
func (s *Server) write(r *request, fn func(*sqlstore.Tx) (int, any, string, error)) (int, any, error) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" || len(key) > 200 {
		return 0, nil, fail(http.StatusBadRequest, "idempotency_key_required", "every write needs an Idempotency-Key header (1-200 characters)")
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", r.Method, r.URL.Path)
	h.Write(r.body)
	idem := &sqlstore.Idempotency{Scope: r.tok.Name, Key: key, RequestHash: h.Sum(nil)}
	actor := string(r.role) + ":" + r.tok.Name
	var stored storedResult
	res, replayed, err := s.st.Write(r.ctx, actor, idem, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
		status, v, tag, err := fn(tx)
		if err != nil {
			return sqlstore.Result{}, err
		}
		stored = storedResult{ETag: tag, Body: mustJSON(v)}
		return sqlstore.Result{Status: status, Body: stored.encode()}, nil
	})
	if err != nil {
		return 0, nil, err
	}
	if replayed {
		stored = storedResult{}
		if err := json.Unmarshal(res.Body, &stored); err != nil {
			return 0, nil, fmt.Errorf("decoding stored result: %w", err)
		}
		r.w.Header().Set("Idempotency-Replayed", "true")
	}
	if stored.ETag != "" {
		r.w.Header().Set("ETag", stored.ETag)
	}
	return res.Status, stored.Body, nil
}

// storedResult is a write's response as its idempotency key keeps it.
type storedResult struct {
	ETag string          `json:"etag,omitempty"`
	Body json.RawMessage `json:"body"`
}

// encode is json.Marshal(r) without a second pass over the body, which
// this server encoded itself.
func (r storedResult) encode() []byte {
	b := make([]byte, 0, len(r.Body)+len(r.ETag)+24)
	b = append(b, '{')
	if r.ETag != "" {
		b = append(b, `"etag":`...)
		b = append(b, mustJSON(r.ETag)...)
		b = append(b, ',')
	}
	b = append(b, `"body":`...)
	b = append(b, r.Body...)
	return append(b, '}')
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// ownsUser reports whether the caller may act on user id.
func (r *request) ownsUser(id string) error {
	if r.role != Self || r.tok.UserID == id {
		return nil
	}
	return fail(http.StatusForbidden, "forbidden", "a self token may act only on its own user")
}

func (s *Server) ownsKey(r *request, keyID string) (registry.Key, error) {
	if r.role != Self && r.route.Method != http.MethodGet {
		return registry.Key{ID: keyID}, nil // staff: the write itself checks the key exists
	}
	k, err := s.st.GetKey(r.ctx, keyID)
	if err != nil {
		if r.role == Self && errors.Is(err, registry.ErrNotFound) {
			return k, fail(http.StatusForbidden, "forbidden", "a self token may act only on its own keys")
		}
		return k, err
	}
	if err := r.ownsUser(k.OwnerID); err != nil {
		return k, fail(http.StatusForbidden, "forbidden", "a self token may act only on its own keys")
	}
	return k, nil
}
