package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/audit"
)

// Idempotency identifies a write so a replay returns the first result.
type Idempotency struct {
	Scope       string // who sent it (token name); keys are per scope
	Key         string
	RequestHash []byte // SHA-256 of method, path and body
}

// Result is the stored outcome of a write, returned again on replay.
type Result struct {
	Status int
	Body   []byte
}

// Tx is one change set being written. Its methods record a change-feed row
// and an audit entry for every mutation.
type Tx struct {
	ctx     context.Context
	s       *Store
	tx      *sql.Tx
	actor   string
	now     time.Time
	changes []registry.Change
	audits  []audit.Entry
	stmts   map[string]*sql.Stmt

	locked              bool
	changeSeq, auditSeq int64
	auditHash           []byte
}

// Serialize takes the registry's write lock (the head row) now, so that
// checks this transaction makes on several rows (the last-key guard,
// version checks) cannot interleave with another writer. Every change set
// takes it before it appends to the feed and the audit chain and keeps it
// until commit, so change sets commit in sequence order. On SQLite every
// write transaction already holds the database's write lock.
func (t *Tx) Serialize() error {
	if t.locked {
		return nil
	}
	lock := "SELECT change_seq, audit_seq, audit_hash FROM registry_head WHERE id = 1"
	if t.s.dialect == Postgres {
		lock += " FOR UPDATE"
	}
	if err := t.tx.QueryRowContext(t.ctx, lock).Scan(&t.changeSeq, &t.auditSeq, &t.auditHash); err != nil {
		return fmt.Errorf("locking registry head: %w", err)
	}
	t.locked = true
	return nil
}

// Write runs fn in one transaction as actor. With idem set, a second call
// with the same scope and key returns the first call's result and writes
// nothing (replayed is true); the same key with a different request hash is
// registry.ErrIdempotencyMismatch. If fn fails nothing is written.
func (s *Store) Write(ctx context.Context, actor string, idem *Idempotency, fn func(*Tx) (Result, error)) (res Result, replayed bool, err error) {
	sqlTx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Result{}, false, fmt.Errorf("beginning write: %w", err)
	}
	defer func() {
		if err != nil {
			sqlTx.Rollback()
		}
	}()
	if idem != nil {
		var h, body []byte
		var status int
		e := sqlTx.QueryRowContext(ctx, s.Rebind("SELECT request_hash, status, body FROM idempotency WHERE scope = ? AND key = ?"), idem.Scope, idem.Key).Scan(&h, &status, &body)
		switch {
		case e == nil:
			sqlTx.Rollback()
			if !bytes.Equal(h, idem.RequestHash) {
				return Result{}, false, registry.ErrIdempotencyMismatch
			}
			return Result{Status: status, Body: body}, true, nil
		case !errors.Is(e, sql.ErrNoRows):
			err = fmt.Errorf("reading idempotency key: %w", e)
			return Result{}, false, err
		}
	}
	t := &Tx{ctx: ctx, s: s, tx: sqlTx, actor: actor, now: s.now().UTC()}
	res, err = fn(t)
	if err != nil {
		return Result{}, false, err
	}
	// The idempotency row goes in before the write lock is taken: the lock
	// is held only for the feed, the audit chain and the commit.
	if idem != nil {
		if _, err = sqlTx.ExecContext(ctx, s.Rebind("INSERT INTO idempotency (scope, key, request_hash, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)"),
			idem.Scope, idem.Key, idem.RequestHash, res.Status, res.Body, nanos(t.now)); err != nil {
			if isUnique(err) {
				// The same key committed concurrently: this attempt is
				// dropped and the retry answers from the stored result.
				sqlTx.Rollback()
				return s.Write(ctx, actor, idem, fn)
			}
			return Result{}, false, fmt.Errorf("recording idempotency key: %w", err)
		}
	}
	if len(t.changes) > 0 || len(t.audits) > 0 {
		if err = t.Serialize(); err != nil {
			return Result{}, false, err
		}
		changeSeq, auditSeq, auditHash := t.changeSeq, t.auditSeq, t.auditHash
		if len(t.changes) > 0 {
			changeSeq++
			for i := range t.changes {
				c := &t.changes[i]
				if err = t.exec("INSERT INTO changes (seq, idx, entity, entity_id, op, data) VALUES (?, ?, ?, ?, ?, ?)",
					changeSeq, i, c.Entity, c.EntityID, c.Op, string(c.Data)); err != nil {
					return Result{}, false, fmt.Errorf("writing change feed: %w", err)
				}
			}
		}
		for i := range t.audits {
			e := &t.audits[i]
			audit.Seal(e, auditSeq, auditHash)
			if err = t.exec("INSERT INTO audit_log (seq, at, actor, action, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
				e.Seq, e.Time, e.Actor, e.Action, string(e.Payload), e.PrevHash, e.Hash); err != nil {
				return Result{}, false, fmt.Errorf("appending audit entry: %w", err)
			}
			auditSeq, auditHash = e.Seq, e.Hash
		}
		if s.signer != nil && len(t.audits) > 0 {
			cp := audit.Sign(s.signer, auditSeq, auditHash)
			if _, err = sqlTx.ExecContext(ctx, s.Rebind("INSERT INTO audit_checkpoints (seq, hash, signature) VALUES (?, ?, ?)"), cp.Seq, cp.Hash, cp.Signature); err != nil {
				return Result{}, false, fmt.Errorf("writing audit checkpoint: %w", err)
			}
		}
		if _, err = sqlTx.ExecContext(ctx, s.Rebind("UPDATE registry_head SET change_seq = ?, audit_seq = ?, audit_hash = ? WHERE id = 1"), changeSeq, auditSeq, auditHash); err != nil {
			return Result{}, false, fmt.Errorf("advancing registry head: %w", err)
		}
	}
	if err = sqlTx.Commit(); err != nil {
		return Result{}, false, fmt.Errorf("committing write: %w", err)
	}
	return res, false, nil
}

