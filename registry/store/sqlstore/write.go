package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

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
	tx      *lazyTx
	conn    *sql.Conn // the transaction's connection, for COPY (PostgreSQL)
	actor   string
	now     time.Time
	changes []registry.Change
	audits  []audit.Entry
	stmts   map[string]*sql.Stmt

	locked              bool
	later               bool            // audit entries may be chained by the sequencer
	tail                logBatch        // inserts sent with the change set's last statement
	provenHere          map[string]bool // keys with a successful verification in this change set
	changeSeq, auditSeq int64
	auditHash           []byte
	headEntryHash       []byte            // the hash of the log's entry at auditSeq, nil if none
	signed              *audit.Checkpoint // the checkpoint appendLog signed, announced after commit
	rechained           bool              // a restore replaced the chain (restore.go)
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
	// The head entry's own hash comes along (an index probe in the same
	// round trip) for checkExtends.
	lock := "SELECT h.change_seq, h.audit_seq, h.audit_hash, (SELECT l.hash FROM audit_log l WHERE l.seq = h.audit_seq) FROM registry_head h WHERE h.id = 1"
	if t.s.dialect == Postgres {
		lock += " FOR UPDATE OF h"
	}
	if err := t.tx.QueryRowContext(t.ctx, lock).Scan(&t.changeSeq, &t.auditSeq, &t.auditHash, &t.headEntryHash); err != nil {
		return fmt.Errorf("locking registry head: %w", err)
	}
	t.locked = true
	return nil
}

// Write runs fn in one transaction as actor. With idem set, a second call
// with the same scope and key returns the first call's result and writes
// nothing (replayed is true); the same key with a different request hash is
// registry.ErrIdempotencyMismatch. If fn fails nothing is written. fn may
// run for a replay too, in a transaction that is then rolled back, so it
// must have no effect outside tx.
func (s *Store) Write(ctx context.Context, actor string, idem *Idempotency, fn func(*Tx) (Result, error)) (res Result, replayed bool, err error) {
	return s.write(ctx, actor, idem, fn, false)
}

func (s *Store) write(ctx context.Context, actor string, idem *Idempotency, fn func(*Tx) (Result, error), retry bool) (res Result, replayed bool, err error) {
	// On PostgreSQL the transaction runs on a connection of its own, so
	// that a large change set can COPY its feed and audit rows into it,
	// and begins when the change set first needs it (lazytx.go).
	var conn *sql.Conn
	var ltx *lazyTx
	if s.dialect == Postgres {
		if conn, err = s.db.Conn(ctx); err != nil {
			return Result{}, false, fmt.Errorf("beginning write: %w", err)
		}
		defer conn.Close()
		ltx = &lazyTx{ctx: ctx, conn: conn}
	} else {
		sqlTx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return Result{}, false, fmt.Errorf("beginning write: %w", err)
		}
		ltx = begun(sqlTx)
	}
	defer func() {
		if err != nil {
			ltx.Rollback()
		}
	}()
	// A first attempt does not look its idempotency key up: a new key, the
	// common case, costs no round trip for it. A replay shows itself when
	// fn fails (its change is refused the second time: a duplicate, a
	// stale version, a used challenge) or when the key's row conflicts at
	// the end; either way the stored result is answered and nothing of
	// this attempt is written.
	if idem != nil && retry {
		if res, replayed, err = s.replay(ctx, ltx, idem); replayed || err != nil {
			ltx.Rollback()
			return res, replayed, err
		}
	}
	// A replay after a failed attempt reads on the attempt's connection
	// (its transaction rolled back): a write never waits for a second
	// connection while holding one.
	var after querier = s.db
	if conn != nil {
		after = conn
	}
	t := &Tx{ctx: ctx, s: s, tx: ltx, conn: conn, actor: actor, now: s.now().UTC()}
	res, err = fn(t)
	if ltx.err != nil {
		// The transaction could not begin; what fn saw of that is a
		// consequence.
		return Result{}, false, ltx.err
	}
	if err != nil {
		if idem != nil && !retry {
			ltx.Rollback()
			if r, replayed, e := s.replay(ctx, after, idem); replayed || e != nil {
				return r, replayed, e
			}
		}
		return Result{}, false, err
	}
	// The idempotency row goes in with the change set's last statement.
	if idem != nil {
		t.tail.addTo(tableIdempotency, "INSERT INTO idempotency (scope, key, request_hash, status, body, created_at) VALUES ", 6, 1,
			[]any{idem.Scope, idem.Key, idem.RequestHash, res.Status, res.Body, nanos(t.now)})
	}
	deferred := t.later && len(t.changes) == 0 && !t.locked && len(t.audits) > 0
	switch {
	case deferred:
		t.deferAudits()
		err = t.tail.run(t, "", nil)
	case len(t.changes) > 0 || len(t.audits) > 0:
		if err = t.Serialize(); err == nil {
			err = t.appendLog()
		}
	default:
		err = t.tail.run(t, "", nil)
	}
	if err != nil && ltx.err != nil {
		err = ltx.err // the transaction could not begin; err is a consequence
	}
	if err != nil {
		ltx.Rollback()
		table := failedTable(err)
		if idem != nil && !retry && isUnique(err) {
			// The same idempotency key committed first (a replay, or a
			// concurrent send, whose commit a unique check waits for):
			// answer from the stored result.
			if r, replayed, e := s.replay(ctx, after, idem); replayed || e != nil {
				return r, replayed, e
			}
			if table == tableIdempotency {
				if conn != nil {
					conn.Close() // the retry takes a connection of its own
				}
				return s.write(ctx, actor, idem, fn, true)
			}
		}
		if table == tableChallenges {
			if isUnique(err) {
				return Result{}, false, fmt.Errorf("%w: already used", registry.ErrChallenge)
			}
			if isForeignKey(err) {
				return Result{}, false, fmt.Errorf("%w: its key no longer exists", registry.ErrChallenge)
			}
		}
		return Result{}, false, err
	}
	if err = ltx.Commit(); err != nil {
		return Result{}, false, fmt.Errorf("committing write: %w", err)
	}
	t.committed()
	if deferred {
		s.kick()
	}
	return res, false, nil
}

