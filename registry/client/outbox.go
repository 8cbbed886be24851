package client

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers "sqlite"
)

// EntryState is where an outbox entry stands.
type EntryState string

const (
	Pending  EntryState = "pending"
	Done     EntryState = "done"
	Conflict EntryState = "conflict" // the registry holds a conflicting state: resolve by hand
	Rejected EntryState = "rejected" // the registry refused the request as invalid
)

// Entry is one queued write.
type Entry struct {
	Seq      int64
	Key      string // Idempotency-Key
	Method   string
	Path     string
	Body     []byte
	State    EntryState
	Status   int
	Response []byte // the registry's answer (the result, or the error with current state)
	Error    string
	Queued   time.Time
}

// Progress reports outbox replay.
type Progress struct {
	Entry Entry
	Done  int // entries settled in this flush
	Total int // entries pending when the flush began
}

type outbox struct{ db *sql.DB }

func openOutbox(path string) (*outbox, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating outbox dir: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return nil, fmt.Errorf("opening outbox: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS outbox (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		idem_key TEXT NOT NULL UNIQUE,
		method TEXT NOT NULL,
		path TEXT NOT NULL,
		body BLOB NOT NULL,
		state TEXT NOT NULL,
		status INTEGER NOT NULL DEFAULT 0,
		response BLOB,
		error TEXT NOT NULL DEFAULT '',
		queued_at INTEGER NOT NULL)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating outbox: %w", err)
	}
	return &outbox{db: db}, nil
}

func (o *outbox) close() error { return o.db.Close() }

// QueueEnrolment stores e in the outbox (durably, before returning) and
// returns its entry. Flush sends it.
func (c *Client) QueueEnrolment(ctx context.Context, e Enrolment) (Entry, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return Entry{}, err
	}
	en := Entry{Key: newKey(), Method: "POST", Path: "/v1/enrolments", Body: b, State: Pending, Queued: time.Now().UTC()}
	res, err := c.outbox.db.ExecContext(ctx, "INSERT INTO outbox (idem_key, method, path, body, state, queued_at) VALUES (?, ?, ?, ?, ?, ?)",
		en.Key, en.Method, en.Path, en.Body, string(en.State), en.Queued.UnixNano())
	if err != nil {
		return Entry{}, fmt.Errorf("queueing enrolment: %w", err)
	}
	en.Seq, _ = res.LastInsertId()
	return en, nil
}

// Entries lists outbox entries in a state ("" for all), in queue order.
func (c *Client) Entries(ctx context.Context, state EntryState) ([]Entry, error) {
	q := "SELECT seq, idem_key, method, path, body, state, status, response, error, queued_at FROM outbox"
	var args []any
	if state != "" {
		q += " WHERE state = ?"
		args = append(args, string(state))
	}
	rows, err := c.outbox.db.QueryContext(ctx, q+" ORDER BY seq", args...)
	if err != nil {
		return nil, fmt.Errorf("reading outbox: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var st string
		var qa int64
		if err := rows.Scan(&e.Seq, &e.Key, &e.Method, &e.Path, &e.Body, &st, &e.Status, &e.Response, &e.Error, &qa); err != nil {
			return nil, fmt.Errorf("reading outbox: %w", err)
		}
		e.State, e.Queued = EntryState(st), time.Unix(0, qa).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// Flush sends pending entries in queue order, each with its own
// Idempotency-Key, so an entry the registry committed before a crash is
// answered from the registry's record, not written twice. It stops at the
// first ErrUnreachable (the rest stay pending, in order). An entry the
// registry refuses with 409 becomes Conflict, any other 4xx Rejected; both
// are reported through progress and kept for the caller, and the flush goes
// on. progress may be nil.
func (c *Client) Flush(ctx context.Context, progress func(Progress)) error {
	pending, err := c.Entries(ctx, Pending)
	if err != nil {
		return err
	}
	for i, e := range pending {
		if err := ctx.Err(); err != nil {
			return err
		}
		status, raw, err := c.do(ctx, e.Method, e.Path, e.Body, map[string]string{"Idempotency-Key": e.Key}, nil)
		var ae *APIError
		switch {
		case err == nil:
			e.State = Done
		case errors.As(err, &ae) && ae.Conflict():
			e.State, e.Error = Conflict, err.Error()
		case errors.As(err, &ae):
			e.State, e.Error = Rejected, err.Error()
		default:
			return fmt.Errorf("flushing outbox entry %d: %w", e.Seq, err)
		}
		e.Status, e.Response = status, raw
		if _, err := c.outbox.db.ExecContext(ctx, "UPDATE outbox SET state = ?, status = ?, response = ?, error = ? WHERE seq = ?",
			string(e.State), e.Status, e.Response, e.Error, e.Seq); err != nil {
			return fmt.Errorf("recording outbox result: %w", err)
		}
		if progress != nil {
			progress(Progress{Entry: e, Done: i + 1, Total: len(pending)})
		}
	}
	return nil
}
