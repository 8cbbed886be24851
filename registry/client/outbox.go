package client

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"modernc.org/sqlite" // registers "sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keydesk/keydesk/internal/crashpoint"
	"github.com/keydesk/keydesk/registry"
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
	Kind     string // "enrolment", "key-status", "escrow", "fido2", "piv"
	Key      string // Idempotency-Key
	Method   string
	Path     string
	Header   map[string]string // If-Match, when the write is conditional
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

// ErrOutboxFull: the disk holding the outbox is full. Entries queued before
// are kept; the write that failed was not queued (QueueX) or its result not
// recorded (Flush: the entry stays pending and its replay is answered from
// the registry's record of its Idempotency-Key).
var ErrOutboxFull = errors.New("the outbox's disk is full")

// storeErr marks a full disk (SQLITE_FULL, or ENOSPC from the file system)
// as ErrOutboxFull.
func storeErr(err error) error {
	var se *sqlite.Error
	if (errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL) || errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: %w", ErrOutboxFull, err)
	}
	return err
}

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
	if err := upgradeOutbox(db); err != nil {
		db.Close()
		return nil, err
	}
	return &outbox{db: db}, nil
}

// upgradeOutbox brings an outbox written by an older client up to date
// (PRAGMA user_version counts the steps applied).
func upgradeOutbox(db *sql.DB) error {
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("reading outbox version: %w", err)
	}
	if v < 1 {
		// Version 1: every kind of write, conditional ones with headers.
		for _, q := range []string{
			"ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'enrolment'",
			"ALTER TABLE outbox ADD COLUMN headers TEXT NOT NULL DEFAULT '{}'",
			"PRAGMA user_version = 1",
		} {
			if _, err := db.Exec(q); err != nil {
				return fmt.Errorf("upgrading outbox: %w", err)
			}
		}
	}
	return nil
}

func (o *outbox) close() error { return o.db.Close() }

// Which writes are queued. The outbox holds the writes a desktop makes that
// stay correct when they reach the registry later, in order:
//   - enrolments (QueueEnrolment),
//   - key status changes such as "lost" or "suspended" (QueueKeyStatus),
//     conditional on the key's version, so a change made meanwhile by
//     someone else surfaces as a conflict instead of being overwritten,
//   - escrow puts (QueueEscrow), conditional on the blob's version; the blob
//     is already age-encrypted to the helpdesk recipients,
//   - credentials added to a registered key (QueueFIDO2, QueuePIV).
//
// Online only, never queued: challenges and verifications (a challenge is
// valid for two minutes and must be signed by the key while it is
// present), temporary access passes (the pass is shown once to be handed
// over now; redeeming one is the moment of access), and token revocation.

// QueueEnrolment stores e in the outbox (durably, before returning) and
// returns its entry. Flush sends it.
func (c *Client) QueueEnrolment(ctx context.Context, e Enrolment) (Entry, error) {
	return c.queue(ctx, "enrolment", "", "POST", "/v1/enrolments", e, nil)
}

// QueueEnrolmentAs queues the enrolment body (a JSON Enrolment) under
// idempotency key key, which the caller derives from its own durable record
// of the enrolment. Queueing the same key and body again returns the entry
// already queued instead of a second one: a caller that crashed between
// queueing and recording that it queued simply queues again, and the
// registry sees one request, replayed under one key. The same key with
// another body is ErrKeyReused.
func (c *Client) QueueEnrolmentAs(ctx context.Context, key string, body json.RawMessage) (Entry, error) {
	if key == "" {
		return Entry{}, errors.New("queueing an enrolment: empty idempotency key")
	}
	return c.queue(ctx, "enrolment", key, "POST", "/v1/enrolments", body, nil)
}

// ErrKeyReused: an outbox entry with the idempotency key exists already,
// for another request.
var ErrKeyReused = errors.New("the idempotency key is queued already for another request")

// QueueKeyStatus queues a status change of key keyID, conditional on the
// key still being at version (a 409 on replay becomes a Conflict entry).
func (c *Client) QueueKeyStatus(ctx context.Context, keyID string, version int64, status registry.KeyStatus, breakGlass string) (Entry, error) {
	return c.queue(ctx, "key-status", "", "POST", "/v1/keys/"+url.PathEscape(keyID)+"/status",
		map[string]string{"status": string(status), "break_glass_reason": breakGlass}, map[string]string{"If-Match": etag(version)})
}

// QueueEscrow queues storing blob (already encrypted) as key keyID's escrow
// of kind, replacing version (0 for a new blob).
func (c *Client) QueueEscrow(ctx context.Context, keyID, kind string, blob []byte, version int64) (Entry, error) {
	var hdr map[string]string
	if version > 0 {
		hdr = map[string]string{"If-Match": etag(version)}
	}
	return c.queue(ctx, "escrow", "", "PUT", "/v1/keys/"+url.PathEscape(keyID)+"/escrow/"+url.PathEscape(kind), map[string][]byte{"blob": blob}, hdr)
}

