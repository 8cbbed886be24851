package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	_ "modernc.org/sqlite" // registers "sqlite"

	"github.com/keydesk/keydesk/registry/validity"
)

// Config configures a relying party.
type Config struct {
	// RPID and Origins are the WebAuthn relying party id and the origins
	// accepted in clientDataJSON (WebAuthn L2 §5.8.1, §7.2 steps 13–14).
	RPID    string
	Origins []string
	// Dir holds the relying party's state (rp.db: sessions, signature
	// counters, the sign-in log) and the replica's (validity/).
	Dir string
	// Replica configures the validity replica; its Dir is set from Dir.
	Replica validity.Options
	// SessionTTL bounds a login ceremony (default 2 minutes).
	SessionTTL time.Duration
}

// RP is a WebAuthn relying party that accepts a credential only when the
// registry's validity view, as its replica holds it, says the credential is
// valid for the user now, and reports every refused sign-in to the
// registry as a lockout signal.
type RP struct {
	cfg Config
	wa  *webauthn.WebAuthn
	rep *validity.Replica
	db  *sql.DB
	mu  sync.Mutex // serialises writes to db
}

// Open opens the relying party's state and its replica (from disk, without
// contacting the registry; call Run to follow it).
func Open(cfg Config) (*RP, error) {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 2 * time.Minute
	}
	if cfg.RPID == "" || len(cfg.Origins) == 0 || cfg.Dir == "" {
		return nil, errors.New("a relying party needs an rp id, its origins and a state directory")
	}
	wa, err := webauthn.New(&webauthn.Config{RPID: cfg.RPID, RPDisplayName: "keydesk relying party", RPOrigins: cfg.Origins})
	if err != nil {
		return nil, fmt.Errorf("configuring webauthn: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(cfg.Dir, "rp.db")+"?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, fmt.Errorf("opening rp state: %w", err)
	}
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, data BLOB NOT NULL, keys BLOB NOT NULL, expires INTEGER NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS counters (credential_id BLOB PRIMARY KEY, sign_count INTEGER NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS signins (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, user_id TEXT NOT NULL, credential_id BLOB, ok INTEGER NOT NULL, reason TEXT NOT NULL)`,
	} {
		if _, err := db.Exec(q); err != nil {
			db.Close()
			return nil, fmt.Errorf("creating rp state: %w", err)
		}
	}
	ro := cfg.Replica
	ro.Dir = filepath.Join(cfg.Dir, "validity")
	rep, err := validity.Open(ro)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &RP{cfg: cfg, wa: wa, rep: rep, db: db}, nil
}

// Replica is the relying party's validity replica.
func (rp *RP) Replica() *validity.Replica { return rp.rep }

// Run follows the registry until ctx ends.
func (rp *RP) Run(ctx context.Context) error { return rp.rep.Run(ctx) }

// Close writes the replica's snapshot and closes the state.
func (rp *RP) Close() error { return errors.Join(rp.rep.Close(), rp.db.Close()) }

// user is a registry user as go-webauthn sees it: the user handle is the
// external id (what an enrolment gives the key as user.id), the
// credentials are the user's valid FIDO2 credentials for this rp id as the
// replica holds them now, with the signature counters seen here.
type user struct {
	id, external string
	creds        []webauthn.Credential
	keys         map[string]string // hex credential id → key id
}

func (u *user) WebAuthnID() []byte                         { return []byte(u.external) }
func (u *user) WebAuthnName() string                       { return u.external }
func (u *user) WebAuthnDisplayName() string                { return u.external }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func (rp *RP) user(ctx context.Context, userID string) (*user, error) {
	u := &user{id: userID, keys: map[string]string{}}
	for _, c := range rp.rep.Credentials(userID) {
		if c.Kind != "fido2" || c.RPID != rp.cfg.RPID {
			continue
		}
		u.external = c.ExternalID
		var count uint32
		err := rp.db.QueryRowContext(ctx, "SELECT sign_count FROM counters WHERE credential_id = ?", c.CredentialID).Scan(&count)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("reading signature counter: %w", err)
		}
		u.creds = append(u.creds, webauthn.Credential{ID: c.CredentialID, PublicKey: c.PublicKey, Authenticator: webauthn.Authenticator{SignCount: count}})
		u.keys[hex.EncodeToString(c.CredentialID)] = c.KeyID
	}
	return u, nil
}

// Handler serves the relying party's HTTP API and its page:
//
//	GET  /                 a page that signs in with the browser's WebAuthn
//	POST /login/begin      {"user_id"} → {"session", "options"} (options: CredentialRequestOptions as JSON)
//	POST /login/finish     {"session", "credential"} → 200 {"ok": true, …} or 403 {"ok": false, "reason", …}
//	                       {"session", "error"} → 403 {"ok": false, "reason": "authenticator_refused", …}: the
//	                       client's navigator.credentials.get failed (the key refused: wrong PIN, credential
//	                       gone; or the person cancelled)
//	GET  /status           the replica's state
func (rp *RP) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	mux.HandleFunc("POST /login/begin", rp.begin)
	mux.HandleFunc("POST /login/finish", rp.finish)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, rp.rep.Status())
	})
	return mux
}

//go:embed page.html
var page []byte

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (rp *RP) begin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UserID string `json:"user_id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&in); err != nil || in.UserID == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"ok": false, "reason": "bad_request"})
		return
	}
	u, err := rp.user(r.Context(), in.UserID)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"ok": false, "reason": "internal"})
		return
	}
	if len(u.creds) == 0 {
		rp.logSignin(r.Context(), in.UserID, nil, false, "no_valid_credential")
		writeJSON(w, http.StatusForbidden, map[string]any{"ok": false, "reason": "no_valid_credential"})
		return
	}
	opts, sess, err := rp.wa.BeginLogin(u, webauthn.WithUserVerification(protocol.VerificationPreferred))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"ok": false, "reason": "internal"})
		return
	}
	var id [16]byte
	rand.Read(id[:])
	sid := hex.EncodeToString(id[:])
	data, _ := json.Marshal(sess)
	keys, _ := json.Marshal(u.keys)
	now := time.Now()
	rp.mu.Lock()
	// Ceremonies never finished expire here.
	rp.db.ExecContext(r.Context(), "DELETE FROM sessions WHERE expires < ?", now.UnixNano())
	_, err = rp.db.ExecContext(r.Context(), "INSERT INTO sessions (id, user_id, data, keys, expires) VALUES (?, ?, ?, ?, ?)", sid, in.UserID, data, keys, now.Add(rp.cfg.SessionTTL).UnixNano())
	rp.mu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"ok": false, "reason": "internal"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"session": sid, "options": opts})
}

