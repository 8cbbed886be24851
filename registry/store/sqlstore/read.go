package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/audit"
)

const userCols = "id, external_id, display_name, email, groups_json, status, version, created_at, updated_at"

func scanUser(sc interface{ Scan(...any) error }) (registry.User, error) {
	var u registry.User
	var g, st string
	var c, up int64
	if err := sc.Scan(&u.ID, &u.ExternalID, &u.DisplayName, &u.Email, &g, &st, &u.Version, &c, &up); err != nil {
		return u, err
	}
	u.Status, u.CreatedAt, u.UpdatedAt = registry.UserStatus(st), fromNanos(c), fromNanos(up)
	if err := json.Unmarshal([]byte(g), &u.Groups); err != nil {
		return u, fmt.Errorf("decoding groups: %w", err)
	}
	return u, nil
}

func getUser(ctx context.Context, s *Store, q querier, col, v string) (registry.User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, s.Rebind("SELECT "+userCols+" FROM users WHERE "+col+" = ?"), v))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user %s: %w", v, registry.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("reading user: %w", err)
	}
	return u, nil
}

// GetUser reads one user by id.
func (s *Store) GetUser(ctx context.Context, id string) (registry.User, error) {
	return getUser(ctx, s, s.db, "id", id)
}

// UserByExternalID reads one user by external id.
func (s *Store) UserByExternalID(ctx context.Context, ext string) (registry.User, error) {
	ext, err := registry.NormalizeExternalID(ext)
	if err != nil {
		return registry.User{}, err
	}
	return getUser(ctx, s, s.db, "external_id", ext)
}