// Now is the transaction's timestamp.
func (t *Tx) Now() time.Time { return t.now }

// Audit appends an audit entry without a change-feed row.
func (t *Tx) Audit(action string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encoding audit payload: %w", err)
	}
	t.audits = append(t.audits, audit.Entry{Time: nanos(t.now), Actor: t.actor, Action: action, Payload: b})
	return nil
}

func (t *Tx) record(entity, id, op string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encoding change: %w", err)
	}
	t.changes = append(t.changes, registry.Change{Entity: entity, EntityID: id, Op: op, Data: b})
	t.audits = append(t.audits, audit.Entry{Time: nanos(t.now), Actor: t.actor, Action: entity + "." + op, Payload: b})
	return nil
}

// exec runs q with a statement prepared once per transaction, so bulk
// change sets do not re-parse the same SQL for every row.
func (t *Tx) exec(q string, args ...any) error {
	_, err := t.execN(q, args...)
	return err
}

// execN is exec returning the number of rows affected. PostgreSQL goes
// straight to pgx, which caches prepared statements itself.
func (t *Tx) execN(q string, args ...any) (int64, error) {
	if t.s.dialect == Postgres {
		r, err := t.tx.ExecContext(t.ctx, t.s.Rebind(q), args...)
		if err != nil {
			return 0, err
		}
		return r.RowsAffected()
	}
	st, ok := t.stmts[q]
	if !ok {
		var err error
		if st, err = t.tx.PrepareContext(t.ctx, t.s.Rebind(q)); err != nil {
			return 0, err
		}
		if t.stmts == nil {
			t.stmts = map[string]*sql.Stmt{}
		}
		t.stmts[q] = st
	}
	r, err := st.ExecContext(t.ctx, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

// GetUser reads a user inside the transaction.
func (t *Tx) GetUser(id string) (registry.User, error) { return getUser(t.ctx, t.s, t.tx, "id", id) }

// UserByExternalID reads a user by external id inside the transaction.
func (t *Tx) UserByExternalID(ext string) (registry.User, error) {
	return getUser(t.ctx, t.s, t.tx, "external_id", ext)
}

// GetKey reads a key inside the transaction.
func (t *Tx) GetKey(id string) (registry.Key, error) { return getKey(t.ctx, t.s, t.tx, "id", id) }

// CreateUser inserts u, assigning ID, version and times.
func (t *Tx) CreateUser(u *registry.User) error {
	if u.ExternalID == "" {
		return registry.Invalid("missing_field", "external_id is required")
	}
	if u.Status == "" {
		u.Status = registry.UserActive
	}
	if u.Groups == nil {
		u.Groups = []string{}
	}
	u.ID, u.Version, u.CreatedAt, u.UpdatedAt = NewID("usr"), 1, t.now, t.now
	g, _ := json.Marshal(u.Groups)
	if err := t.exec("INSERT INTO users (id, external_id, display_name, email, groups_json, status, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		u.ID, u.ExternalID, u.DisplayName, u.Email, string(g), string(u.Status), u.Version, nanos(u.CreatedAt), nanos(u.UpdatedAt)); err != nil {
		if isUnique(err) {
			return &registry.DuplicateError{Entity: "user", Field: "external_id"}
		}
		return fmt.Errorf("inserting user: %w", err)
	}
	return t.record("user", u.ID, "create", u)
}

// UpdateUser replaces a user's mutable fields if its version is want.
func (t *Tx) UpdateUser(u *registry.User, want int64) error {
	if err := t.Serialize(); err != nil {
		return err
	}
	cur, err := t.GetUser(u.ID)
	if err != nil {
		return err
	}
	if cur.Version != want {
		return &registry.ConflictError{Entity: "user", ID: u.ID, Want: want, Have: cur.Version, Current: cur}
	}
	if u.Groups == nil {
		u.Groups = []string{}
	}
	u.ExternalID, u.CreatedAt, u.Version, u.UpdatedAt = cur.ExternalID, cur.CreatedAt, cur.Version+1, t.now
	g, _ := json.Marshal(u.Groups)
	if err := t.exec("UPDATE users SET display_name = ?, email = ?, groups_json = ?, status = ?, version = ?, updated_at = ? WHERE id = ?",
		u.DisplayName, u.Email, string(g), string(u.Status), u.Version, nanos(t.now), u.ID); err != nil {
		return fmt.Errorf("updating user: %w", err)
	}
	return t.record("user", u.ID, "update", u)
}

// CreateKey inserts k for an existing owner, adding it to its key sets
// (which are created if new).
func (t *Tx) CreateKey(k *registry.Key) error {
	if k.Serial == "" {
		return registry.Invalid("missing_field", "serial is required")
	}
	if k.Role == "" {
		k.Role = registry.RolePrimary
	}
	if k.Role != registry.RolePrimary && k.Role != registry.RoleBackup {
		return registry.Invalid("invalid_role", "role must be primary or backup")
	}
	if k.Status == "" {
		k.Status = registry.KeyPending
	}
	if !k.Status.Valid() {
		return registry.Invalid("invalid_status", "unknown key status %q", k.Status)
	}
	if k.KeySets == nil {
		k.KeySets = []string{}
	}
	k.ID, k.Version, k.CreatedAt, k.UpdatedAt = NewID("key"), 1, t.now, t.now
	if err := t.exec("INSERT INTO keys (id, serial, model, firmware, label, owner_id, role, status, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		k.ID, k.Serial, k.Model, k.Firmware, k.Label, k.OwnerID, string(k.Role), string(k.Status), k.Version, nanos(t.now), nanos(t.now)); err != nil {
		if isUnique(err) {
			return &registry.DuplicateError{Entity: "key", Field: "serial"}
		}
		if isForeignKey(err) {
			return registry.Invalid("unknown_owner", "owner %s does not exist", k.OwnerID)
		}
		return fmt.Errorf("inserting key: %w", err)
	}
	for _, set := range k.KeySets {
		if set == "" {
			return registry.Invalid("invalid_key_set", "key set name is empty")
		}
		ins := "INSERT INTO key_sets (name, description, created_at) VALUES (?, '', ?) ON CONFLICT (name) DO NOTHING"
		if err := t.exec(ins, set, nanos(t.now)); err != nil {
			return fmt.Errorf("creating key set: %w", err)
		}
		if err := t.exec("INSERT INTO key_set_members (set_name, key_id) VALUES (?, ?)", set, k.ID); err != nil {
			if isUnique(err) {
				return registry.Invalid("duplicate_key_set", "key set %q named twice", set)
			}
			return fmt.Errorf("adding key to set: %w", err)
		}
	}
	return t.record("key", k.ID, "create", k)
}

// SetKeyStatus moves key id to status if its version is want. Moving a
// user's last active key out of service needs a break-glass reason, which is
// audited; otherwise it is registry.ErrLastKey.
func (t *Tx) SetKeyStatus(id string, want int64, status registry.KeyStatus, breakGlass string) (registry.Key, error) {
	if !status.Valid() {
		return registry.Key{}, registry.Invalid("invalid_status", "unknown key status %q", status)
	}
	if err := t.Serialize(); err != nil {
		return registry.Key{}, err
	}
	k, err := t.GetKey(id)
	if err != nil {
		return registry.Key{}, err
	}
	if k.Version != want {
		return registry.Key{}, &registry.ConflictError{Entity: "key", ID: id, Want: want, Have: k.Version, Current: k}
	}
	if k.Status == registry.KeyActive && status.Guarded() {
		var others int
		if err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT COUNT(*) FROM keys WHERE owner_id = ? AND status = 'active' AND id <> ?"), k.OwnerID, id).Scan(&others); err != nil {
			return registry.Key{}, fmt.Errorf("counting active keys: %w", err)
		}
		if others == 0 {
			if breakGlass == "" {
				return registry.Key{}, registry.ErrLastKey
			}
			if err := t.Audit("key.break_glass", map[string]string{"key_id": id, "owner_id": k.OwnerID, "to": string(status), "reason": breakGlass}); err != nil {
				return registry.Key{}, err
			}
		}
	}
	k.Status, k.Version, k.UpdatedAt = status, k.Version+1, t.now
	if err := t.exec("UPDATE keys SET status = ?, version = ?, updated_at = ? WHERE id = ?", string(status), k.Version, nanos(t.now), id); err != nil {
		return registry.Key{}, fmt.Errorf("updating key status: %w", err)
	}
	if err := t.record("key", id, "status", k); err != nil {
		return registry.Key{}, err
	}
	return k, t.keepCredentials(k.OwnerID, "key "+id+" moved to "+string(status))
}

// AddFIDOCredential stores c on its key. c.PublicKey must already be checked.
func (t *Tx) AddFIDOCredential(c *registry.FIDOCredential) error {
	if len(c.CredentialID) == 0 || c.RPID == "" {
		return registry.Invalid("missing_field", "credential_id and rp_id are required")
	}
	if c.Verdict == "" {
		c.Verdict = registry.VerdictUnknown
	}
	if c.AAGUID == nil {
		c.AAGUID = []byte{}
	}
	c.ID, c.CreatedAt = NewID("fc"), t.now
	if err := t.exec("INSERT INTO fido_credentials (id, key_id, credential_id, rp_id, public_key, aaguid, sign_count, cred_protect, attestation_object, verdict, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		c.ID, c.KeyID, c.CredentialID, c.RPID, c.PublicKey, c.AAGUID, int64(c.SignCount), c.CredProtect, c.AttestationObject, string(c.Verdict), nanos(t.now)); err != nil {
		if isUnique(err) {
			return &registry.DuplicateError{Entity: "fido2 credential", Field: "credential_id"}
		}
		if isForeignKey(err) {
			return registry.ErrNotFound
		}
		return fmt.Errorf("inserting fido2 credential: %w", err)
	}
	return t.record("fido2_credential", c.ID, "create", c)
}

// AddPIVSlot stores p on its key. p.PublicKey must already be checked.
func (t *Tx) AddPIVSlot(p *registry.PIVSlot) error {
	if p.Verdict == "" {
		p.Verdict = registry.VerdictUnknown
	}
	p.ID, p.CreatedAt = NewID("ps"), t.now
	if err := t.exec("INSERT INTO piv_slots (id, key_id, slot, public_key, certificate, attestation_certificate, verdict, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		p.ID, p.KeyID, p.Slot, p.PublicKey, p.Certificate, p.AttestationCert, string(p.Verdict), nanos(t.now)); err != nil {
		if isUnique(err) {
			return &registry.DuplicateError{Entity: "piv slot", Field: "slot"}
		}
		if isForeignKey(err) {
			return registry.ErrNotFound
		}
		return fmt.Errorf("inserting piv slot: %w", err)
	}
	return t.record("piv_slot", p.ID, "create", p)
}

// CreateChallenge stores a new challenge. Issuing one is neither a change
// nor audited on its own: the verification that consumes it is audited with
// the challenge id, so an unused challenge leaves no trace beyond its row.
func (t *Tx) CreateChallenge(c *registry.Challenge) error {
	c.ID = NewID("ch")
	if err := t.exec("INSERT INTO challenges (id, key_id, kind, credential_id, nonce, expires_at, used) VALUES (?, ?, ?, ?, ?, ?, 0)",
		c.ID, c.KeyID, c.Kind, c.CredentialID, c.Nonce, nanos(c.ExpiresAt)); err != nil {
		if isForeignKey(err) {
			return registry.ErrNotFound
		}
		return fmt.Errorf("inserting challenge: %w", err)
	}
	return nil
}

// ConsumeChallenge marks challenge id used and returns it. A used, expired
// or unknown challenge is registry.ErrChallenge.
func (t *Tx) ConsumeChallenge(id string) (registry.Challenge, error) {
	var c registry.Challenge
	var exp int64
	var used int
	err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT id, key_id, kind, credential_id, nonce, expires_at, used FROM challenges WHERE id = ?"), id).
		Scan(&c.ID, &c.KeyID, &c.Kind, &c.CredentialID, &c.Nonce, &exp, &used)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("%w: unknown", registry.ErrChallenge)
	}
	if err != nil {
		return c, fmt.Errorf("reading challenge: %w", err)
	}
	c.ExpiresAt = fromNanos(exp)
	if used != 0 {
		return c, fmt.Errorf("%w: already used", registry.ErrChallenge)
	}
	if !t.now.Before(c.ExpiresAt) {
		return c, fmt.Errorf("%w: expired", registry.ErrChallenge)
	}
	// The used = 0 condition makes two concurrent consumers race on the
	// row lock: only one updates a row.
	n, err := t.execN("UPDATE challenges SET used = 1 WHERE id = ? AND used = 0", id)
	if err != nil {
		return c, fmt.Errorf("consuming challenge: %w", err)
	}
	if n != 1 {
		return c, fmt.Errorf("%w: already used", registry.ErrChallenge)
	}
	c.Used = true
	return c, nil
}

