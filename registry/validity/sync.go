package validity

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/keydesk/keydesk/registry"
)

// Sync brings the replica up to the change feed's head once: the whole view
// when it has none (or when the feed cannot be followed), otherwise the
// change sets after its cursor. On success the replica's age restarts from
// the moment Sync began.
func (r *Replica) Sync(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := r.opt.Now()
	if err := r.syncLocked(ctx); err != nil {
		r.stat.Lock()
		r.lastErr = err.Error()
		r.stat.Unlock()
		return err
	}
	r.stat.Lock()
	r.lastErr = ""
	r.stat.Unlock()
	r.setLastSync(start)
	return r.persistLocked(false)
}

func (r *Replica) syncLocked(ctx context.Context) error {
	if r.view.Load() == nil {
		if err := r.fullLoad(ctx); err != nil {
			return err
		}
	}
	for {
		v := r.view.Load()
		page, err := r.api.changes(ctx, v.cursor, r.opt.PageSize)
		if err != nil {
			return fmt.Errorf("reading change feed: %w", err)
		}
		if page.Head < v.cursor {
			// The registry is behind the replica (restored from a backup,
			// or another database): its feed cannot be followed from here.
			if err := r.fullLoad(ctx); err != nil {
				return err
			}
			continue
		}
		if len(page.Changes) == 0 {
			return nil
		}
		users, full := r.affected(page.Changes)
		if full || len(users) > r.opt.RefreshLimit {
			if err := r.fullLoad(ctx); err != nil {
				return err
			}
			continue
		}
		fresh := make(map[string][]registry.ValidCredential, len(users))
		for uid := range users {
			uv, err := r.api.userValidity(ctx, uid)
			if err != nil {
				return fmt.Errorf("reading validity of user %s: %w", uid, err)
			}
			fresh[uid] = uv.Credentials
		}
		if err := r.apply(fresh, page.Cursor); err != nil {
			return err
		}
		if !page.More {
			return nil
		}
	}
}

// fullLoad replaces the view with the whole validity view.
func (r *Replica) fullLoad(ctx context.Context) error {
	b := newBuilder()
	version, err := r.api.wholeValidity(ctx, b.add)
	if err != nil {
		return fmt.Errorf("loading validity view: %w", err)
	}
	v, err := b.finish(version)
	if err != nil {
		return fmt.Errorf("loading validity view: %w", err)
	}
	r.rps = b.rps.clone()
	r.view.Store(v)
	r.stat.Lock()
	r.fullLoads++
	r.stat.Unlock()
	r.dirty = true
	return nil
}

// apply publishes a view where each user in fresh has exactly the given
// credentials, at cursor.
func (r *Replica) apply(fresh map[string][]registry.ValidCredential, cursor int64) error {
	old := r.view.Load()
	nv := &view{arena: old.arena, index: old.index, cursor: cursor, users: old.users, creds: old.creds}
	nv.overlay = make(map[string][]byte, len(old.overlay)+len(fresh))
	for k, rec := range old.overlay {
		nv.overlay[k] = rec
	}
	for uid, rows := range fresh {
		key := uid
		if prev := old.record(key); prev != nil {
			_, c := recordEnd(prev, 0)
			nv.users--
			nv.creds -= c
		}
		if len(rows) == 0 {
			if old.index.lookup(old.arena, key) != nil {
				nv.overlay[key] = nil
			} else {
				delete(nv.overlay, key)
			}
			continue
		}
		sortRows(rows)
		rec, err := appendRecord(nil, userRecord{UserID: uid, ExternalID: rows[0].ExternalID, Creds: rows}, r.rps)
		if err != nil {
			return err
		}
		nv.overlay[key] = rec
		nv.users++
		nv.creds += len(rows)
	}
	nv.rps = r.rps.names
	if len(nv.overlay) > r.opt.CompactAt {
		c, err := compact(nv)
		if err != nil {
			return err
		}
		nv = c
	}
	r.view.Store(nv)
	r.dirty = true
	return nil
}

// sortRows orders rows as GET /v1/validity does: by user, key, kind.
func sortRows(rows []registry.ValidCredential) {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.UserID != b.UserID {
			return a.UserID < b.UserID
		}
		if a.KeyID != b.KeyID {
			return a.KeyID < b.KeyID
		}
		return a.Kind < b.Kind
	})
}

