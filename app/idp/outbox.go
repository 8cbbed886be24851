package idp

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers "sqlite"
)

// Op is what an intent does at a provider.
type Op string

const (
	OpRegister Op = "register"
	OpDelete   Op = "delete"
)

// IntentState is where an intent stands.
type IntentState string

const (
	// IntentPending: not yet written at the provider (or not known to be).
	IntentPending IntentState = "pending"
	// IntentWritten: the provider accepted the write (MethodID holds its
	// id); the registry's link is still to be recorded or marked deleted.
	IntentWritten IntentState = "written"
	// IntentDone: the provider and the registry agree.
	IntentDone IntentState = "done"
	// IntentRefused: the provider refused; Error and Hint say why.
	IntentRefused IntentState = "refused"
	// IntentNeedsKey: the provider hands out creation options and could not
	// be asked for them while the key was at hand; the key must be
	// registered with it again with the key inserted.
	IntentNeedsKey IntentState = "needs-key"
	// IntentSuperseded: a needs-key or refused intent that a later
	// registration of the same key with the same provider finished.
	IntentSuperseded IntentState = "superseded"
)

// Intent is one provider write as the desk's provider outbox keeps it,
// written durably (SQLite, synchronous=FULL) before the provider is
// called. Nonce is in the method's display name, so a replay after a crash
// between the provider's answer and the registry's link finds the method
// the first attempt made instead of making a second one.
type Intent struct {
	Nonce      string
	Provider   string
	Op         Op
	User       User
	KeyID      string
	Serial     uint32
	Credential *Credential // register: what to hand the provider
	Options    *CreationOptions
	// AskOptions: the provider could not be asked for its creation
	// options; the replay asks first, and hands it Credential (the desk's
	// own) only when it answers with none.
	AskOptions bool
	LinkID     string // delete: the registry's link
	MethodID   string
	State      IntentState
	Error      string
	Hint       string
	Created    time.Time
	Updated    time.Time
}

// Outbox keeps provider writes until both the provider and the registry
// have them, and replays them once.
type Outbox struct{ db *sql.DB }

// OutboxFile is the provider outbox's file name; the desk keeps it in its
// data directory (regconn.DefaultDataDir), beside the enrolment journal.
const OutboxFile = "idp-outbox.db"

// OpenOutbox opens (creating it if need be) the provider outbox at path.
func OpenOutbox(path string) (*Outbox, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the provider outbox's directory: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return nil, fmt.Errorf("opening the provider outbox: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS intents (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		nonce TEXT NOT NULL UNIQUE,
		provider TEXT NOT NULL,
		op TEXT NOT NULL,
		user_json BLOB NOT NULL,
		key_id TEXT NOT NULL,
		serial INTEGER NOT NULL,
		credential BLOB,
		options BLOB,
		ask_options INTEGER NOT NULL DEFAULT 0,
		link_id TEXT NOT NULL DEFAULT '',
		method_id TEXT NOT NULL DEFAULT '',
		state TEXT NOT NULL,
		error TEXT NOT NULL DEFAULT '',
		hint TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating the provider outbox: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, err
	}
	return &Outbox{db: db}, nil
}

// Close closes the outbox.
func (o *Outbox) Close() error { return o.db.Close() }

func newNonce() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// add stores in as a new intent.
func (o *Outbox) add(ctx context.Context, in *Intent) error {
	if in.Nonce == "" {
		in.Nonce = newNonce()
	}
	now := time.Now().UTC()
	in.Created, in.Updated = now, now
	u, err := json.Marshal(in.User)
	if err != nil {
		return err
	}
	c, err := jsonOrNil(in.Credential)
	if err != nil {
		return err
	}
	op, err := jsonOrNil(in.Options)
	if err != nil {
		return err
	}
	_, err = o.db.ExecContext(ctx, `INSERT INTO intents (nonce, provider, op, user_json, key_id, serial, credential, options, ask_options, link_id, method_id, state, error, hint, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		in.Nonce, in.Provider, string(in.Op), u, in.KeyID, in.Serial, c, op, in.AskOptions, in.LinkID, in.MethodID, string(in.State), in.Error, in.Hint, now.UnixNano(), now.UnixNano())
	if err != nil {
		return fmt.Errorf("writing the provider outbox: %w", err)
	}
	return nil
}

func jsonOrNil[T any](v *T) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	return json.Marshal(v)
}

// update writes in's state, method id, error and hint.
func (o *Outbox) update(ctx context.Context, in *Intent) error {
	in.Updated = time.Now().UTC()
	_, err := o.db.ExecContext(ctx, "UPDATE intents SET state = ?, ask_options = ?, method_id = ?, error = ?, hint = ?, updated_at = ? WHERE nonce = ?",
		string(in.State), in.AskOptions, in.MethodID, in.Error, in.Hint, in.Updated.UnixNano(), in.Nonce)
	if err != nil {
		return fmt.Errorf("writing the provider outbox: %w", err)
	}
	return nil
}

// supersede settles the needs-key and refused registrations of in's key
// at in's provider, which in (done) has replaced.
func (o *Outbox) supersede(ctx context.Context, in *Intent) error {
	_, err := o.db.ExecContext(ctx, "UPDATE intents SET state = ?, updated_at = ? WHERE provider = ? AND key_id = ? AND op = ? AND state IN (?, ?) AND nonce <> ?",
		string(IntentSuperseded), time.Now().UTC().UnixNano(), in.Provider, in.KeyID, string(OpRegister), string(IntentNeedsKey), string(IntentRefused), in.Nonce)
	if err != nil {
		return fmt.Errorf("writing the provider outbox: %w", err)
	}
	return nil
}

// Intents lists intents in the given states (all when none), oldest first.
func (o *Outbox) Intents(ctx context.Context, states ...IntentState) ([]Intent, error) {
	rows, err := o.db.QueryContext(ctx, "SELECT nonce, provider, op, user_json, key_id, serial, credential, options, ask_options, link_id, method_id, state, error, hint, created_at, updated_at FROM intents ORDER BY seq")
	if err != nil {
		return nil, fmt.Errorf("reading the provider outbox: %w", err)
	}
	defer rows.Close()
	var out []Intent
	for rows.Next() {
		var in Intent
		var op, st string
		var u, c, opts []byte
		var created, updated int64
		if err := rows.Scan(&in.Nonce, &in.Provider, &op, &u, &in.KeyID, &in.Serial, &c, &opts, &in.AskOptions, &in.LinkID, &in.MethodID, &st, &in.Error, &in.Hint, &created, &updated); err != nil {
			return nil, fmt.Errorf("reading the provider outbox: %w", err)
		}
		in.Op, in.State, in.Created, in.Updated = Op(op), IntentState(st), time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
		if err := json.Unmarshal(u, &in.User); err != nil {
			return nil, fmt.Errorf("provider outbox intent %s: %w", in.Nonce, err)
		}
		if len(c) > 0 {
			in.Credential = new(Credential)
			if err := json.Unmarshal(c, in.Credential); err != nil {
				return nil, fmt.Errorf("provider outbox intent %s: %w", in.Nonce, err)
			}
		}
		if len(opts) > 0 {
			in.Options = new(CreationOptions)
			if err := json.Unmarshal(opts, in.Options); err != nil {
				return nil, fmt.Errorf("provider outbox intent %s: %w", in.Nonce, err)
			}
		}
		if len(states) == 0 || contains(states, in.State) {
			out = append(out, in)
		}
	}
	return out, rows.Err()
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