// RecordVerification stores v and audits it.
func (t *Tx) RecordVerification(v *registry.Verification) error {
	v.ID, v.At = NewID("ver"), t.now
	if err := t.exec("INSERT INTO verifications (id, challenge_id, key_id, kind, credential_id, ok, reason, clone_suspected, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		v.ID, v.ChallengeID, v.KeyID, v.Kind, v.CredentialID, b2i(v.OK), v.Reason, b2i(v.CloneSuspected), nanos(t.now)); err != nil {
		return fmt.Errorf("inserting verification: %w", err)
	}
	if err := t.Audit("verification", v); err != nil {
		return err
	}
	var err error
	if v.OK && !v.CloneSuspected {
		err = t.touchHealth(v.KeyID, nanos(t.now), 0, 0, 0)
	} else {
		err = t.touchHealth(v.KeyID, 0, nanos(t.now), 0, 0)
	}
	if err != nil {
		return err
	}
	if !v.OK {
		return t.failedVerification(v)
	}
	return nil
}

// UpdateSignCount stores a FIDO2 credential's new signature counter and
// clone flag (WebAuthn L2 §6.1.1).
func (t *Tx) UpdateSignCount(credID string, count uint32, clone bool) error {
	if err := t.Serialize(); err != nil {
		return err
	}
	q := "UPDATE fido_credentials SET sign_count = ? WHERE id = ?"
	args := []any{int64(count), credID}
	if clone {
		q = "UPDATE fido_credentials SET clone_suspected = 1 WHERE id = ?"
		args = []any{credID}
		if err := t.exec(q, args...); err != nil {
			return fmt.Errorf("flagging credential: %w", err)
		}
		if err := t.record("fido2_credential", credID, "clone_suspected", map[string]any{"id": credID, "sign_count": count}); err != nil {
			return err
		}
		var owner, keyID string
		if err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT k.owner_id, k.id FROM fido_credentials f JOIN keys k ON k.id = f.key_id WHERE f.id = ?"), credID).Scan(&owner, &keyID); err != nil {
			return fmt.Errorf("reading credential owner: %w", err)
		}
		if err := t.touchHealth(keyID, 0, nanos(t.now), 0, 0); err != nil {
			return err
		}
		return t.keepCredentials(owner, "fido2 credential "+credID+" flagged as a possible clone")
	}
	if err := t.exec(q, args...); err != nil {
		return fmt.Errorf("updating sign count: %w", err)
	}
	return nil
}

