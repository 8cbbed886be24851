// Package activity reads the registry's audit log for people: newest first,
// filtered by actor, action, a subject (a key serial, a user, any text of
// the entry) and a time range, a page at a time, and checks the log's hash
// chain and signed checkpoints. Reading needs an admin token (GET
// /v1/audit, docs/registry.md). Nothing here draws.
package activity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keydesk/keydesk/registry/client"
)

// Query selects audit entries; zero fields select everything.
type Query struct {
	// Actor and Action match exactly (the registry filters them).
	Actor, Action string
	// Subject is a key serial, a registry user or key id, or any text: an
	// entry matches when its payload holds it, or the id of the key with
	// that serial, or of that user's keys (see Resolve).
	Subject string
	// Since and Until bound the entry's time (inclusive; zero is open).
	Since, Until time.Time
}

// Terms are the strings an entry's payload must hold one of for Subject.
type Terms []string

// Resolve turns q.Subject into the terms to look for: the text itself,
// plus, when it is a key's serial, the key's id and owner; when it is a
// user's id, the ids of their keys. Lookups that fail only narrow the
// search to the text.
func Resolve(ctx context.Context, reg *client.Client, subject string) Terms {
	subject = strings.TrimSpace(subject)
	if subject == "" {
		return nil
	}
	t := Terms{subject}
	if k, err := reg.KeyBySerial(ctx, subject); err == nil {
		t = append(t, k.ID, k.OwnerID)
	}
	if ks, err := reg.UserKeys(ctx, subject); err == nil {
		for _, k := range ks {
			t = append(t, k.ID, k.Serial)
		}
	}
	return t
}

func (t Terms) match(payload []byte) bool {
	if len(t) == 0 {
		return true
	}
	low := bytes.ToLower(payload)
	for _, s := range t {
		if s != "" && bytes.Contains(low, []byte(strings.ToLower(s))) {
			return true
		}
	}
	return false
}

// Page is one page of matching entries, newest first.
type Page struct {
	Entries []client.AuditEntry
	// Next is the cursor of the following (older) page; 0 at the end.
	Next int64
	// Scanned is how many entries were read to fill the page.
	Scanned int
	// Head is the seq of the newest entry read, matching or not: entries
	// after it are new since (see Newer).
	Head int64
}

// chainSlack is how long after it happened an entry may join the chain:
// Read keeps scanning that far before a time range's start. An entry
// chained later still (after a registry crash) can be missed at the start
// of a range.
const chainSlack = 5 * time.Minute

// scanPage is how many entries one request reads while scanning.
const scanPage = 500

// Read returns up to limit entries that q and terms select, newest first,
// older than the cursor before (0: from the newest). It reads backwards
// through the log until the page is full, the log ends, or the entries are
// older than q.Since.
func Read(ctx context.Context, reg *client.Client, q Query, terms Terms, before int64, limit int) (Page, error) {
	if limit <= 0 {
		limit = 100
	}
	var p Page
	cur := before
	for {
		pg, err := reg.Audit(ctx, client.AuditQuery{Newest: true, Before: cur, Actor: q.Actor, Action: q.Action, Limit: scanPage})
		if err != nil {
			return p, err
		}
		for _, e := range pg.Entries {
			p.Scanned++
			cur = e.Seq
			if e.Seq > p.Head {
				p.Head = e.Seq
			}
			if !q.Since.IsZero() && e.Time.Before(q.Since) {
				// The log is in time order but for entries chained a
				// little after they happened (a verification's, see
				// sqlstore's sequencer): past that slack everything older
				// is out of range too.
				if e.Time.Before(q.Since.Add(-chainSlack)) {
					return p, nil
				}
				continue
			}
			if !q.Until.IsZero() && e.Time.After(q.Until) {
				continue
			}
			if !terms.match(e.Payload) {
				continue
			}
			p.Entries = append(p.Entries, e)
			if len(p.Entries) == limit {
				p.Next = e.Seq
				return p, nil
			}
		}
		if pg.Next == 0 {
			return p, nil
		}
		cur = pg.Next
	}
}

// Newer returns the entries q and terms select with a seq greater than
// after, oldest first (for live refresh). It reads at most max entries.
func Newer(ctx context.Context, reg *client.Client, q Query, terms Terms, after int64, max int) ([]client.AuditEntry, int64, error) {
	var out []client.AuditEntry
	read := 0
	for read < max {
		pg, err := reg.Audit(ctx, client.AuditQuery{After: after, Actor: q.Actor, Action: q.Action, Limit: min(1000, max-read)})
		if err != nil {
			return out, after, err
		}
		for _, e := range pg.Entries {
			read++
			after = e.Seq
			if (!q.Since.IsZero() && e.Time.Before(q.Since)) || (!q.Until.IsZero() && e.Time.After(q.Until)) || !terms.match(e.Payload) {
				continue
			}
			out = append(out, e)
		}
		if pg.Next == 0 {
			break
		}
	}
	return out, after, nil
}

// FeedHead reads the registry change feed's head (GET /v1/changes after
// it, one change at most): a small read that says whether anything in the
// registry changed since head was read. Entries audited without a change
// (a verification that changes nothing else) do not move it.
func FeedHead(ctx context.Context, reg *client.Client, head string) (string, error) {
	ch, err := reg.Changes(ctx, head, 1)
	if err != nil {
		return head, err
	}
	return ch.Head, nil
}

// Verify asks the registry to check its audit chain and checkpoints.
func Verify(ctx context.Context, reg *client.Client) (client.AuditReport, error) {
	return reg.AuditVerify(ctx)
}

// ErrAdminOnly: the token's role may not read the audit log.
var ErrAdminOnly = errors.New("the audit log is open to admins only")

// adminOnly is ErrAdminOnly with what to do next.
type adminOnly struct{ err error }

func (e adminOnly) Error() string { return ErrAdminOnly.Error() }
func (e adminOnly) Unwrap() []error {
	return []error{ErrAdminOnly, e.err}
}
func (e adminOnly) Hint() string {
	return "Ask a keydesk admin to look, or sign in with an admin token in Settings."
}

// Explain turns the registry's refusal into ErrAdminOnly with a hint;
// other errors pass through.
func Explain(err error) error {
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Status == 403 {
		return adminOnly{err}
	}
	return err
}

// Summary is one entry in a line: what happened to whom, from its payload.
func Summary(e client.AuditEntry) string {
	var m map[string]any
	if json.Unmarshal(e.Payload, &m) != nil {
		return string(e.Payload)
	}
	var parts []string
	for _, k := range []string{"external_id", "display_name", "serial", "status", "role", "owner_id", "key_id", "kind", "ok", "reason", "name", "to", "from"} {
		if v, ok := m[k]; ok && v != nil && v != "" {
			parts = append(parts, k+"="+toString(v))
		}
	}
	if len(parts) == 0 {
		if id, ok := m["id"]; ok {
			parts = append(parts, "id="+toString(id))
		}
	}
	return strings.Join(parts, " ")
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return fmt.Sprintf("%g", x)
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}
