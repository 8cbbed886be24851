package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// MDSBlob is the FIDO Metadata Service BLOB the registry holds: what
// `keydesk-registry mds update` kept of the last one it verified.
type MDSBlob struct {
	Number     int
	NextUpdate time.Time
	SHA256     string
	Entries    []byte // registry/mds.Set as JSON
	LoadedAt   time.Time
}

// ErrMDSOlder: PutMDS was given a BLOB with a lower serial number than the
// one held (FIDO Metadata Service v3.0 §3.1.7: serial numbers increase).
var ErrMDSOlder = errors.New("mds blob has a lower serial number than the one held")

// PutMDS replaces the held BLOB with b, unless the held one has a higher
// serial number, and audits the load as mds.update.
func (t *Tx) PutMDS(b MDSBlob) error {
	n, err := t.execN("INSERT INTO mds_blob (id, no, next_update, sha256, entries, loaded_at) VALUES (1, ?, ?, ?, ?, ?) "+
		"ON CONFLICT (id) DO UPDATE SET no = excluded.no, next_update = excluded.next_update, sha256 = excluded.sha256, entries = excluded.entries, loaded_at = excluded.loaded_at "+
		"WHERE mds_blob.no <= excluded.no",
		int64(b.Number), nanos(b.NextUpdate), b.SHA256, b.Entries, nanos(t.now))
	if err != nil {
		return fmt.Errorf("storing mds blob: %w", err)
	}
	if n == 0 {
		return ErrMDSOlder
	}
	return t.Audit("mds.update", map[string]any{"no": b.Number, "next_update": b.NextUpdate.Format(time.DateOnly), "sha256": b.SHA256})
}

// MDS returns the held BLOB; ok is false when none was loaded.
func (s *Store) MDS(ctx context.Context) (b MDSBlob, ok bool, err error) {
	var no, next, at int64
	err = s.db.QueryRowContext(ctx, "SELECT no, next_update, sha256, entries, loaded_at FROM mds_blob WHERE id = 1").Scan(&no, &next, &b.SHA256, &b.Entries, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return MDSBlob{}, false, nil
	}
	if err != nil {
		return MDSBlob{}, false, fmt.Errorf("reading mds blob: %w", err)
	}
	b.Number, b.NextUpdate, b.LoadedAt = int(no), fromNanos(next), fromNanos(at)
	return b, true, nil
}

// MDSLoadedAt is when the held BLOB was loaded (zero when none was): a
// cheap check whether a cached copy is current.
func (s *Store) MDSLoadedAt(ctx context.Context) (time.Time, error) {
	var at int64
	err := s.db.QueryRowContext(ctx, "SELECT loaded_at FROM mds_blob WHERE id = 1").Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("reading mds blob: %w", err)
	}
	return fromNanos(at), nil
}

// CredentialAAGUID is a FIDO2 credential's authenticator model id.
type CredentialAAGUID struct {
	CredentialID string // the registry's id of the credential
	KeyID        string
	OwnerID      string
	AAGUID       []byte
}

// InventoryAAGUIDs lists the AAGUIDs of the FIDO2 credentials on the keys
// of users with ids in (after, last], the range one Inventory page covers.
func (s *Store) InventoryAAGUIDs(ctx context.Context, after, last string) ([]CredentialAAGUID, error) {
	return s.aaguids(ctx, "SELECT f.id, f.key_id, k.owner_id, f.aaguid FROM fido_credentials f JOIN keys k ON k.id = f.key_id WHERE k.owner_id > ? AND k.owner_id <= ? ORDER BY f.id", after, last)
}

// SetAAGUIDs lists the AAGUIDs of the FIDO2 credentials on the keys of a
// key set (a migration's set B, for its readiness report).
func (s *Store) SetAAGUIDs(ctx context.Context, set string) ([]CredentialAAGUID, error) {
	return s.aaguids(ctx, "SELECT f.id, f.key_id, k.owner_id, f.aaguid FROM fido_credentials f JOIN keys k ON k.id = f.key_id JOIN key_set_members m ON m.key_id = k.id WHERE m.set_name = ? ORDER BY f.id", set)
}

func (s *Store) aaguids(ctx context.Context, q string, args ...any) ([]CredentialAAGUID, error) {
	var out []CredentialAAGUID
	err := each(ctx, s, s.db, q, args, func(r *sql.Rows) error {
		var c CredentialAAGUID
		if err := r.Scan(&c.CredentialID, &c.KeyID, &c.OwnerID, &c.AAGUID); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing fido2 aaguids: %w", err)
	}
	return out, nil
}