// PutEscrow stores or replaces an escrow blob if its version is want (0 for
// a new blob).
func (t *Tx) PutEscrow(e *registry.EscrowBlob, want int64) error {
	if err := t.Serialize(); err != nil {
		return err
	}
	var have int64
	err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT version FROM escrow_blobs WHERE key_id = ? AND kind = ?"), e.KeyID, e.Kind).Scan(&have)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("reading escrow: %w", err)
	}
	if have != want {
		return &registry.ConflictError{Entity: "escrow", ID: e.KeyID + "/" + e.Kind, Want: want, Have: have}
	}
	e.Version, e.CreatedAt = have+1, t.now
	if have == 0 {
		err = t.exec("INSERT INTO escrow_blobs (key_id, kind, blob, version, created_at) VALUES (?, ?, ?, ?, ?)", e.KeyID, e.Kind, e.Blob, e.Version, nanos(t.now))
	} else {
		err = t.exec("UPDATE escrow_blobs SET blob = ?, version = ?, created_at = ? WHERE key_id = ? AND kind = ?", e.Blob, e.Version, nanos(t.now), e.KeyID, e.Kind)
	}
	if err != nil {
		if isForeignKey(err) {
			return registry.ErrNotFound
		}
		return fmt.Errorf("writing escrow: %w", err)
	}
	// The blob itself stays out of the feed and the audit log.
	return t.record("escrow", e.KeyID+"/"+e.Kind, "put", map[string]any{"key_id": e.KeyID, "kind": e.Kind, "version": e.Version})
}

// CreateAccessPass stores a temporary access pass by the hash of its secret.
func (t *Tx) CreateAccessPass(p *registry.TemporaryAccessPass, passHash []byte) error {
	p.ID, p.CreatedAt = NewID("tap"), t.now
	if err := t.exec("INSERT INTO access_passes (id, user_id, pass_hash, reason, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?)",
		p.ID, p.UserID, passHash, p.Reason, nanos(p.ExpiresAt), nanos(t.now)); err != nil {
		if isForeignKey(err) {
			return registry.ErrNotFound
		}
		return fmt.Errorf("inserting access pass: %w", err)
	}
	return t.record("access_pass", p.ID, "create", p)
}

// CreateToken stores an API token by its hash.
func (t *Tx) CreateToken(hash []byte, name, role, userID string) error {
	if err := t.exec("INSERT INTO tokens (hash, name, role, user_id, created_at) VALUES (?, ?, ?, ?, ?)", hash, name, role, userID, nanos(t.now)); err != nil {
		if isUnique(err) {
			return &registry.DuplicateError{Entity: "token", Field: "hash"}
		}
		return fmt.Errorf("inserting token: %w", err)
	}
	return t.Audit("token.create", map[string]string{"name": name, "role": role, "user_id": userID})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