// replay answers a write whose idempotency key is already stored: the
// stored result (replayed is true), registry.ErrIdempotencyMismatch for
// another request under the same key, or nothing for a new key.
func (s *Store) replay(ctx context.Context, q querier, idem *Idempotency) (Result, bool, error) {
	var h, body []byte
	var status int
	err := q.QueryRowContext(ctx, s.Rebind("SELECT request_hash, status, body FROM idempotency WHERE scope = ? AND key = ?"), idem.Scope, idem.Key).Scan(&h, &status, &body)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Result{}, false, nil
	case err != nil:
		return Result{}, false, fmt.Errorf("reading idempotency key: %w", err)
	case !bytes.Equal(h, idem.RequestHash):
		return Result{}, false, registry.ErrIdempotencyMismatch
	}
	return Result{Status: status, Body: body}, true, nil
}

// appendLog writes the change set's feed rows, its audit entries, a signed
// checkpoint and the new registry head, under the head lock. Rows go in
// multi-row INSERTs; on PostgreSQL every piece that fits is sent as one
// statement (data-modifying CTEs), so the lock is held for as few round
// trips as possible.
func (t *Tx) appendLog() error {
	sign := t.s.signer != nil && len(t.audits) > 0
	if sign && !t.rechained {
		// Never sign over rows this registry did not chain (auditchain.go).
		if err := t.checkExtends(); err != nil {
			return err
		}
	}
	changeSeq, auditSeq, auditHash := t.changeSeq, t.auditSeq, t.auditHash
	b := t.tail
	for i := range t.audits {
		e := &t.audits[i]
		audit.Seal(e, auditSeq, auditHash)
		auditSeq, auditHash = e.Seq, e.Hash
	}
	if len(t.changes) > 0 {
		changeSeq++
	}
	if t.conn != nil && len(t.changes)+len(t.audits) >= copyRows {
		if err := t.copyLog(changeSeq); err != nil {
			return chainConflict(err, t.auditSeq)
		}
	} else {
		t.insertLog(&b, changeSeq)
	}
	if sign {
		cp := audit.Sign(t.s.signer, auditSeq, auditHash)
		b.addTo(tableAuditCheckpoints, "INSERT INTO audit_checkpoints (seq, hash, signature) VALUES ", 3, 1, []any{cp.Seq, cp.Hash, cp.Signature})
		t.signed = &cp
	}
	head := "UPDATE registry_head SET change_seq = ?, audit_seq = ?, audit_hash = ? WHERE id = 1"
	headArgs := []any{changeSeq, auditSeq, auditHash}
	if err := b.run(t, head, headArgs); err != nil {
		t.signed = nil
		return chainConflict(err, t.auditSeq)
	}
	t.changeSeq, t.auditSeq, t.auditHash = changeSeq, auditSeq, auditHash
	return nil
}