// QueueFIDO2 queues adding a FIDO2 credential to registered key keyID.
func (c *Client) QueueFIDO2(ctx context.Context, keyID string, cred FIDO2Credential) (Entry, error) {
	return c.queue(ctx, "fido2", "", "POST", "/v1/keys/"+url.PathEscape(keyID)+"/fido2", cred, nil)
}

// QueuePIV queues adding a PIV slot to registered key keyID.
func (c *Client) QueuePIV(ctx context.Context, keyID string, slot PIVSlot) (Entry, error) {
	return c.queue(ctx, "piv", "", "POST", "/v1/keys/"+url.PathEscape(keyID)+"/piv", slot, nil)
}

// queue stores one write under idempotency key key (a fresh random one
// when empty), durably (the outbox runs with synchronous=FULL) before it
// returns. A key already queued with the same request returns that entry.
func (c *Client) queue(ctx context.Context, kind, key, method, path string, body any, hdr map[string]string) (Entry, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return Entry{}, err
	}
	if hdr == nil {
		hdr = map[string]string{}
	}
	if key == "" {
		key = newKey()
	}
	h, _ := json.Marshal(hdr)
	en := Entry{Kind: kind, Key: key, Method: method, Path: path, Header: hdr, Body: b, State: Pending, Queued: time.Now().UTC()}
	crashpoint.Before(crashpoint.OutboxQueue)
	res, err := c.outbox.db.ExecContext(ctx, "INSERT INTO outbox (kind, idem_key, method, path, headers, body, state, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		en.Kind, en.Key, en.Method, en.Path, string(h), en.Body, string(en.State), en.Queued.UnixNano())
	if err != nil {
		var se *sqlite.Error
		if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
			return c.queued(ctx, en)
		}
		return Entry{}, fmt.Errorf("queueing %s: %w", kind, storeErr(err))
	}
	crashpoint.After(crashpoint.OutboxQueue)
	en.Seq, _ = res.LastInsertId()
	return en, nil
}

// queued returns the entry already queued under want's idempotency key,
// when it is the same request.
func (c *Client) queued(ctx context.Context, want Entry) (Entry, error) {
	all, err := c.Entries(ctx, "")
	if err != nil {
		return Entry{}, err
	}
	for _, e := range all {
		if e.Key != want.Key {
			continue
		}
		if e.Kind != want.Kind || e.Method != want.Method || e.Path != want.Path || !bytes.Equal(e.Body, want.Body) {
			return Entry{}, fmt.Errorf("queueing %s: %w", want.Kind, ErrKeyReused)
		}
		return e, nil
	}
	return Entry{}, fmt.Errorf("queueing %s: the idempotency key is taken but no entry holds it", want.Kind)
}

// Entries lists outbox entries in a state ("" for all), in queue order.
func (c *Client) Entries(ctx context.Context, state EntryState) ([]Entry, error) {
	q := "SELECT seq, kind, idem_key, method, path, headers, body, state, status, response, error, queued_at FROM outbox"
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
		var h string
		if err := rows.Scan(&e.Seq, &e.Kind, &e.Key, &e.Method, &e.Path, &h, &e.Body, &st, &e.Status, &e.Response, &e.Error, &qa); err != nil {
			return nil, fmt.Errorf("reading outbox: %w", err)
		}
		if err := json.Unmarshal([]byte(h), &e.Header); err != nil {
			return nil, fmt.Errorf("reading outbox entry %d headers: %w", e.Seq, err)
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
		hdr := map[string]string{"Idempotency-Key": e.Key}
		for k, v := range e.Header {
			hdr[k] = v
		}
		crashpoint.Before(crashpoint.RegistrySend)
		status, raw, err := c.do(ctx, e.Method, e.Path, e.Body, hdr, nil)
		if err == nil {
			crashpoint.After(crashpoint.RegistrySend)
		}
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
		crashpoint.Before(crashpoint.OutboxRecord)
		if _, err := c.outbox.db.ExecContext(ctx, "UPDATE outbox SET state = ?, status = ?, response = ?, error = ? WHERE seq = ?",
			string(e.State), e.Status, e.Response, e.Error, e.Seq); err != nil {
			return fmt.Errorf("recording outbox result: %w", storeErr(err))
		}
		crashpoint.After(crashpoint.OutboxRecord)
		if progress != nil {
			progress(Progress{Entry: e, Done: i + 1, Total: len(pending)})
		}
	}
	return nil
}
