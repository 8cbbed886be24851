package sqlstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/keydesk/keydesk/registry/audit"
)

// chainGuard remembers the newest audit head this process signed or
// verified. A writer about to sign a checkpoint first confirms that the
// head it chains from is one the registry signed (checkExtends): when the
// head row still holds the remembered head, as it does whenever this
// process wrote last, that costs nothing; otherwise one query reads the
// newest checkpoint and its signature is checked.
type chainGuard struct {
	mu   sync.Mutex
	seq  int64
	hash []byte
}

// remember records a head known to be signed; it only moves forward,
// except after a restore replaced the chain.
func (g *chainGuard) remember(seq int64, hash []byte, rewritten bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if rewritten || seq > g.seq {
		g.seq, g.hash = seq, hash
	}
}

func (g *chainGuard) known() (int64, []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seq, g.hash
}

// tampered is the error a write fails with when the chain it would extend
// is not the signed one.
func tampered(seq int64, format string, args ...any) error {
	return fmt.Errorf("refusing to extend the audit chain: %w", &audit.TamperError{Seq: seq, Reason: fmt.Sprintf(format, args...)})
}

// checkExtends confirms, under the head lock, that the head this change
// set chains from (t.auditSeq, t.auditHash, read from registry_head) is the
// newest checkpoint the registry signed, with nothing after it in the log.
// Otherwise rows were added, removed or rewritten outside the registry and
// signing a checkpoint over the new head would vouch for them: the write
// fails with an audit.ErrTampered error instead.
func (t *Tx) checkExtends() error {
	if t.auditSeq == 0 && !bytes.Equal(t.auditHash, audit.Genesis) {
		return tampered(1, "the registry head is at no entry but its hash is not the genesis hash")
	}
	if t.auditSeq > 0 && !bytes.Equal(t.headEntryHash, t.auditHash) {
		// On PostgreSQL a lock that waited for another writer returns the
		// head row it committed, but the rest of the statement still sees
		// the snapshot from before: read the entry again, now.
		var h []byte
		err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT hash FROM audit_log WHERE seq = ?"), t.auditSeq).Scan(&h)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("reading the audit head entry: %w", err)
		}
		if !bytes.Equal(h, t.auditHash) {
			return tampered(t.auditSeq, "missing or changed: the log's entry at the registry head does not have the head's hash")
		}
		t.headEntryHash = h
	}
	seq, hash := t.s.guard.known()
	switch {
	case seq > 0 && t.auditSeq == seq && bytes.Equal(t.auditHash, hash):
		return nil
	case seq > 0 && t.auditSeq < seq:
		return tampered(t.auditSeq+1, "missing: this registry signed entry %d but the registry head is at %d (truncated)", seq, t.auditSeq)
	case seq > 0 && t.auditSeq == seq:
		return tampered(seq, "the registry head's hash differs from the entry this registry signed")
	}
	var cp audit.Checkpoint
	var maxSeq sql.NullInt64
	var entryHash []byte
	err := t.tx.QueryRowContext(t.ctx, `SELECT c.seq, c.hash, c.signature, (SELECT MAX(seq) FROM audit_log), (SELECT l.hash FROM audit_log l WHERE l.seq = c.seq)
FROM audit_checkpoints c ORDER BY c.seq DESC LIMIT 1`).Scan(&cp.Seq, &cp.Hash, &cp.Signature, &maxSeq, &entryHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if t.auditSeq != 0 {
			return tampered(1, "the registry head is at entry %d but no checkpoint was signed", t.auditSeq)
		}
		var n int64
		if err := t.tx.QueryRowContext(t.ctx, "SELECT COUNT(*) FROM audit_log").Scan(&n); err != nil {
			return fmt.Errorf("reading the audit chain: %w", err)
		}
		if n != 0 {
			return tampered(1, "the audit log has %d entries but no checkpoint was signed", n)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading the newest audit checkpoint: %w", err)
	}
	pub := t.s.signer.Public().(ed25519.PublicKey)
	switch {
	case !audit.VerifyCheckpoint(pub, cp):
		return tampered(cp.Seq, "the newest checkpoint's signature is invalid")
	case t.auditSeq > cp.Seq:
		return tampered(cp.Seq+1, "not covered by a signed checkpoint (the registry head is at %d)", t.auditSeq)
	case t.auditSeq < cp.Seq:
		return tampered(t.auditSeq+1, "missing: a checkpoint signs entry %d but the registry head is at %d", cp.Seq, t.auditSeq)
	case !bytes.Equal(cp.Hash, t.auditHash):
		return tampered(cp.Seq, "the registry head's hash differs from the signed checkpoint")
	case !bytes.Equal(entryHash, cp.Hash):
		return tampered(cp.Seq, "the entry's hash differs from the signed checkpoint")
	case maxSeq.Int64 != cp.Seq:
		return tampered(cp.Seq+1, "beyond the newest signed checkpoint (the log reaches %d)", maxSeq.Int64)
	}
	t.s.guard.remember(cp.Seq, cp.Hash, false)
	return nil
}