// copyRows is the size of change set (feed rows plus audit entries) from
// which PostgreSQL gets them by COPY rather than multi-row INSERTs.
const copyRows = 1000

// copyLog writes the change set's feed rows (as change set seq) and its
// sealed audit entries with COPY, in the transaction.
func (t *Tx) copyLog(seq int64) error {
	changes := make([][]any, len(t.changes))
	for i, c := range t.changes {
		changes[i] = []any{seq, int64(i), c.Entity, c.EntityID, c.Op, string(c.Data)}
	}
	audits := make([][]any, len(t.audits))
	for i, e := range t.audits {
		audits[i] = []any{e.Seq, e.Time, e.Actor, e.Action, string(e.Payload), e.PrevHash, e.Hash}
	}
	// COPY goes to the connection itself: the transaction must be open on
	// it (it is: appendLog runs under the head lock).
	if _, err := t.tx.begin(); err != nil {
		return err
	}
	return t.conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("appending change set: connection is %T, not pgx", dc)
		}
		if len(changes) > 0 {
			if _, err := c.Conn().CopyFrom(t.ctx, pgx.Identifier{"changes"}, []string{"seq", "idx", "entity", "entity_id", "op", "data"}, pgx.CopyFromRows(changes)); err != nil {
				return fmt.Errorf("appending change set: %w", err)
			}
		}
		if len(audits) > 0 {
			if _, err := c.Conn().CopyFrom(t.ctx, pgx.Identifier{"audit_log"}, []string{"seq", "at", "actor", "action", "payload", "prev_hash", "hash"}, pgx.CopyFromRows(audits)); err != nil {
				return fmt.Errorf("appending audit entries: %w", err)
			}
		}
		return nil
	})
}

// insertLog adds the change set's feed rows (as change set seq) and its
// sealed audit entries to b as multi-row INSERTs.
func (t *Tx) insertLog(b *logBatch, changeSeq int64) {
	if len(t.changes) > 0 {
		for i := 0; i < len(t.changes); i += rowsPerInsert {
			part := t.changes[i:min(i+rowsPerInsert, len(t.changes))]
			args := make([]any, 0, 6*len(part))
			for j, c := range part {
				args = append(args, changeSeq, i+j, c.Entity, c.EntityID, c.Op, string(c.Data))
			}
			b.add("INSERT INTO changes (seq, idx, entity, entity_id, op, data) VALUES ", 6, len(part), args)
		}
	}
	for i := 0; i < len(t.audits); i += rowsPerInsert {
		part := t.audits[i:min(i+rowsPerInsert, len(t.audits))]
		args := make([]any, 0, 7*len(part))
		for _, e := range part {
			args = append(args, e.Seq, e.Time, e.Actor, e.Action, string(e.Payload), e.PrevHash, e.Hash)
		}
		b.addTo(tableAuditLog, "INSERT INTO audit_log (seq, at, actor, action, payload, prev_hash, hash) VALUES ", 7, len(part), args)
	}
}

// AuditLater lets this change set's audit entries be chained after commit
// by the sequencer (see sequencer.go), when the change set has no feed
// changes and has not taken the registry head lock; otherwise they are
// chained in the transaction as usual.
func (t *Tx) AuditLater() { t.later = true }

// deferAudits queues the audit entries as pending rows.
func (t *Tx) deferAudits() {
	for i := 0; i < len(t.audits); i += rowsPerInsert {
		part := t.audits[i:min(i+rowsPerInsert, len(t.audits))]
		args := make([]any, 0, 5*len(part))
		for i := range part {
			e := &part[i]
			var mac []byte
			if t.s.pendingKey != nil {
				mac = audit.PendingMAC(t.s.pendingKey, e)
			}
			args = append(args, e.Time, e.Actor, e.Action, string(e.Payload), mac)
		}
		t.tail.add("INSERT INTO audit_pending (at, actor, action, payload, mac) VALUES ", 5, len(part), args)
	}
}

// rowsPerInsert bounds a multi-row INSERT (7 columns × 500 rows stays far
// below SQLite's and PostgreSQL's parameter limits).
const rowsPerInsert = 500

// logBatch collects multi-row INSERTs.
type logBatch struct {
	stmts  []string
	args   [][]any
	tables []string // the table a statement writes, where a caller tells failures apart
}