// affected lists the users whose valid credentials the change sets may
// have changed; full is true when a change cannot be traced to its users,
// and the whole view must be read again.
//
// Entities and the users they name (registry/store/sqlstore writes them):
// user (its id), key (owner_id), fido2_credential and piv_slot (key_id, or
// for clone_suspected the credential record's id), key_set add_key and
// remove_key (key_id), migration (cut_over and reverted user ids),
// migration_user (its id), migration_signal (signal.user_id). Escrow blobs
// and access passes never change validity.
func (r *Replica) affected(cs []registry.Change) (map[string]bool, bool) {
	users := map[string]bool{}
	scans := 0 // ownerOf's scans of the view, each O(view)
	ownerOf := func(keyID string) (string, bool) {
		if o, ok := r.learned.keyOwner[keyID]; ok {
			return o, true
		}
		if scans++; scans > maxScans {
			return "", false
		}
		return r.ownerOf(keyID)
	}
	for _, c := range cs {
		switch c.Entity {
		case "user", "migration_user":
			users[c.EntityID] = true
		case "key":
			var k struct {
				ID      string `json:"id"`
				OwnerID string `json:"owner_id"`
			}
			if json.Unmarshal(c.Data, &k) != nil || k.OwnerID == "" {
				return nil, true
			}
			r.learned.keyOwner[c.EntityID] = k.OwnerID
			users[k.OwnerID] = true
		case "fido2_credential", "piv_slot":
			var d struct {
				KeyID string `json:"key_id"`
			}
			if json.Unmarshal(c.Data, &d) != nil {
				return nil, true
			}
			if d.KeyID == "" && c.Entity == "fido2_credential" {
				d.KeyID = r.learned.credKey[c.EntityID]
			}
			if d.KeyID == "" {
				return nil, true
			}
			if c.Entity == "fido2_credential" && (c.Op == "create" || c.Op == "restore") {
				r.learned.credKey[c.EntityID] = d.KeyID
			}
			owner, ok := ownerOf(d.KeyID)
			if !ok {
				return nil, true
			}
			users[owner] = true
		case "key_set":
			if c.Op == "create" {
				continue
			}
			var d struct {
				KeyID string `json:"key_id"`
			}
			if json.Unmarshal(c.Data, &d) != nil || d.KeyID == "" {
				return nil, true
			}
			owner, ok := ownerOf(d.KeyID)
			if !ok {
				return nil, true
			}
			users[owner] = true
		case "migration":
			if c.Op == "create" {
				continue
			}
			var d struct {
				CutOver  []string `json:"cut_over"`
				Reverted []string `json:"reverted"`
			}
			if json.Unmarshal(c.Data, &d) != nil {
				return nil, true
			}
			for _, u := range d.CutOver {
				users[u] = true
			}
			for _, u := range d.Reverted {
				users[u] = true
			}
		case "migration_signal":
			var d struct {
				Signal struct {
					UserID string `json:"user_id"`
				} `json:"signal"`
			}
			if json.Unmarshal(c.Data, &d) != nil || d.Signal.UserID == "" {
				return nil, true
			}
			users[d.Signal.UserID] = true
		case "escrow", "access_pass":
		default:
			return nil, true
		}
	}
	return users, false
}

// maxScans is how many keys of unknown owner one page may look up in the
// view (a scan of it each) before a whole reload is the cheaper way.
const maxScans = 8

// ownerOf names the owner of key keyID: from what the feed told the
// replica, or else from the view (a key with a valid credential).
func (r *Replica) ownerOf(keyID string) (string, bool) {
	if o, ok := r.learned.keyOwner[keyID]; ok {
		return o, true
	}
	want, err := appendID(nil, keyID)
	if err != nil {
		return "", false
	}
	v := r.view.Load()
	var owner string
	v.each(func(_ string, rec []byte) error {
		if owner != "" {
			return nil
		}
		recordKeys(rec, func(kid []byte) {
			if bytes.Equal(kid, want) {
				owner = strings.Clone(recordUser(rec)) // not a view into the arena: it would keep the arena alive
			}
		})
		return nil
	})
	if owner == "" {
		return "", false
	}
	r.learned.keyOwner[keyID] = owner
	return owner, true
}
