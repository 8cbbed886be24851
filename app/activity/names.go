package activity

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// The registry's id prefixes (registry/store/sqlstore NewID) of what an
// entry may name: a user and a key.
const (
	userPrefix = "usr_"
	keyPrefix  = "key_"
)

// maxLookups bounds the registry reads one Resolve makes.
const maxLookups = 200

// Names turns the registry ids an audit entry's payload holds (usr_…,
// key_…) into what a person recognises: a user's external id and name, a
// key's serial with its owner and role. It keeps what it has read, so a
// page costs one read per id not seen before. Safe for concurrent use.
type Names struct {
	mu    sync.Mutex
	users map[string]registry.User
	keys  map[string]registry.Key
	// tried are ids read and not found (deleted, or of another kind):
	// not asked again.
	tried map[string]bool
}

// NewNames returns an empty cache.
func NewNames() *Names {
	return &Names{users: map[string]registry.User{}, keys: map[string]registry.Key{}, tried: map[string]bool{}}
}

// ids lists the user and key ids in an entry's payload, at any depth.
func ids(payload []byte) []string {
	var v any
	if json.Unmarshal(payload, &v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			if strings.HasPrefix(x, userPrefix) || strings.HasPrefix(x, keyPrefix) {
				out = append(out, x)
			}
		case map[string]any:
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(v)
	return out
}

// Resolve reads from the registry the users and keys that entries name and
// the cache does not hold yet (a key's owner too). An id the registry does
// not know stays an id; a failed read leaves the ids unresolved and is
// returned, the entries being readable without names.
func (n *Names) Resolve(ctx context.Context, reg *client.Client, entries []client.AuditEntry) error {
	var want []string
	seen := map[string]bool{}
	n.mu.Lock()
	for _, e := range entries {
		for _, id := range ids(e.Payload) {
			if seen[id] || n.known(id) {
				continue
			}
			seen[id] = true
			want = append(want, id)
		}
	}
	n.mu.Unlock()
	// Keys first: their owners join the users to read.
	sort.SliceStable(want, func(i, j int) bool {
		return strings.HasPrefix(want[i], keyPrefix) && !strings.HasPrefix(want[j], keyPrefix)
	})
	reads := 0
	for i := 0; i < len(want) && reads < maxLookups; i++ {
		id := want[i]
		n.mu.Lock()
		done := n.known(id)
		n.mu.Unlock()
		if done {
			continue
		}
		reads++
		switch {
		case strings.HasPrefix(id, keyPrefix):
			k, err := reg.Key(ctx, id)
			if err != nil && !isNotFound(err) {
				return err
			}
			n.mu.Lock()
			if err != nil {
				n.tried[id] = true
			} else {
				n.keys[id] = k.Key
				if k.OwnerID != "" && !n.known(k.OwnerID) && !seen[k.OwnerID] {
					seen[k.OwnerID] = true
					want = append(want, k.OwnerID)
				}
			}
			n.mu.Unlock()
		default:
			u, err := reg.User(ctx, id)
			if err != nil && !isNotFound(err) {
				return err
			}
			n.mu.Lock()
			if err != nil {
				n.tried[id] = true
			} else {
				n.users[id] = u
			}
			n.mu.Unlock()
		}
	}
	return nil
}

func isNotFound(err error) bool {
	var ae *client.APIError
	return errors.Is(err, registry.ErrNotFound) || (errors.As(err, &ae) && ae.Status == 404)
}

// known says whether id is cached or was tried. Hold n.mu.
func (n *Names) known(id string) bool {
	_, u := n.users[id]
	_, k := n.keys[id]
	return u || k || n.tried[id]
}

// User names a user id: "ada (Ada Lovelace)"; the id itself when unknown.
func (n *Names) User(id string) string {
	if n == nil {
		return id
	}
	n.mu.Lock()
	u, ok := n.users[id]
	n.mu.Unlock()
	if !ok {
		return id
	}
	if u.DisplayName != "" && u.DisplayName != u.ExternalID {
		return u.ExternalID + " (" + u.DisplayName + ")"
	}
	return u.ExternalID
}

// Key names a key id: "key 31000001 of ada (primary)"; the id itself when
// unknown.
func (n *Names) Key(id string) string {
	if n == nil {
		return id
	}
	n.mu.Lock()
	k, ok := n.keys[id]
	n.mu.Unlock()
	if !ok {
		return id
	}
	s := "key " + k.Serial
	if k.OwnerID != "" {
		s += " of " + n.User(k.OwnerID)
	}
	if k.Role != "" {
		s += " (" + string(k.Role) + ")"
	}
	return s
}

// name is v with any user or key id in it named.
func (n *Names) name(v string) string {
	switch {
	case strings.HasPrefix(v, keyPrefix):
		return n.Key(v)
	case strings.HasPrefix(v, userPrefix):
		return n.User(v)
	}
	return v
}

// describeFields are the payload fields Describe shows, in order, with
// the words it shows them under ("" shows the value alone).
var describeFields = []struct{ field, label string }{
	{"key_id", ""}, {"owner_id", "owner"}, {"user_id", "user"}, {"external_id", "user"}, {"display_name", "name"},
	{"serial", "serial"}, {"role", "role"}, {"status", "status"}, {"from", "from"}, {"to", "to"}, {"kind", "kind"},
	{"ok", "passed"}, {"reason", "reason"}, {"name", "name"}, {"rp_id", "relying party"},
}

// Describe is an entry in a line for people: what it is about, named
// (users and keys by their names and serials, not registry ids), then its
// other facts. Summary is the same for the command line, with the ids.
func (n *Names) Describe(e client.AuditEntry) string {
	var m map[string]any
	if json.Unmarshal(e.Payload, &m) != nil {
		return string(e.Payload)
	}
	var parts []string
	shown := map[string]bool{}
	// The entry's own subject, when its id is a user's or a key's.
	if id, ok := m["id"].(string); ok && (strings.HasPrefix(id, keyPrefix) || strings.HasPrefix(id, userPrefix)) {
		if named := n.name(id); named != id {
			parts = append(parts, named)
			shown["id"] = true
			// A named key says its serial and owner already.
			if strings.HasPrefix(id, keyPrefix) {
				shown["serial"], shown["owner_id"], shown["role"] = true, true, true
			} else {
				shown["external_id"], shown["display_name"] = true, true
			}
		}
	}
	if id, ok := m["key_id"].(string); ok && n.name(id) != id {
		shown["serial"], shown["owner_id"], shown["role"] = true, true, true
	}
	for _, f := range describeFields {
		v, ok := m[f.field]
		if !ok || v == nil || v == "" || shown[f.field] {
			continue
		}
		s := n.name(toString(v))
		if f.label != "" {
			s = f.label + " " + s
		}
		parts = append(parts, s)
		shown[f.field] = true
	}
	if len(parts) == 0 {
		if id, ok := m["id"]; ok {
			parts = append(parts, "id "+n.name(toString(id)))
		}
	}
	return strings.Join(parts, " · ")
}

// Fields are every field of an entry's payload, sorted, with user and key
// ids named beside them: the detail of one entry.
func (n *Names) Fields(e client.AuditEntry) [][2]string {
	var m map[string]any
	if json.Unmarshal(e.Payload, &m) != nil {
		return [][2]string{{"payload", string(e.Payload)}}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][2]string, 0, len(keys))
	for _, k := range keys {
		v := toString(m[k])
		if named := n.name(v); named != v {
			v += " — " + named
		}
		out = append(out, [2]string{k, v})
	}
	return out
}
