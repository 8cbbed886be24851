package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/keydesk/keydesk/registry"
)

// KeySetInfo is a key set with its member count.
type KeySetInfo struct {
	registry.KeySet
	Keys int `json:"keys"`
}

// CreateKeySet creates an empty named key set.
func (t *Tx) CreateKeySet(s *registry.KeySet) error {
	if s.Name == "" || len(s.Name) > 100 {
		return registry.Invalid("invalid_key_set", "a key set needs a name of 1-100 characters")
	}
	s.CreatedAt = t.now
	if err := t.exec("INSERT INTO key_sets (name, description, created_at) VALUES (?, ?, ?)", s.Name, s.Description, nanos(t.now)); err != nil {
		if isUnique(err) {
			return &registry.DuplicateError{Entity: "key set", Field: "name"}
		}
		return fmt.Errorf("inserting key set: %w", err)
	}
	return t.record("key_set", s.Name, "create", s)
}

// KeySets lists every key set with its member count.
func (s *Store) KeySets(ctx context.Context) ([]KeySetInfo, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT s.name, s.description, s.created_at, (SELECT COUNT(*) FROM key_set_members m WHERE m.set_name = s.name) FROM key_sets s ORDER BY s.name`)
	if err != nil {
		return nil, fmt.Errorf("listing key sets: %w", err)
	}
	defer rows.Close()
	out := []KeySetInfo{}
	for rows.Next() {
		var k KeySetInfo
		var c int64
		if err := rows.Scan(&k.Name, &k.Description, &c, &k.Keys); err != nil {
			return nil, fmt.Errorf("listing key sets: %w", err)
		}
		k.CreatedAt = fromNanos(c)
		out = append(out, k)
	}
	return out, rows.Err()
}

func (t *Tx) keySetExists(name string) (bool, error) {
	var n string
	err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT name FROM key_sets WHERE name = ?"), name).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading key set: %w", err)
	}
	return true, nil
}

// AddKeyToSet makes key a member of an existing set.
func (t *Tx) AddKeyToSet(set, keyID string) error {
	if err := t.Serialize(); err != nil {
		return err
	}
	ok, err := t.keySetExists(set)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("key set %s: %w", set, registry.ErrNotFound)
	}
	if _, err := t.GetKey(keyID); err != nil {
		return err
	}
	if err := t.exec("INSERT INTO key_set_members (set_name, key_id) VALUES (?, ?)", set, keyID); err != nil {
		if isUnique(err) {
			return &registry.DuplicateError{Entity: "key set member", Field: "key id"}
		}
		return fmt.Errorf("adding key to set: %w", err)
	}
	return t.record("key_set", set, "add_key", map[string]string{"set": set, "key_id": keyID})
}

// RemoveKeyFromSet takes key out of set. If that leaves a user who was cut
// over by a migration without any valid credential, the user is moved back
// to the migration's old set in the same change set.
func (t *Tx) RemoveKeyFromSet(set, keyID string) error {
	if err := t.Serialize(); err != nil {
		return err
	}
	k, err := t.GetKey(keyID)
	if err != nil {
		return err
	}
	n, err := t.execN("DELETE FROM key_set_members WHERE set_name = ? AND key_id = ?", set, keyID)
	if err != nil {
		return fmt.Errorf("removing key from set: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("key %s in set %s: %w", keyID, set, registry.ErrNotFound)
	}
	if err := t.record("key_set", set, "remove_key", map[string]string{"set": set, "key_id": keyID}); err != nil {
		return err
	}
	return t.keepCredentials(k.OwnerID, "key "+keyID+" removed from set "+set)
}
