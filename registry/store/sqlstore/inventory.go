package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/keydesk/keydesk/registry"
)

// InventoryKey is a key with the time of its last successful verification
// (zero when it never passed one).
type InventoryKey struct {
	registry.Key
	LastVerified time.Time
}

// InventoryUser is a user with every key they own.
type InventoryUser struct {
	User registry.User
	Keys []InventoryKey
}

// Inventory returns up to limit users with id > after, in id order, each
// with their keys (in creation order) and each key's last successful
// verification that did not suspect a clone: the organisation page by page
// in three queries per page, for the desk's inventory.
func (s *Store) Inventory(ctx context.Context, after string, limit int) ([]InventoryUser, error) {
	us, err := s.ListUsers(ctx, after, limit)
	if err != nil || len(us) == 0 {
		return []InventoryUser{}, err
	}
	out := make([]InventoryUser, len(us))
	at := make(map[string]int, len(us))
	for i, u := range us {
		out[i] = InventoryUser{User: u, Keys: []InventoryKey{}}
		at[u.ID] = i
	}
	// The page's users are the ids in (after, last]: their keys are one
	// range of the owner index.
	last := us[len(us)-1].ID
	byKey := map[string]*InventoryKey{}
	rows, err := s.db.QueryContext(ctx, s.Rebind("SELECT "+keyCols+" FROM keys WHERE owner_id > ? AND owner_id <= ? ORDER BY owner_id, created_at, id"), after, last)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing keys: %w", err)
		}
		k.KeySets = []string{}
		i, ok := at[k.OwnerID]
		if !ok {
			continue
		}
		out[i].Keys = append(out[i].Keys, InventoryKey{Key: k})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	for i := range out {
		for j := range out[i].Keys {
			byKey[out[i].Keys[j].ID] = &out[i].Keys[j]
		}
	}
	if len(byKey) == 0 {
		return out, nil
	}
	err = each(ctx, s, s.db, "SELECT m.key_id, m.set_name FROM key_set_members m JOIN keys k ON k.id = m.key_id WHERE k.owner_id > ? AND k.owner_id <= ? ORDER BY m.set_name",
		[]any{after, last}, func(r *sql.Rows) error {
			var id, set string
			if err := r.Scan(&id, &set); err != nil {
				return err
			}
			if k := byKey[id]; k != nil {
				k.KeySets = append(k.KeySets, set)
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("listing key sets: %w", err)
	}
	err = each(ctx, s, s.db, "SELECT v.key_id, MAX(v.at) FROM verifications v JOIN keys k ON k.id = v.key_id WHERE k.owner_id > ? AND k.owner_id <= ? AND v.ok = 1 AND v.clone_suspected = 0 GROUP BY v.key_id",
		[]any{after, last}, func(r *sql.Rows) error {
			var id string
			var n int64
			if err := r.Scan(&id, &n); err != nil {
				return err
			}
			if k := byKey[id]; k != nil {
				k.LastVerified = fromNanos(n)
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("reading last verifications: %w", err)
	}
	return out, nil
}