// chainConflict turns a unique violation on the audit log or its
// checkpoints while appending after head into the tamper error it is: a
// row already holds a seq the head says is free.
func chainConflict(err error, head int64) error {
	if t := failedTable(err); isUnique(err) && (t == tableAuditLog || t == tableAuditCheckpoints) {
		return tampered(head+1, "a row already in %s is beyond the registry head (added outside the registry)", t)
	}
	return err
}

// committed announces the checkpoint this change set signed, once it is
// committed: the guard remembers the head and the witness records it.
func (t *Tx) committed() {
	cp := t.signed
	if cp == nil {
		return
	}
	t.signed = nil
	t.s.guard.remember(cp.Seq, cp.Hash, t.rechained)
	if t.s.onCheckpoint != nil {
		t.s.onCheckpoint(*cp, t.rechained)
	}
}

// pendingAuthentic reports whether a pending row carries the MAC only this
// registry's write path produces. A store without a signing key chains
// nothing it could sign, and checks nothing.
func (s *Store) pendingAuthentic(e *audit.Entry, mac []byte) bool {
	if s.pendingKey == nil {
		return true
	}
	return hmac.Equal(mac, audit.PendingMAC(s.pendingKey, e))
}

// AuditChain reads what audit verification needs in one snapshot: every
// entry and checkpoint, the registry head, and the pending rows, sorted
// into authentic ones still waiting and rejected ones (in quarantine, or
// pending with a MAC that fails). It chains pending entries first when it
// can; when that fails the read still goes ahead and reports them as
// pending (verification checks what is chained).
func (s *Store) AuditChain(ctx context.Context) (audit.Log, error) {
	var l audit.Log
	_ = s.chainPending(ctx)
	tx, err := s.readTx(ctx)
	if err != nil {
		return l, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, "SELECT seq, at, actor, action, payload, prev_hash, hash FROM audit_log ORDER BY seq")
	if err != nil {
		return l, fmt.Errorf("reading audit log: %w", err)
	}
	for rows.Next() {
		var e audit.Entry
		var p string
		if err := rows.Scan(&e.Seq, &e.Time, &e.Actor, &e.Action, &p, &e.PrevHash, &e.Hash); err != nil {
			rows.Close()
			return l, fmt.Errorf("reading audit log: %w", err)
		}
		e.Payload = []byte(p)
		l.Entries = append(l.Entries, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return l, fmt.Errorf("reading audit log: %w", err)
	}
	rows, err = tx.QueryContext(ctx, "SELECT seq, hash, signature FROM audit_checkpoints ORDER BY seq")
	if err != nil {
		return l, fmt.Errorf("reading audit checkpoints: %w", err)
	}
	for rows.Next() {
		var c audit.Checkpoint
		if err := rows.Scan(&c.Seq, &c.Hash, &c.Signature); err != nil {
			rows.Close()
			return l, fmt.Errorf("reading audit checkpoints: %w", err)
		}
		l.Checkpoints = append(l.Checkpoints, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return l, fmt.Errorf("reading audit checkpoints: %w", err)
	}
	var h audit.Head
	if err := tx.QueryRowContext(ctx, "SELECT audit_seq, audit_hash FROM registry_head WHERE id = 1").Scan(&h.Seq, &h.Hash); err != nil {
		return l, fmt.Errorf("reading registry head: %w", err)
	}
	l.Head = &h
	rows, err = tx.QueryContext(ctx, "SELECT id, at, actor, action, payload, mac, 1 FROM audit_quarantine UNION ALL SELECT id, at, actor, action, payload, mac, 0 FROM audit_pending ORDER BY 1")
	if err != nil {
		return l, fmt.Errorf("reading pending audit entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e audit.Entry
		var id int64
		var p string
		var mac []byte
		var quarantined int
		if err := rows.Scan(&id, &e.Time, &e.Actor, &e.Action, &p, &mac, &quarantined); err != nil {
			return l, fmt.Errorf("reading pending audit entries: %w", err)
		}
		e.Payload = []byte(p)
		if quarantined == 1 || !s.pendingAuthentic(&e, mac) {
			l.Rejected = append(l.Rejected, audit.Rejected{ID: id, Actor: e.Actor, Action: e.Action})
		} else {
			l.Pending++
		}
	}
	return l, rows.Err()
}

// AuditHashAt returns the hash of entry seq, or ok false when the log has
// no such entry.
func (s *Store) AuditHashAt(ctx context.Context, seq int64) (hash []byte, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, s.Rebind("SELECT hash FROM audit_log WHERE seq = ?"), seq).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading audit entry %d: %w", seq, err)
	}
	return hash, true, nil
}