// Tables whose failures in a change set's last statement mean something to
// the caller (see failedTable).
const (
	tableIdempotency      = "idempotency"
	tableChallenges       = "challenges"
	tableAuditLog         = "audit_log"
	tableAuditCheckpoints = "audit_checkpoints"
)

// tableError is a failed INSERT of a logBatch with the table it wrote.
type tableError struct {
	table string
	err   error
}

func (e *tableError) Error() string { return e.err.Error() }
func (e *tableError) Unwrap() error { return e.err }

// failedTable names the table whose constraint failed a logBatch, or "".
// PostgreSQL reports it with the error; on SQLite every INSERT runs on its
// own and the batch knows which one failed.
func failedTable(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.TableName
	}
	var te *tableError
	if errors.As(err, &te) {
		return te.table
	}
	return ""
}

// addTo adds an INSERT into table whose failure the caller tells apart.
func (b *logBatch) addTo(table, prefix string, cols, rows int, args []any) {
	b.add(prefix, cols, rows, args)
	b.tables[len(b.tables)-1] = table
}

// suffix appends text (an ON CONFLICT clause) to the last statement added.
func (b *logBatch) suffix(text string) { b.stmts[len(b.stmts)-1] += text }

func (b *logBatch) add(prefix string, cols, rows int, args []any) {
	var sb strings.Builder
	sb.WriteString(prefix)
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	for i := 0; i < rows; i++ {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(row)
	}
	b.stmts = append(b.stmts, sb.String())
	b.args = append(b.args, args)
	b.tables = append(b.tables, "")
}

// maxCTEArgs keeps one combined PostgreSQL statement well below its limit
// of 65,535 parameters.
const maxCTEArgs = 20000

// run executes the INSERTs and then final. On PostgreSQL, INSERTs are
// folded into final as data-modifying CTEs while they fit in one statement.
func (b *logBatch) run(t *Tx, final string, finalArgs []any) error {
	finalTable := ""
	if final == "" {
		if len(b.stmts) == 0 {
			return nil
		}
		n := len(b.stmts) - 1
		final, finalArgs, finalTable = b.stmts[n], b.args[n], b.tables[n]
		b = &logBatch{stmts: b.stmts[:n], args: b.args[:n], tables: b.tables[:n]}
	}
	if t.s.dialect != Postgres {
		for i, q := range b.stmts {
			if _, err := t.tx.ExecContext(t.ctx, q, b.args[i]...); err != nil {
				return fmt.Errorf("appending change set: %w", &tableError{b.tables[i], err})
			}
		}
		if _, err := t.tx.ExecContext(t.ctx, final, finalArgs...); err != nil {
			return fmt.Errorf("writing change set: %w", &tableError{finalTable, err})
		}
		return nil
	}
	// Send the INSERTs that do not fit on their own, from the front, then
	// the rest with the final statement.
	n := len(finalArgs)
	first := len(b.stmts)
	for first > 0 && n+len(b.args[first-1]) <= maxCTEArgs {
		first--
		n += len(b.args[first])
	}
	for i := 0; i < first; i++ {
		if _, err := t.tx.ExecContext(t.ctx, rebind(Postgres, b.stmts[i]), b.args[i]...); err != nil {
			return fmt.Errorf("appending change set: %w", err)
		}
	}
	var sb strings.Builder
	var args []any
	for i := first; i < len(b.stmts); i++ {
		if i == first {
			sb.WriteString("WITH ")
		} else {
			sb.WriteString(", ")
		}
		sb.WriteByte('w')
		sb.WriteString(strconv.Itoa(i))
		sb.WriteString(" AS (")
		sb.WriteString(b.stmts[i])
		sb.WriteByte(')')
		args = append(args, b.args[i]...)
	}
	if sb.Len() > 0 {
		sb.WriteString(" ")
	}
	sb.WriteString(final)
	args = append(args, finalArgs...)
	// When nothing else was written, this statement is the whole change
	// set and needs no transaction around it.
	if _, err := t.tx.execAlone(t.ctx, rebind(Postgres, sb.String()), args...); err != nil {
		return fmt.Errorf("appending change set: %w", err)
	}
	return nil
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
	ext, err := registry.NormalizeExternalID(ext)
	if err != nil {
		return registry.User{}, err
	}
	return getUser(t.ctx, t.s, t.tx, "external_id", ext)
}