// Outcome is the answer to /login/finish.
type Outcome struct {
	OK       bool   `json:"ok"`
	Reason   string `json:"reason,omitempty"`
	UserID   string `json:"user_id,omitempty"`
	KeyID    string `json:"key_id,omitempty"`
	Degraded bool   `json:"degraded"`
	// AgeMS is the replica's age at the decision, in milliseconds.
	AgeMS int64 `json:"age_ms"`
	// Reported: the refusal was queued as a lockout signal.
	Reported bool `json:"reported,omitempty"`
}

func (rp *RP) finish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var in struct {
		Session    string          `json:"session"`
		Credential json.RawMessage `json:"credential"`
		// Error is the name of the exception navigator.credentials.get
		// threw (WebAuthn L2 §5.1.4.1: "NotAllowedError" when the
		// authenticator refused or the person cancelled), sent instead
		// of a credential.
		Error string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil || in.Session == "" {
		writeJSON(w, http.StatusBadRequest, Outcome{Reason: "bad_request"})
		return
	}
	// A session is used once, whatever the outcome.
	var userID string
	var data, keysJSON []byte
	var expires int64
	rp.mu.Lock()
	err := rp.db.QueryRowContext(ctx, "DELETE FROM sessions WHERE id = ? RETURNING user_id, data, keys, expires", in.Session).Scan(&userID, &data, &keysJSON, &expires)
	rp.mu.Unlock()
	if err != nil || time.Now().UnixNano() > expires {
		writeJSON(w, http.StatusForbidden, Outcome{Reason: "unknown_session"})
		return
	}
	var sess webauthn.SessionData
	var keys map[string]string
	if json.Unmarshal(data, &sess) != nil || json.Unmarshal(keysJSON, &keys) != nil {
		writeJSON(w, http.StatusInternalServerError, Outcome{Reason: "internal"})
		return
	}
	if len(in.Credential) == 0 && in.Error != "" {
		rp.refused(ctx, w, userID, sess, keys)
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(in.Credential)
	if err != nil {
		rp.refuse(ctx, w, userID, nil, "", "malformed_assertion", "failed_signin", validity.Decision{})
		return
	}
	credID := parsed.RawID
	keyID := keys[hex.EncodeToString(credID)]
	// The decision comes first: a credential the replica does not hold as
	// valid for this user now is refused without looking further.
	d := rp.rep.Allowed(userID, credID)
	if !d.Allowed || !d.Known {
		rp.refuse(ctx, w, userID, credID, keyID, "credential_not_valid", "credential_not_recognised", d)
		return
	}
	u, err := rp.user(ctx, userID)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, Outcome{Reason: "internal"})
		return
	}
	// Credentials the replica dropped since the ceremony began leave the
	// allow list (go-webauthn requires the user to own every one).
	allowed := sess.AllowedCredentialIDs[:0]
	for _, id := range sess.AllowedCredentialIDs {
		if _, ok := u.keys[hex.EncodeToString(id)]; ok {
			allowed = append(allowed, id)
		}
	}
	sess.AllowedCredentialIDs = allowed
	cred, err := rp.wa.ValidateLogin(u, sess, parsed)
	if err != nil {
		rp.refuse(ctx, w, userID, credID, keyID, "assertion_rejected", "failed_signin", d)
		return
	}
	rp.mu.Lock()
	_, err = rp.db.ExecContext(ctx, "INSERT INTO counters (credential_id, sign_count) VALUES (?, ?) ON CONFLICT (credential_id) DO UPDATE SET sign_count = excluded.sign_count", cred.ID, cred.Authenticator.SignCount)
	rp.mu.Unlock()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, Outcome{Reason: "internal"})
		return
	}
	if cred.Authenticator.CloneWarning {
		rp.refuse(ctx, w, userID, credID, keyID, "clone_suspected", "failed_signin", d)
		return
	}
	rp.logSignin(ctx, userID, credID, true, "ok")
	writeJSON(w, http.StatusOK, Outcome{OK: true, UserID: userID, KeyID: u.keys[hex.EncodeToString(credID)], Degraded: d.Degraded, AgeMS: d.Age.Milliseconds()})
}