// ListUsers returns up to limit users with id > after, in id order.
func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]registry.User, error) {
	rows, err := s.db.QueryContext(ctx, s.Rebind("SELECT "+userCols+" FROM users WHERE id > ? ORDER BY id LIMIT ?"), after, limit)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	defer rows.Close()
	out := []registry.User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("listing users: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

const keyCols = "id, serial, model, firmware, label, owner_id, role, status, version, created_at, updated_at"

func scanKey(sc interface{ Scan(...any) error }) (registry.Key, error) {
	var k registry.Key
	var role, st string
	var c, up int64
	err := sc.Scan(&k.ID, &k.Serial, &k.Model, &k.Firmware, &k.Label, &k.OwnerID, &role, &st, &k.Version, &c, &up)
	k.Role, k.Status, k.CreatedAt, k.UpdatedAt = registry.KeyRole(role), registry.KeyStatus(st), fromNanos(c), fromNanos(up)
	return k, err
}

func keySets(ctx context.Context, s *Store, q querier, k *registry.Key) error {
	rows, err := q.QueryContext(ctx, s.Rebind("SELECT set_name FROM key_set_members WHERE key_id = ? ORDER BY set_name"), k.ID)
	if err != nil {
		return fmt.Errorf("reading key sets: %w", err)
	}
	defer rows.Close()
	k.KeySets = []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		k.KeySets = append(k.KeySets, n)
	}
	return rows.Err()
}

func getKey(ctx context.Context, s *Store, q querier, col, v string) (registry.Key, error) {
	k, err := scanKey(q.QueryRowContext(ctx, s.Rebind("SELECT "+keyCols+" FROM keys WHERE "+col+" = ?"), v))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("key %s: %w", v, registry.ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("reading key: %w", err)
	}
	return k, keySets(ctx, s, q, &k)
}

// GetKey reads one key by id.
func (s *Store) GetKey(ctx context.Context, id string) (registry.Key, error) {
	return getKey(ctx, s, s.db, "id", id)
}

// KeyBySerial reads one key by serial.
func (s *Store) KeyBySerial(ctx context.Context, serial string) (registry.Key, error) {
	return getKey(ctx, s, s.db, "serial", serial)
}

// KeysOfUser lists a user's keys.
func (s *Store) KeysOfUser(ctx context.Context, userID string) ([]registry.Key, error) {
	rows, err := s.db.QueryContext(ctx, s.Rebind("SELECT "+keyCols+" FROM keys WHERE owner_id = ? ORDER BY created_at, id"), userID)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	out := []registry.Key{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing keys: %w", err)
		}
		out = append(out, k)
	}
	rows.Close()
	for i := range out {
		if err := keySets(ctx, s, s.db, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, rows.Err()
}

const fidoCols = "id, key_id, credential_id, rp_id, public_key, aaguid, sign_count, cred_protect, attestation_object, attestation_client_data_hash, verdict, verdict_reason, clone_suspected, pending, created_at, attestation_client_data_json"

func scanFIDO(sc interface{ Scan(...any) error }) (registry.FIDOCredential, error) {
	var c registry.FIDOCredential
	var cnt, created int64
	var v string
	var clone, pending int
	err := sc.Scan(&c.ID, &c.KeyID, &c.CredentialID, &c.RPID, &c.PublicKey, &c.AAGUID, &cnt, &c.CredProtect, &c.AttestationObject, &c.AttestationClientDataHash, &v, &c.VerdictReason, &clone, &pending, &created, &c.AttestationClientDataJSON)
	c.SignCount, c.Verdict, c.CloneSuspected, c.Pending, c.CreatedAt = uint32(cnt), registry.AttestationVerdict(v), clone != 0, pending != 0, fromNanos(created)
	return c, err
}

// FIDOCredentials lists the FIDO2 credentials on a key.
func (s *Store) FIDOCredentials(ctx context.Context, keyID string) ([]registry.FIDOCredential, error) {
	rows, err := s.db.QueryContext(ctx, s.Rebind("SELECT "+fidoCols+" FROM fido_credentials WHERE key_id = ? ORDER BY id"), keyID)
	if err != nil {
		return nil, fmt.Errorf("listing fido2 credentials: %w", err)
	}
	defer rows.Close()
	out := []registry.FIDOCredential{}
	for rows.Next() {
		c, err := scanFIDO(rows)
		if err != nil {
			return nil, fmt.Errorf("listing fido2 credentials: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// GetFIDOCredential reads one FIDO2 credential by its registry id.
func (s *Store) GetFIDOCredential(ctx context.Context, id string) (registry.FIDOCredential, error) {
	return getFIDO(ctx, s, s.db, id)
}

// LockFIDOCredential reads one FIDO2 credential inside the transaction and
// locks its row until commit (SELECT … FOR UPDATE on PostgreSQL; a SQLite
// write transaction holds the database lock already), so two concurrent
// assertions cannot both pass the counter check.
func (t *Tx) LockFIDOCredential(id string) (registry.FIDOCredential, error) {
	q := "SELECT " + fidoCols + " FROM fido_credentials WHERE id = ?"
	if t.s.dialect == Postgres {
		q += " FOR UPDATE"
	}
	c, err := scanFIDO(t.tx.QueryRowContext(t.ctx, t.s.Rebind(q), id))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("fido2 credential %s: %w", id, registry.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("reading fido2 credential: %w", err)
	}
	return c, nil
}

// GetFIDOCredential reads one FIDO2 credential inside the transaction.
func (t *Tx) GetFIDOCredential(id string) (registry.FIDOCredential, error) {
	return getFIDO(t.ctx, t.s, t.tx, id)
}

func getFIDO(ctx context.Context, s *Store, q querier, id string) (registry.FIDOCredential, error) {
	c, err := scanFIDO(q.QueryRowContext(ctx, s.Rebind("SELECT "+fidoCols+" FROM fido_credentials WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("fido2 credential %s: %w", id, registry.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("reading fido2 credential: %w", err)
	}
	return c, nil
}

const pivCols = "id, key_id, slot, public_key, certificate, attestation_certificate, attestation_intermediate, verdict, verdict_reason, pending, created_at"

func scanPIV(sc interface{ Scan(...any) error }) (registry.PIVSlot, error) {
	var p registry.PIVSlot
	var v string
	var created int64
	var pending int
	err := sc.Scan(&p.ID, &p.KeyID, &p.Slot, &p.PublicKey, &p.Certificate, &p.AttestationCert, &p.AttestationIntermediate, &v, &p.VerdictReason, &pending, &created)
	p.Verdict, p.Pending, p.CreatedAt = registry.AttestationVerdict(v), pending != 0, fromNanos(created)
	return p, err
}

// PIVSlots lists the PIV slots recorded for a key.
func (s *Store) PIVSlots(ctx context.Context, keyID string) ([]registry.PIVSlot, error) {
	rows, err := s.db.QueryContext(ctx, s.Rebind("SELECT "+pivCols+" FROM piv_slots WHERE key_id = ? ORDER BY slot"), keyID)
	if err != nil {
		return nil, fmt.Errorf("listing piv slots: %w", err)
	}
	defer rows.Close()
	out := []registry.PIVSlot{}
	for rows.Next() {
		p, err := scanPIV(rows)
		if err != nil {
			return nil, fmt.Errorf("listing piv slots: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// GetPIVSlot reads one PIV slot record.
func (s *Store) GetPIVSlot(ctx context.Context, id string) (registry.PIVSlot, error) {
	return getPIV(ctx, s, s.db, id)
}

func getPIV(ctx context.Context, s *Store, q querier, id string) (registry.PIVSlot, error) {
	p, err := scanPIV(q.QueryRowContext(ctx, s.Rebind("SELECT "+pivCols+" FROM piv_slots WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("piv slot %s: %w", id, registry.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("reading piv slot: %w", err)
	}
	return p, nil
}

// Secret returns the registry's secret called name (32 random bytes),
// creating it on first use. Every registry sharing the database gets the
// same secret.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	v := make([]byte, 32)
	if _, err := rand.Read(v); err != nil {
		return nil, err
	}
	if _, err := s.db.ExecContext(ctx, s.Rebind("INSERT INTO registry_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"), name, v); err != nil {
		return nil, fmt.Errorf("creating secret %s: %w", name, err)
	}
	if err := s.db.QueryRowContext(ctx, s.Rebind("SELECT value FROM registry_secrets WHERE name = ?"), name).Scan(&v); err != nil {
		return nil, fmt.Errorf("reading secret %s: %w", name, err)
	}
	return v, nil
}

// GetPIVSlot reads one PIV slot record inside the transaction.
func (t *Tx) GetPIVSlot(id string) (registry.PIVSlot, error) {
	return getPIV(t.ctx, t.s, t.tx, id)
}

// GetEscrow reads one escrow blob.
func (s *Store) GetEscrow(ctx context.Context, keyID, kind string) (registry.EscrowBlob, error) {
	e := registry.EscrowBlob{KeyID: keyID, Kind: kind}
	var c int64
	err := s.db.QueryRowContext(ctx, s.Rebind("SELECT blob, version, created_at FROM escrow_blobs WHERE key_id = ? AND kind = ?"), keyID, kind).Scan(&e.Blob, &e.Version, &c)
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("escrow %s/%s: %w", keyID, kind, registry.ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("reading escrow: %w", err)
	}
	e.CreatedAt = fromNanos(c)
	return e, nil
}

// Changes returns whole change sets with seq > after, at least one and
// stopping once limit changes are reached, and the feed's head.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]registry.Change, int64, error) {
	tx, err := s.readTx(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	var head int64
	if err := tx.QueryRowContext(ctx, "SELECT change_seq FROM registry_head WHERE id = 1").Scan(&head); err != nil {
		return nil, 0, fmt.Errorf("reading feed head: %w", err)
	}
	// Take change sets up to the one holding the limit-th change, so a set
	// is never split between pages.
	var upto int64 = head
	err = tx.QueryRowContext(ctx, s.Rebind("SELECT seq FROM changes WHERE seq > ? ORDER BY seq, idx LIMIT 1 OFFSET ?"), after, limit-1).Scan(&upto)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, 0, fmt.Errorf("paging change feed: %w", err)
	}
	rows, err := tx.QueryContext(ctx, s.Rebind("SELECT seq, idx, entity, entity_id, op, data FROM changes WHERE seq > ? AND seq <= ? ORDER BY seq, idx"), after, upto)
	if err != nil {
		return nil, 0, fmt.Errorf("reading change feed: %w", err)
	}
	defer rows.Close()
	out := []registry.Change{}
	for rows.Next() {
		var c registry.Change
		var d string
		if err := rows.Scan(&c.Seq, &c.Index, &c.Entity, &c.EntityID, &c.Op, &d); err != nil {
			return nil, 0, fmt.Errorf("reading change feed: %w", err)
		}
		c.Data = []byte(d)
		out = append(out, c)
	}
	return out, head, rows.Err()
}

// readTx opens a transaction that sees one committed state throughout:
// REPEATABLE READ on PostgreSQL, a (write-locked) transaction on SQLite.
func (s *Store) readTx(ctx context.Context) (*sql.Tx, error) {
	opt := &sql.TxOptions{}
	if s.dialect == Postgres {
		opt = &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	}
	tx, err := s.db.BeginTx(ctx, opt)
	if err != nil {
		return nil, fmt.Errorf("beginning read: %w", err)
	}
	return tx, nil
}

// validityTemplate is the validity view's rule: a credential is valid when
// its key is active, its owner is active, it is not pending (added without
// a trusted attestation and not yet verified), (for FIDO2) it is not flagged
// as a possible clone, and no migration that cut the owner over takes the
// key away (notCutAway). %[1]s is an extra condition on the user.
const validityTemplate = `SELECT u.id, u.external_id, k.id, k.serial, 'fido2', f.credential_id, f.rp_id, '', f.public_key
FROM fido_credentials f JOIN keys k ON k.id = f.key_id JOIN users u ON u.id = k.owner_id
WHERE k.status = 'active' AND u.status = 'active' AND f.pending = 0 AND f.clone_suspected = 0 AND ` + notCutAway + `%[1]s
UNION ALL
SELECT u.id, u.external_id, k.id, k.serial, 'piv', NULL, '', p.slot, p.public_key
FROM piv_slots p JOIN keys k ON k.id = p.key_id JOIN users u ON u.id = k.owner_id
WHERE k.status = 'active' AND u.status = 'active' AND p.pending = 0 AND ` + notCutAway + `%[1]s
ORDER BY 1, 3, 5`

// ValidityQuery is the validity view for everyone, shared with benchmarks.
var ValidityQuery = fmt.Sprintf(validityTemplate, "")

// Validity returns the validity view (for one user when userID is set) at
// the newest committed change set, read in one snapshot so it never shows
// half of a change set.
func (s *Store) Validity(ctx context.Context, userID string) (registry.Validity, error) {
	tx, err := s.readTx(ctx)
	if err != nil {
		return registry.Validity{}, err
	}
	defer tx.Rollback()
	var v registry.Validity
	if err := tx.QueryRowContext(ctx, "SELECT change_seq FROM registry_head WHERE id = 1").Scan(&v.Version); err != nil {
		return v, fmt.Errorf("reading validity version: %w", err)
	}
	q := ValidityQuery
	var args []any
	if userID != "" {
		q = fmt.Sprintf(validityTemplate, " AND u.id = ?")
		args = append(args, userID, userID)
	}
	rows, err := tx.QueryContext(ctx, s.Rebind(q), args...)
	if err != nil {
		return v, fmt.Errorf("reading validity view: %w", err)
	}
	defer rows.Close()
	v.Credentials = []registry.ValidCredential{}
	for rows.Next() {
		var c registry.ValidCredential
		if err := rows.Scan(&c.UserID, &c.ExternalID, &c.KeyID, &c.Serial, &c.Kind, &c.CredentialID, &c.RPID, &c.Slot, &c.PublicKey); err != nil {
			return v, fmt.Errorf("reading validity view: %w", err)
		}
		v.Credentials = append(v.Credentials, c)
	}
	return v, rows.Err()
}

// chainPending chains pending audit entries before the log is read, when
// this store can sign checkpoints.
func (s *Store) chainPending(ctx context.Context) error {
	if s.signer == nil {
		return nil
	}
	for {
		n, err := s.SequenceAudit(ctx)
		if err != nil || n == 0 {
			return err
		}
	}
}

// AuditLog returns every audit entry and checkpoint in order, after
// trying to chain pending entries (AuditPending reports those left).
func (s *Store) AuditLog(ctx context.Context) ([]audit.Entry, []audit.Checkpoint, error) {
	// Chaining is best-effort: on a full or read-only disk the log is
	// read as it stands and AuditPending counts what still waits.
	_ = s.chainPending(ctx)
	tx, err := s.readTx(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, "SELECT seq, at, actor, action, payload, prev_hash, hash FROM audit_log ORDER BY seq")
	if err != nil {
		return nil, nil, fmt.Errorf("reading audit log: %w", err)
	}
	var es []audit.Entry
	for rows.Next() {
		var e audit.Entry
		var p string
		if err := rows.Scan(&e.Seq, &e.Time, &e.Actor, &e.Action, &p, &e.PrevHash, &e.Hash); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("reading audit log: %w", err)
		}
		e.Payload = []byte(p)
		es = append(es, e)
	}
	rows.Close()
	rows, err = tx.QueryContext(ctx, "SELECT seq, hash, signature FROM audit_checkpoints ORDER BY seq")
	if err != nil {
		return nil, nil, fmt.Errorf("reading audit checkpoints: %w", err)
	}
	defer rows.Close()
	var cs []audit.Checkpoint
	for rows.Next() {
		var c audit.Checkpoint
		if err := rows.Scan(&c.Seq, &c.Hash, &c.Signature); err != nil {
			return nil, nil, fmt.Errorf("reading audit checkpoints: %w", err)
		}
		cs = append(cs, c)
	}
	return es, cs, rows.Err()
}

// Token is a stored API token's identity.
type Token struct {
	Name   string
	Role   string
	UserID string
	// UserStatus is the status of the token's user (a self token's), ""
	// when it has none or the user does not exist.
	UserStatus registry.UserStatus
}

// LookupToken finds a token by the hash of its secret, with its user's
// status.
func (s *Store) LookupToken(ctx context.Context, hash []byte) (Token, error) {
	var t Token
	var st string
	err := s.db.QueryRowContext(ctx, s.Rebind("SELECT t.name, t.role, t.user_id, COALESCE(u.status, '') FROM tokens t LEFT JOIN users u ON u.id = t.user_id WHERE t.hash = ? AND t.revoked_at IS NULL"), hash).Scan(&t.Name, &t.Role, &t.UserID, &st)
	t.UserStatus = registry.UserStatus(st)
	if errors.Is(err, sql.ErrNoRows) {
		return t, registry.ErrNotFound
	}
	if err != nil {
		return t, fmt.Errorf("reading token: %w", err)
	}
	return t, nil
}

// TokenInfo describes a stored token (never its secret or hash).
type TokenInfo struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	UserID    string     `json:"user_id,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Tokens lists every token, revoked ones included, by creation time.
func (s *Store) Tokens(ctx context.Context) ([]TokenInfo, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT name, role, user_id, created_at, revoked_at FROM tokens ORDER BY created_at, name")
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	defer rows.Close()
	out := []TokenInfo{}
	for rows.Next() {
		var t TokenInfo
		var c int64
		var r sql.NullInt64
		if err := rows.Scan(&t.Name, &t.Role, &t.UserID, &c, &r); err != nil {
			return nil, fmt.Errorf("listing tokens: %w", err)
		}
		t.CreatedAt = fromNanos(c)
		if r.Valid {
			at := fromNanos(r.Int64)
			t.RevokedAt = &at
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// AccessPasses lists a user's temporary access passes, newest first, with
// their status at the store's current time.
func (s *Store) AccessPasses(ctx context.Context, userID string) ([]registry.TemporaryAccessPass, error) {
	rows, err := s.db.QueryContext(ctx, s.Rebind("SELECT id, user_id, reason, expires_at, created_at, redeemed_at FROM access_passes WHERE user_id = ? ORDER BY created_at DESC, id"), userID)
	if err != nil {
		return nil, fmt.Errorf("listing access passes: %w", err)
	}
	defer rows.Close()
	now := s.now()
	out := []registry.TemporaryAccessPass{}
	for rows.Next() {
		var p registry.TemporaryAccessPass
		var exp, created int64
		var red sql.NullInt64
		if err := rows.Scan(&p.ID, &p.UserID, &p.Reason, &exp, &created, &red); err != nil {
			return nil, fmt.Errorf("listing access passes: %w", err)
		}
		p.ExpiresAt, p.CreatedAt = fromNanos(exp), fromNanos(created)
		if red.Valid {
			at := fromNanos(red.Int64)
			p.RedeemedAt = &at
		}
		p.Status = p.AccessPassStatus(now)
		out = append(out, p)
	}
	return out, rows.Err()
}

// AuditFilter selects audit entries: seq > After, optionally one actor and
// one action, at most Limit. With Before set (> 0) it selects seq < Before
// instead, newest first.
type AuditFilter struct {
	After  int64
	Before int64
	Actor  string
	Action string
	Limit  int
}

// AuditEntries returns the audit entries f selects, in sequence order (in
// reverse sequence order when f.Before is set).
func (s *Store) AuditEntries(ctx context.Context, f AuditFilter) ([]audit.Entry, error) {
	if err := s.chainPending(ctx); err != nil {
		return nil, err
	}
	q := "SELECT seq, at, actor, action, payload, prev_hash, hash FROM audit_log WHERE seq > ?"
	args := []any{f.After}
	order := " ORDER BY seq LIMIT ?"
	if f.Before > 0 {
		q += " AND seq < ?"
		args = append(args, f.Before)
		order = " ORDER BY seq DESC LIMIT ?"
	}
	if f.Actor != "" {
		q += " AND actor = ?"
		args = append(args, f.Actor)
	}
	if f.Action != "" {
		q += " AND action = ?"
		args = append(args, f.Action)
	}
	q += order
	args = append(args, f.Limit)
	rows, err := s.db.QueryContext(ctx, s.Rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("listing audit entries: %w", err)
	}
	defer rows.Close()
	out := []audit.Entry{}
	for rows.Next() {
		var e audit.Entry
		var p string
		if err := rows.Scan(&e.Seq, &e.Time, &e.Actor, &e.Action, &p, &e.PrevHash, &e.Hash); err != nil {
			return nil, fmt.Errorf("listing audit entries: %w", err)
		}
		e.Payload = []byte(p)
		out = append(out, e)
	}
	return out, rows.Err()
}

// KeyWithPIVKey reads key keyID (without its key sets) and the public key
// of its PIV slot slotID, and whether that slot is pending, in one query.
// No such key, or no such slot on it, is registry.ErrNotFound. Like KeyRow
// it takes no lock and may run before the transaction begins.
func (t *Tx) KeyWithPIVKey(keyID, slotID string) (registry.Key, []byte, bool, error) {
	var pub []byte
	var pending int
	k, err := scanKey(scanPlus{t.tx.read().QueryRowContext(t.ctx, t.s.Rebind(keyWithPIVKeyQuery), slotID, keyID), []any{&pub, &pending}})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return k, nil, false, fmt.Errorf("key %s: %w", keyID, registry.ErrNotFound)
	case err != nil:
		return k, nil, false, fmt.Errorf("reading key: %w", err)
	case pub == nil:
		return k, nil, false, fmt.Errorf("piv slot %s: %w", slotID, registry.ErrNotFound)
	}
	return k, pub, pending != 0, nil
}

var keyWithPIVKeyQuery = "SELECT k." + strings.ReplaceAll(keyCols, ", ", ", k.") + ", p.public_key, COALESCE(p.pending, 0) FROM keys k LEFT JOIN piv_slots p ON p.id = ? AND p.key_id = k.id WHERE k.id = ?"

// scanPlus scans a row's leading columns with the scanner it is passed to
// and its trailing columns into extra.
type scanPlus struct {
	row   interface{ Scan(...any) error }
	extra []any
}

func (s scanPlus) Scan(dest ...any) error { return s.row.Scan(append(dest, s.extra...)...) }
