package validity

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers "sqlite"
)

// Failure is one failed sign-in to report to the registry as a lockout
// signal (POST /v1/signals/lockout).
type Failure struct {
	UserID string `json:"user_id"`
	KeyID  string `json:"key_id"`
	// CredentialID is the FIDO2 credential the sign-in used, if any.
	CredentialID []byte `json:"credential_id,omitempty"`
	// Reason is "failed_signin" (the default), "pin_blocked" or
	// "credential_not_recognised".
	Reason string `json:"reason,omitempty"`
}

// ErrQueueFull: Options.MaxQueue lockout signals are waiting already; the
// failure was not queued.
var ErrQueueFull = errors.New("lockout signal queue is full")

// signalQueue holds lockout signals until the registry has them. Each
// carries the Idempotency-Key it was queued with, so a signal whose answer
// was lost on the way is recorded once when it is sent again.
type signalQueue struct {
	db   *sql.DB
	api  *api
	opt  Options
	wake chan struct{}
	send sync.Mutex // one delivery pass at a time

	mu                          sync.Mutex
	queued, delivered, rejected int
	lastRejection               string
}

func openSignalQueue(opt Options, a *api) (*signalQueue, error) {
	path := filepath.Join(opt.Dir, "signals.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return nil, fmt.Errorf("opening lockout signal queue: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS signals (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		idem_key TEXT NOT NULL UNIQUE,
		body BLOB NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		queued_at INTEGER NOT NULL)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating lockout signal queue: %w", err)
	}
	q := &signalQueue{db: db, api: a, opt: opt, wake: make(chan struct{}, 1)}
	if err := db.QueryRow("SELECT COUNT(*) FROM signals").Scan(&q.queued); err != nil {
		db.Close()
		return nil, fmt.Errorf("reading lockout signal queue: %w", err)
	}
	return q, nil
}

func (q *signalQueue) close() error { return q.db.Close() }

func (q *signalQueue) counts() (queued, delivered, rejected int) {
	if q == nil {
		return 0, 0, 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.queued, q.delivered, q.rejected
}

// Report queues f for delivery and returns once it is on disk. Run sends
// it (and FlushSignals, when called).
func (r *Replica) Report(ctx context.Context, f Failure) error {
	if f.UserID == "" || f.KeyID == "" {
		return errors.New("a lockout signal needs a user id and a key id")
	}
	if f.Reason == "" {
		f.Reason = "failed_signin"
	}
	body, err := json.Marshal(f)
	if err != nil {
		return err
	}
	var k [16]byte
	rand.Read(k[:])
	q := r.sig
	q.mu.Lock()
	if q.queued >= q.opt.MaxQueue {
		q.mu.Unlock()
		return ErrQueueFull
	}
	q.queued++
	q.mu.Unlock()
	if _, err := q.db.ExecContext(ctx, "INSERT INTO signals (idem_key, body, queued_at) VALUES (?, ?, ?)", "lockout-"+hex.EncodeToString(k[:]), body, q.opt.Now().UnixNano()); err != nil {
		q.mu.Lock()
		q.queued--
		q.mu.Unlock()
		return fmt.Errorf("queueing lockout signal: %w", err)
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// FlushSignals sends every queued lockout signal now, oldest first, and
// stops at the first one the registry does not take because it cannot be
// reached (ErrUnreachable; that one and the rest stay queued). A signal the
// registry refuses for good (a 4xx other than 429) is dropped and counted
// in Status.Rejected.
func (r *Replica) FlushSignals(ctx context.Context) error { return r.sig.deliver(ctx) }

func (q *signalQueue) deliver(ctx context.Context) error {
	q.send.Lock()
	defer q.send.Unlock()
	for {
		var seq int64
		var key string
		var body []byte
		err := q.db.QueryRowContext(ctx, "SELECT seq, idem_key, body FROM signals ORDER BY seq LIMIT 1").Scan(&seq, &key, &body)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading lockout signal queue: %w", err)
		}
		rc, _, err := q.api.open(ctx, "POST", "/v1/signals/lockout", body, map[string]string{"Idempotency-Key": key})
		var ae *APIError
		switch {
		case err == nil:
			io.Copy(io.Discard, io.LimitReader(rc, 1<<20))
			rc.Close()
		case errors.As(err, &ae):
			q.mu.Lock()
			q.rejected++
			q.lastRejection = ae.Error()
			q.mu.Unlock()
		default:
			q.db.ExecContext(ctx, "UPDATE signals SET attempts = attempts + 1 WHERE seq = ?", seq)
			return fmt.Errorf("sending lockout signal: %w", err)
		}
		if _, err := q.db.ExecContext(ctx, "DELETE FROM signals WHERE seq = ?", seq); err != nil {
			return fmt.Errorf("removing a sent lockout signal: %w", err)
		}
		q.mu.Lock()
		q.queued--
		if ae == nil {
			q.delivered++
		}
		q.mu.Unlock()
	}
}

// run delivers queued signals until ctx ends, backing off exponentially
// (BackoffMin doubling up to BackoffMax) while the registry cannot be
// reached.
func (q *signalQueue) run(ctx context.Context) {
	backoff := time.Duration(0)
	for {
		wait := q.opt.PollInterval
		if err := q.deliver(ctx); err != nil {
			backoff = min(max(2*backoff, q.opt.BackoffMin), q.opt.BackoffMax)
			wait = backoff
		} else {
			backoff = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-q.wake:
			if backoff > 0 {
				// Wait out the back-off even when more failures arrive.
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		case <-t.C:
		}
		t.Stop()
	}
}