// KeyRow reads a key without its key sets (one query less, for hot paths
// that need only the key's own columns). It takes no lock: on PostgreSQL,
// before the change set has written anything, it runs without beginning
// the transaction (lazytx.go).
func (t *Tx) KeyRow(id string) (registry.Key, error) {
	k, err := scanKey(t.tx.read().QueryRowContext(t.ctx, t.s.Rebind("SELECT "+keyCols+" FROM keys WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("key %s: %w", id, registry.ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("reading key: %w", err)
	}
	return k, nil
}

// GetKey reads a key inside the transaction.
func (t *Tx) GetKey(id string) (registry.Key, error) { return getKey(t.ctx, t.s, t.tx, "id", id) }

// CreateUser inserts u, assigning ID, version and times.
func (t *Tx) CreateUser(u *registry.User) error {
	if u.ExternalID == "" {
		return registry.Invalid("missing_field", "external_id is required")
	}
	ext, err := registry.NormalizeExternalID(u.ExternalID)
	if err != nil {
		return err
	}
	u.ExternalID = ext
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

// UpdateUser replaces a user's mutable fields if its version is want. A
// change of status that takes the user's last credential out of the
// validity view (suspending or deleting a user who has one) needs a
// break-glass reason, audited as user.break_glass; without one it is
// registry.ErrLastKey.
func (t *Tx) UpdateUser(u *registry.User, want int64, breakGlass string) error {
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
	update := func() error {
		if err := t.exec("UPDATE users SET display_name = ?, email = ?, groups_json = ?, status = ?, version = ?, updated_at = ? WHERE id = ?",
			u.DisplayName, u.Email, string(g), string(u.Status), u.Version, nanos(t.now), u.ID); err != nil {
			return fmt.Errorf("updating user: %w", err)
		}
		return t.record("user", u.ID, "update", u)
	}
	if u.Status == cur.Status {
		return update() // the validity view is as it was
	}
	return t.GuardLastCredential(u.ID, breakGlass, "user.break_glass", map[string]any{"user_id": u.ID, "from": string(cur.Status), "to": string(u.Status)}, update)
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

// SetKeyStatus is ChangeKeyStatus by staff (registry.ByStaff).
func (t *Tx) SetKeyStatus(id string, want int64, status registry.KeyStatus, breakGlass string) (registry.Key, error) {
	return t.ChangeKeyStatus(registry.ByStaff, id, want, status, breakGlass)
}

// ChangeKeyStatus moves key id to status if its version is want and the
// move is one by may make (registry.KeyTransition: a *KeyTransitionError
// otherwise). On top of the table:
//   - A move that takes the owner's last credential out of the validity
//     view needs a break-glass reason, audited as key.break_glass;
//     without one it is registry.ErrLastKey (GuardLastCredential).
//   - A move to active needs a successful verification, not flagged as a
//     possible clone: for a key that is lost or revoked one made since it
//     became so, which no reason lifts; for any other key one ever, or a
//     break-glass reason, audited as key.activate_break_glass. Without it
//     the move is registry.ErrProofRequired.
func (t *Tx) ChangeKeyStatus(by registry.Authority, id string, want int64, status registry.KeyStatus, breakGlass string) (registry.Key, error) {
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
	if err := registry.KeyTransition(by, k.Status, status); err != nil {
		return registry.Key{}, err
	}
	if status == k.Status {
		// Asking for the state the key is in already changes nothing: no
		// new version, no audit entry, and updated_at keeps the time the
		// key became lost or revoked, which a fresh verification must follow.
		return k, nil
	}
	if status == registry.KeyActive && k.Status != registry.KeyActive {
		if err := t.activationProof(k, breakGlass); err != nil {
			return registry.Key{}, err
		}
		if err := t.escrowBeforeActive(id, breakGlass); err != nil {
			return registry.Key{}, err
		}
	}
	from := k.Status
	err = t.GuardLastCredential(k.OwnerID, breakGlass, "key.break_glass", map[string]any{"key_id": id, "owner_id": k.OwnerID, "from": string(from), "to": string(status)}, func() error {
		k.Status, k.Version, k.UpdatedAt = status, k.Version+1, t.now
		if err := t.exec("UPDATE keys SET status = ?, version = ?, updated_at = ? WHERE id = ?", string(status), k.Version, nanos(t.now), id); err != nil {
			return fmt.Errorf("updating key status: %w", err)
		}
		if err := t.record("key", id, "status", k); err != nil {
			return err
		}
		return t.keepCredentials(k.OwnerID, "key "+id+" moved to "+string(status))
	})
	return k, err
}

// activationProof checks that key k, not active, may become active (see
// ChangeKeyStatus). A key's updated_at is the time of its last status
// change: only status changes write the keys row.
func (t *Tx) activationProof(k registry.Key, breakGlass string) error {
	if k.Status == registry.KeyLost || k.Status == registry.KeyRevoked {
		proven, err := t.proven(k.ID, nanos(k.UpdatedAt))
		if err != nil {
			return err
		}
		if !proven {
			return registry.ErrFreshProofRequired
		}
		return nil
	}
	proven, err := t.proven(k.ID, 0)
	if err != nil || proven {
		return err
	}
	if breakGlass == "" {
		return registry.ErrProofRequired
	}
	return t.Audit("key.activate_break_glass", map[string]string{"key_id": k.ID, "owner_id": k.OwnerID, "from": string(k.Status), "reason": breakGlass})
}

// GuardLastCredential runs change, then refuses it with registry.ErrLastKey
// when it took user's last credential out of the validity view (the user
// had one before and has none after) and breakGlass is empty. With a
// reason, the change stands and is audited as action, with detail and the
// reason. The rule for "a credential in the validity view" is the view's
// own (hasValidCredential). A caller that gets an error must not commit.
func (t *Tx) GuardLastCredential(userID, breakGlass, action string, detail map[string]any, change func() error) error {
	before, err := t.hasValid(userID)
	if err != nil {
		return err
	}
	if err := change(); err != nil {
		return err
	}
	if !before {
		return nil
	}
	after, err := t.hasValid(userID)
	if err != nil || after {
		return err
	}
	if breakGlass == "" {
		return registry.ErrLastKey
	}
	payload := map[string]any{"reason": breakGlass}
	for k, v := range detail {
		payload[k] = v
	}
	return t.Audit(action, payload)
}

// hasValid reports whether user id has a credential in the validity view.
func (t *Tx) hasValid(id string) (bool, error) {
	var n int
	if err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT COUNT(*) FROM users u WHERE u.id = ? AND u.status = 'active' AND "+hasValidCredential), id).Scan(&n); err != nil {
		return false, fmt.Errorf("checking valid credentials: %w", err)
	}
	return n > 0, nil
}

// proven reports whether key id has passed a verification that was not
// flagged as a possible clone after since (Unix ns; 0 for ever): proof
// that its holder has the key.
func (t *Tx) proven(id string, since int64) (bool, error) {
	if t.provenHere[id] {
		return true, nil
	}
	var n int
	err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT COUNT(*) FROM verifications WHERE key_id = ? AND ok = 1 AND clone_suspected = 0 AND at > ?"), id, since).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("reading verifications: %w", err)
	}
	return n > 0, nil
}

// ActivateByProof moves a pending key to active because verification
// verID, signed by the key, succeeded. It is recorded and audited as
// key.activate with the verification's id. A key that is not pending is
// left alone (activated reports false); so is a pending key with PIV slots
// and no escrow (escrowBeforeActive), which stays pending.
func (t *Tx) ActivateByProof(id, verID string) (k registry.Key, activated bool, err error) {
	if err := t.Serialize(); err != nil {
		return registry.Key{}, false, err
	}
	k, err = t.GetKey(id)
	if err != nil {
		return k, false, err
	}
	if k.Status != registry.KeyPending {
		return k, false, nil
	}
	if err := t.escrowBeforeActive(id, ""); errors.Is(err, registry.ErrEscrowMissing) {
		return k, false, nil
	} else if err != nil {
		return k, false, err
	}
	k.Status, k.Version, k.UpdatedAt = registry.KeyActive, k.Version+1, t.now
	if err := t.exec("UPDATE keys SET status = ?, version = ?, updated_at = ? WHERE id = ?", string(k.Status), k.Version, nanos(t.now), id); err != nil {
		return k, false, fmt.Errorf("activating key: %w", err)
	}
	return k, true, t.record("key", id, "activate", struct {
		registry.Key
		VerificationID string `json:"verification_id"`
	}{k, verID})
}

// AddFIDOCredential stores c on its key. c.PublicKey must already be
// checked, and c.Pending set by the caller (registry.CredentialPending).
func (t *Tx) AddFIDOCredential(c *registry.FIDOCredential) error {
	if len(c.CredentialID) == 0 || c.RPID == "" {
		return registry.Invalid("missing_field", "credential_id and rp_id are required")
	}
	if c.Verdict == "" {
		c.Verdict = registry.VerdictNone
	}
	if c.AAGUID == nil {
		c.AAGUID = []byte{}
	}
	c.ID, c.CreatedAt = NewID("fc"), t.now
	if err := t.exec("INSERT INTO fido_credentials (id, key_id, credential_id, rp_id, public_key, aaguid, sign_count, cred_protect, attestation_object, attestation_client_data_hash, attestation_client_data_json, verdict, verdict_reason, pending, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		c.ID, c.KeyID, c.CredentialID, c.RPID, c.PublicKey, c.AAGUID, int64(c.SignCount), c.CredProtect, c.AttestationObject, c.AttestationClientDataHash, c.AttestationClientDataJSON, string(c.Verdict), c.VerdictReason, b2i(c.Pending), nanos(t.now)); err != nil {
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

// AddPIVSlot stores p on its key. p.PublicKey must already be checked, and
// p.Pending set by the caller (registry.CredentialPending).
func (t *Tx) AddPIVSlot(p *registry.PIVSlot) error {
	if p.Verdict == "" {
		p.Verdict = registry.VerdictNone
	}
	p.ID, p.CreatedAt = NewID("ps"), t.now
	if err := t.exec("INSERT INTO piv_slots (id, key_id, slot, public_key, certificate, attestation_certificate, attestation_intermediate, verdict, verdict_reason, pending, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		p.ID, p.KeyID, p.Slot, p.PublicKey, p.Certificate, p.AttestationCert, p.AttestationIntermediate, string(p.Verdict), p.VerdictReason, b2i(p.Pending), nanos(t.now)); err != nil {
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

// UseChallenge records challenge c as used, in the verification's
// transaction. The challenge itself was issued without a row (its id is
// authenticated by the server); the row's primary key makes a second use
// registry.ErrChallenge. An expired challenge is refused too. On
// PostgreSQL the row goes in with the change set's last statement, so a
// second use is refused at commit rather than here (Write maps it).
func (t *Tx) UseChallenge(c registry.Challenge) error {
	if !t.now.Before(c.ExpiresAt) {
		return fmt.Errorf("%w: expired", registry.ErrChallenge)
	}
	q := "INSERT INTO challenges (id, key_id, kind, credential_id, nonce, expires_at, used) VALUES "
	args := []any{c.ID, c.KeyID, c.Kind, c.CredentialID, c.Nonce, nanos(c.ExpiresAt), 1}
	if t.s.dialect == Postgres {
		t.tail.addTo(tableChallenges, q, 7, 1, args)
		return nil
	}
	if err := t.exec(q+"(?, ?, ?, ?, ?, ?, ?)", args...); err != nil {
		if isUnique(err) {
			return fmt.Errorf("%w: already used", registry.ErrChallenge)
		}
		if isForeignKey(err) {
			return fmt.Errorf("%w: its key no longer exists", registry.ErrChallenge)
		}
		return fmt.Errorf("recording challenge use: %w", err)
	}
	return nil
}

// RecordVerification stores v and audits it.
func (t *Tx) RecordVerification(v *registry.Verification) error {
	v.ID, v.At = NewID("ver"), t.now
	// Nothing in the transaction reads it back: it goes in with the
	// change set's last statement.
	t.tail.add("INSERT INTO verifications (id, challenge_id, key_id, kind, credential_id, ok, reason, clone_suspected, at) VALUES ", 9, 1,
		[]any{v.ID, v.ChallengeID, v.KeyID, v.Kind, v.CredentialID, b2i(v.OK), v.Reason, b2i(v.CloneSuspected), nanos(t.now)})
	if v.OK && !v.CloneSuspected {
		if t.provenHere == nil {
			t.provenHere = map[string]bool{}
		}
		t.provenHere[v.KeyID] = true
	}
	if err := t.Audit("verification", v); err != nil {
		return err
	}
	return t.verificationHealth(v)
}

// ConfirmCredential takes a pending credential (kind "fido2" or "piv", id
// its registry id) into the validity view after it passed a verification,
// recorded as fido2_credential.confirm or piv_slot.confirm with the
// verification's id. A credential that is not pending is left alone.
func (t *Tx) ConfirmCredential(kind, id, verID string) error {
	table, entity := "fido_credentials", "fido2_credential"
	if kind == "piv" {
		table, entity = "piv_slots", "piv_slot"
	}
	n, err := t.execN("UPDATE "+table+" SET pending = 0 WHERE id = ? AND pending = 1", id)
	if err != nil {
		return fmt.Errorf("confirming credential: %w", err)
	}
	if n == 0 {
		return nil
	}
	return t.record(entity, id, "confirm", map[string]string{"id": id, "verification_id": verID})
}

// UpdateSignCount stores a FIDO2 credential's new signature counter and
// clone flag (WebAuthn L2 §6.1.1).
func (t *Tx) UpdateSignCount(credID string, count uint32, clone bool) error {
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
		var owner string
		if err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT k.owner_id FROM fido_credentials f JOIN keys k ON k.id = f.key_id WHERE f.id = ?"), credID).Scan(&owner); err != nil {
			return fmt.Errorf("reading credential owner: %w", err)
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

// RedeemAccessPass marks the pass whose secret hashes to passHash as used
// and returns it. check, when not nil, may refuse the pass (for example a
// pass of another user) before it is used. An unknown, redeemed or expired
// pass is registry.ErrAccessPass; the pass itself is never recorded.
func (t *Tx) RedeemAccessPass(passHash []byte, check func(registry.TemporaryAccessPass) error) (registry.TemporaryAccessPass, error) {
	var p registry.TemporaryAccessPass
	var exp, created int64
	var redeemed sql.NullInt64
	err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT id, user_id, reason, expires_at, created_at, redeemed_at FROM access_passes WHERE pass_hash = ?"), passHash).
		Scan(&p.ID, &p.UserID, &p.Reason, &exp, &created, &redeemed)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("%w: unknown pass", registry.ErrAccessPass)
	}
	if err != nil {
		return p, fmt.Errorf("reading access pass: %w", err)
	}
	p.ExpiresAt, p.CreatedAt = fromNanos(exp), fromNanos(created)
	if redeemed.Valid {
		at := fromNanos(redeemed.Int64)
		p.RedeemedAt = &at
	}
	if check != nil {
		if err := check(p); err != nil {
			return p, err
		}
	}
	if st := p.AccessPassStatus(t.now); st != "active" {
		return p, fmt.Errorf("%w: %s", registry.ErrAccessPass, st)
	}
	// redeemed_at IS NULL makes two concurrent redemptions race on the row
	// lock: only one updates it.
	n, err := t.execN("UPDATE access_passes SET redeemed_at = ? WHERE id = ? AND redeemed_at IS NULL", nanos(t.now), p.ID)
	if err != nil {
		return p, fmt.Errorf("redeeming access pass: %w", err)
	}
	if n != 1 {
		return p, fmt.Errorf("%w: redeemed", registry.ErrAccessPass)
	}
	now := t.now
	p.RedeemedAt, p.Status = &now, "redeemed"
	return p, t.record("access_pass", p.ID, "redeem", p)
}

// RevokeToken revokes every unrevoked token named name. No such token is
// registry.ErrNotFound.
func (t *Tx) RevokeToken(name string) error {
	n, err := t.execN("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", nanos(t.now), name)
	if err != nil {
		return fmt.Errorf("revoking token: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("token %s: %w", name, registry.ErrNotFound)
	}
	return t.Audit("token.revoke", map[string]any{"name": name, "tokens": n})
}

// CreateToken stores an API token by its hash. Names are unique among
// tokens that are not revoked.
func (t *Tx) CreateToken(hash []byte, name, role, userID string) error {
	var n int
	if err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT COUNT(*) FROM tokens WHERE name = ? AND revoked_at IS NULL"), name).Scan(&n); err != nil {
		return fmt.Errorf("reading tokens: %w", err)
	}
	if n > 0 {
		return &registry.DuplicateError{Entity: "token", Field: "name"}
	}
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

// Expired counts what Expire deleted.
type Expired struct {
	Idempotency int64 // idempotency rows older than the TTL
	Challenges  int64 // challenges past their expiry
}

// Expire deletes idempotency rows created before idemBefore (a replay of
// such a key is then treated as a new request) and challenges that expired
// before now. Neither is part of the change feed or the audit chain.
func (s *Store) Expire(ctx context.Context, idemBefore, now time.Time) (Expired, error) {
	var e Expired
	r, err := s.db.ExecContext(ctx, s.Rebind("DELETE FROM idempotency WHERE created_at < ?"), nanos(idemBefore))
	if err != nil {
		return e, fmt.Errorf("expiring idempotency keys: %w", err)
	}
	e.Idempotency, _ = r.RowsAffected()
	r, err = s.db.ExecContext(ctx, s.Rebind("DELETE FROM challenges WHERE expires_at < ?"), nanos(now))
	if err != nil {
		return e, fmt.Errorf("expiring challenges: %w", err)
	}
	e.Challenges, _ = r.RowsAffected()
	return e, nil
}
