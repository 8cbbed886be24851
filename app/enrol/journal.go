package enrol

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

// halfSetUp reports whether a key stopped at stage s was changed but never
// registered: it must be reset, and may then be enrolled afresh.
func halfSetUp(s Stage) bool { return s == StageDevice || s == StageSealed }

// Stage is how far one key's enrolment got. Stages only move forward; each
// is written durably (SQLite, synchronous=FULL) before the step it
// announces, so a crash at any point leaves a record of what to finish.
type Stage string

const (
	// StageDevice: the key is being set up (PINs, credential, PIV keys).
	// A key left here is half set up and must be reset.
	StageDevice Stage = "device"
	// StageSealed: the escrow (random PUK, management key) is sealed to the
	// helpdesk and kept here before the key's PUK and management key change.
	StageSealed Stage = "sealed"
	// StagePrepared: the key is set up and tested; the registration request
	// is kept here, not yet sent.
	StagePrepared Stage = "prepared"
	// StageQueued: the registration is in the client's outbox.
	StageQueued Stage = "queued"
	// StageRegistered: the registry holds the key, pending.
	StageRegistered Stage = "registered"
	// StageEscrowed: the registry holds the sealed escrow too.
	StageEscrowed Stage = "escrowed"
	// StageActive: the registry verified a challenge signed by the key.
	StageActive Stage = "active"
)

// Record is one key's enrolment as the journal holds it. It never holds a
// PIN, PUK or management key in the clear: the escrow is age-sealed and the
// request carries only public keys and attestations.
type Record struct {
	Serial     uint32
	ExternalID string
	Role       string
	Batch      string
	Stage      Stage
	Request    []byte // client.Enrolment as JSON
	Escrow     []byte // age-armored escrow.PIVSecrets
	KeyID      string
	OutboxSeq  int64
	Error      string
	// Checks is what the key passed on its way to active (the proofs,
	// the PIN-change policy, the attestation root) and, for a resumed
	// enrolment, what could not be done again; kept as JSON.
	Checks  Checks
	Updated time.Time
}

// journal records enrolments in progress so a crash, a pulled key or a
// registry outage never enrols anyone twice or loses an escrow.
type journal struct{ db *sql.DB }

func openJournal(path string) (*journal, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the enrolment journal's directory: %w", err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return nil, fmt.Errorf("opening the enrolment journal: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS enrolments (
		serial INTEGER PRIMARY KEY,
		external_id TEXT NOT NULL,
		role TEXT NOT NULL,
		batch TEXT NOT NULL DEFAULT '',
		stage TEXT NOT NULL,
		request BLOB,
		escrow BLOB,
		key_id TEXT NOT NULL DEFAULT '',
		outbox_seq INTEGER NOT NULL DEFAULT 0,
		error TEXT NOT NULL DEFAULT '',
		updated_at INTEGER NOT NULL,
		checks TEXT NOT NULL DEFAULT '')`); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating the enrolment journal: %w", err)
	}
	// A journal written before checks were kept gains the column.
	var has int
	if err := db.QueryRow(`SELECT count(*) FROM pragma_table_info('enrolments') WHERE name = 'checks'`).Scan(&has); err != nil {
		db.Close()
		return nil, fmt.Errorf("reading the enrolment journal: %w", err)
	}
	if has == 0 {
		if _, err := db.Exec(`ALTER TABLE enrolments ADD COLUMN checks TEXT NOT NULL DEFAULT ''`); err != nil {
			db.Close()
			return nil, fmt.Errorf("upgrading the enrolment journal: %w", err)
		}
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, err
	}
	return &journal{db: db}, nil
}

func (j *journal) close() error { return j.db.Close() }

// put writes r whole, replacing the serial's earlier record.
func (j *journal) put(ctx context.Context, r *Record) error {
	r.Updated = time.Now().UTC()
	checks, err := json.Marshal(r.Checks)
	if err != nil {
		return fmt.Errorf("writing the enrolment journal: %w", err)
	}
	_, err = j.db.ExecContext(ctx, `INSERT INTO enrolments (serial, external_id, role, batch, stage, request, escrow, key_id, outbox_seq, error, updated_at, checks)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (serial) DO UPDATE SET external_id = excluded.external_id, role = excluded.role, batch = excluded.batch,
		stage = excluded.stage, request = excluded.request, escrow = excluded.escrow, key_id = excluded.key_id,
		outbox_seq = excluded.outbox_seq, error = excluded.error, updated_at = excluded.updated_at, checks = excluded.checks`,
		r.Serial, r.ExternalID, r.Role, r.Batch, string(r.Stage), r.Request, r.Escrow, r.KeyID, r.OutboxSeq, r.Error, r.Updated.UnixNano(), string(checks))
	if err != nil {
		return fmt.Errorf("writing the enrolment journal: %w", err)
	}
	return nil
}

const recordCols = "serial, external_id, role, batch, stage, request, escrow, key_id, outbox_seq, error, updated_at, checks"

func scanRecord(sc interface{ Scan(...any) error }) (*Record, error) {
	var r Record
	var st string
	var up int64
	var checks string
	if err := sc.Scan(&r.Serial, &r.ExternalID, &r.Role, &r.Batch, &st, &r.Request, &r.Escrow, &r.KeyID, &r.OutboxSeq, &r.Error, &up, &checks); err != nil {
		return nil, err
	}
	if checks != "" {
		if err := json.Unmarshal([]byte(checks), &r.Checks); err != nil {
			return nil, fmt.Errorf("the checks of key %d: %w", r.Serial, err)
		}
	}
	r.Stage, r.Updated = Stage(st), time.Unix(0, up).UTC()
	return &r, nil
}

// get returns the serial's record, or nil.
func (j *journal) get(ctx context.Context, serial uint32) (*Record, error) {
	r, err := scanRecord(j.db.QueryRowContext(ctx, "SELECT "+recordCols+" FROM enrolments WHERE serial = ?", serial))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the enrolment journal: %w", err)
	}
	return r, nil
}

// list returns the records of one user (externalID "" for everyone), by serial.
func (j *journal) list(ctx context.Context, externalID string) ([]*Record, error) {
	q := "SELECT " + recordCols + " FROM enrolments"
	var args []any
	if externalID != "" {
		q += " WHERE external_id = ?"
		args = append(args, externalID)
	}
	rows, err := j.db.QueryContext(ctx, q+" ORDER BY serial", args...)
	if err != nil {
		return nil, fmt.Errorf("reading the enrolment journal: %w", err)
	}
	defer rows.Close()
	var out []*Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("reading the enrolment journal: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