// refused answers a ceremony whose client reports that the authenticator
// gave no assertion. The failure is reported against the key when the
// ceremony offered the credentials of one key only (a user cut over to a
// single new key, say); with several keys offered it cannot be told which
// one the person tried, and it is only logged.
func (rp *RP) refused(ctx context.Context, w http.ResponseWriter, userID string, sess webauthn.SessionData, keys map[string]string) {
	var keyID string
	var credID []byte
	for _, id := range sess.AllowedCredentialIDs {
		k := keys[hex.EncodeToString(id)]
		if keyID != "" && k != keyID {
			keyID, credID = "", nil
			break
		}
		keyID = k
		if credID == nil {
			credID = id
		} else {
			credID = []byte{} // several credentials of one key
		}
	}
	if len(credID) == 0 {
		credID = nil
	}
	rp.refuse(ctx, w, userID, credID, keyID, "authenticator_refused", "failed_signin", validity.Decision{})
}

// refuse answers 403, logs the refusal and queues it as a lockout signal
// when it names a key.
func (rp *RP) refuse(ctx context.Context, w http.ResponseWriter, userID string, credID []byte, keyID, reason, signal string, d validity.Decision) {
	rp.logSignin(ctx, userID, credID, false, reason)
	out := Outcome{Reason: reason, UserID: userID, KeyID: keyID, Degraded: d.Degraded, AgeMS: min(d.Age, 1<<62).Milliseconds()}
	if keyID != "" {
		if err := rp.rep.Report(ctx, validity.Failure{UserID: userID, KeyID: keyID, CredentialID: credID, Reason: signal}); err != nil {
			log.Printf("keydesk-rp: queueing a lockout signal for user %s: %v", userID, err)
		} else {
			out.Reported = true
		}
	}
	writeJSON(w, http.StatusForbidden, out)
}

func (rp *RP) logSignin(ctx context.Context, userID string, credID []byte, ok bool, reason string) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	okInt := 0
	if ok {
		okInt = 1
	}
	if _, err := rp.db.ExecContext(ctx, "INSERT INTO signins (at, user_id, credential_id, ok, reason) VALUES (?, ?, ?, ?, ?)", time.Now().UnixNano(), userID, credID, okInt, reason); err != nil {
		log.Printf("keydesk-rp: logging a sign-in: %v", err)
	}
}
