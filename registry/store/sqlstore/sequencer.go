package sqlstore

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/keydesk/keydesk/registry/audit"
)

// Deferred audit entries. A change set that changes nothing in the feed and
// only records an audit entry (a verification of an active key) may ask for
// its entry to be chained later (Tx.AuditLater): the entry is committed with
// the change set into audit_pending, without taking the registry head lock,
// and a sequencer appends every pending entry to the hash chain in one
// locked transaction with one signed checkpoint. Under load many entries
// share one lock acquisition; idle, an entry is chained within moments.
// Pending entries survive a crash and are chained by the next sequencer
// pass, which also runs before the audit log is read or verified.

// sequencer runs the background passes of one store.
type sequencer struct {
	once sync.Once
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// kick wakes the sequencer, starting it on first use.
func (s *Store) kick() {
	s.seq.once.Do(func() {
		s.seq.wake = make(chan struct{}, 1)
		s.seq.stop = make(chan struct{})
		s.seq.done = make(chan struct{})
		go s.sequence()
	})
	select {
	case s.seq.wake <- struct{}{}:
	default:
	}
}

func (s *Store) sequence() {
	defer close(s.seq.done)
	for {
		select {
		case <-s.seq.stop:
			s.SequenceAudit(context.Background())
			return
		case <-s.seq.wake:
		}
		// Entries that commit while a pass runs wake the sequencer again,
		// so a pass that took less than a full batch needs no follow-up.
		// A short pause first lets a busy registry gather more entries
		// under one lock and one signature.
		select {
		case <-s.seq.stop:
		case <-time.After(sequencePause):
		}
		for {
			n, err := s.SequenceAudit(context.Background())
			if err != nil {
				// Left pending; the next wake-up or read retries.
				select {
				case <-s.seq.stop:
				case <-time.After(100 * time.Millisecond):
				}
				break
			}
			if n < sequenceBatch {
				break
			}
		}
	}
}

// stopSequencer chains what is pending and stops the sequencer.
func (s *Store) stopSequencer() {
	if s.seq.stop == nil {
		return
	}
	close(s.seq.stop)
	<-s.seq.done
}

// sequencePause is how long a woken sequencer gathers entries before a pass.
const sequencePause = 50 * time.Millisecond

// sequenceBatch bounds the entries chained in one pass.
const sequenceBatch = 5000

// SequenceAudit appends pending audit entries to the hash chain, with one
// signed checkpoint, and reports how many pending rows it took. A row whose
// MAC does not match (audit.PendingMAC: it was not written by the
// registry's write path) is not chained: it moves to audit_quarantine,
// where verification reports it, and is logged.
func (s *Store) SequenceAudit(ctx context.Context) (int, error) {
	sqlTx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("beginning audit sequencing: %w", err)
	}
	defer sqlTx.Rollback()
	t := &Tx{ctx: ctx, s: s, tx: begun(sqlTx), now: s.now().UTC()}
	if err := t.Serialize(); err != nil {
		return 0, err
	}
	// The rows deleted are exactly the rows returned, so an entry that
	// commits meanwhile is never removed without being chained.
	rows, err := sqlTx.QueryContext(ctx, s.Rebind("DELETE FROM audit_pending WHERE id IN (SELECT id FROM audit_pending ORDER BY id LIMIT ?) RETURNING id, at, actor, action, payload, mac"), sequenceBatch)
	if err != nil {
		return 0, fmt.Errorf("taking pending audit entries: %w", err)
	}
	type pending struct {
		id  int64
		e   audit.Entry
		mac []byte
	}
	var ps []pending
	for rows.Next() {
		var p pending
		var payload string
		if err := rows.Scan(&p.id, &p.e.Time, &p.e.Actor, &p.e.Action, &payload, &p.mac); err != nil {
			rows.Close()
			return 0, fmt.Errorf("taking pending audit entries: %w", err)
		}
		p.e.Payload = []byte(payload)
		ps = append(ps, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("taking pending audit entries: %w", err)
	}
	if len(ps) == 0 {
		return 0, nil
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].id < ps[j].id })
	// A row copied within one batch repeats its MAC: the copy is rejected.
	seen := make(map[string]bool, len(ps))
	var rejected []audit.Rejected
	for _, p := range ps {
		if !s.pendingAuthentic(&p.e, p.mac) || (p.mac != nil && seen[string(p.mac)]) {
			if _, err := sqlTx.ExecContext(ctx, s.Rebind("INSERT INTO audit_quarantine (id, at, actor, action, payload, mac, found_at) VALUES (?, ?, ?, ?, ?, ?, ?)"),
				p.id, p.e.Time, p.e.Actor, p.e.Action, string(p.e.Payload), p.mac, nanos(t.now)); err != nil {
				return 0, fmt.Errorf("quarantining pending audit entry %d: %w", p.id, err)
			}
			rejected = append(rejected, audit.Rejected{ID: p.id, Actor: p.e.Actor, Action: p.e.Action})
			continue
		}
		seen[string(p.mac)] = true
		t.audits = append(t.audits, p.e)
	}
	if len(t.audits) > 0 {
		if err := t.appendLog(); err != nil {
			return 0, err
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return 0, fmt.Errorf("committing audit sequencing: %w", err)
	}
	t.committed()
	for _, r := range rejected {
		audit.LogRejected(r)
	}
	return len(ps), nil
}
