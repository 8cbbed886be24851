// Package inventory is the organisation's keys at a glance: every user with
// their keys, each key's last successful verification, and where the
// two-key policy (an active primary and an active backup key, as GET
// /v1/users/{id}/coverage and app/backup judge it) or verification falls
// short. It loads from the registry API page by page, filters, counts, and
// writes the filtered view as CSV for outreach. Nothing here draws.
package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keydesk/keydesk/app/backup"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// Problem is a set of ways a user falls short; the zero value is none.
type Problem uint

const (
	// NoActive: the user holds no active key at all.
	NoActive Problem = 1 << iota
	// NoPrimary: no active primary key.
	NoPrimary
	// NoBackup: no active backup key (losing the primary locks them out).
	NoBackup
	// Unverified: a pending or active key that never passed a
	// verification (a signed registry challenge).
	Unverified
	// Stale: an active key whose last successful verification is older
	// than Options.StaleAfter.
	Stale
	// IDPDrift: an identity provider and the registry disagree about the
	// user's keys, either way: a provider holds a method of a key the
	// registry calls invalid (or one it has no record of), or misses one
	// of an active key (GET /v1/idp-drift, docs/identity-providers.md).
	IDPDrift
)

// Problems lists every problem in display order.
var Problems = []Problem{NoActive, NoPrimary, NoBackup, Unverified, Stale, IDPDrift}

// String is the problem's short name (for CSV and filters).
func (p Problem) String() string {
	var names []string
	for _, q := range Problems {
		if p&q != 0 {
			names = append(names, problemNames[q])
		}
	}
	return strings.Join(names, ";")
}

var problemNames = map[Problem]string{
	NoActive:   "no-active-key",
	NoPrimary:  "no-primary",
	NoBackup:   "no-backup",
	Unverified: "unverified",
	Stale:      "stale-verification",
	IDPDrift:   "idp-drift",
}

// Label is the problem in words for a person.
func (p Problem) Label() string {
	switch p {
	case NoActive:
		return "no active key"
	case NoPrimary:
		return "no primary key"
	case NoBackup:
		return "no backup key"
	case Unverified:
		return "key never verified"
	case Stale:
		return "verified long ago"
	case IDPDrift:
		return "identity provider out of step"
	}
	return p.String()
}

// Key is one registered key with its last successful verification.
type Key struct {
	registry.Key
	// LastVerified is the last successful verification; zero when there
	// was none (or Inventory.Verifications is false).
	LastVerified time.Time
	// FIDO2Models names the model of each FIDO2 credential on the key, when
	// the registry holds a FIDO Metadata Service BLOB (GET /v1/inventory).
	FIDO2Models []registry.FIDOModel
}

// ModelNames is the key's FIDO2 models in words, one per distinct model:
// "YubiKey 5 Series (FIDO_CERTIFIED_L2)"; an AAGUID the metadata does not
// list shows as "unlisted AAGUID …". Empty without metadata.
func (k Key) ModelNames() []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range k.FIDO2Models {
		w := m.Model
		switch {
		case w == "" && m.AAGUID == "":
			w = "no AAGUID"
		case w == "":
			w = "unlisted AAGUID " + m.AAGUID
		case m.Status != "":
			w += " (" + m.Status + ")"
		}
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

// User is one user with their keys and standing.
type User struct {
	registry.User
	Keys []Key
	// Coverage is the user's standing against the two-key policy, the same
	// judgement as the registry's coverage endpoint.
	Coverage backup.UserCoverage
	Problems Problem
	// LastVerified is the newest verification of any of their keys.
	LastVerified time.Time
	// Drift is where an identity provider and the registry disagree
	// about the user's keys (the IDPDrift problem).
	Drift []registry.IDPDrift
}

// Options tune Load.
type Options struct {
	// PageSize is how many users one request reads (default 1000, at most
	// the registry's 5000).
	PageSize int
	// Workers is how many key lists are read at once (default 8) from a
	// registry without GET /v1/inventory.
	Workers int
	// StaleAfter is how old a last verification may be before it counts
	// as Stale (default 180 days).
	StaleAfter time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// PerUser reads user by user, as from a registry without GET
	// /v1/inventory (which Load falls back to by itself).
	PerUser bool
}

func (o *Options) defaults() {
	if o.PageSize <= 0 {
		o.PageSize = 1000
	}
	if o.PageSize > 5000 {
		o.PageSize = 5000
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 180 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Inventory is one load of the registry.
type Inventory struct {
	Users []User
	// Verifications says whether last verifications were read. A registry
	// without GET /v1/inventory has them only in its audit log, which
	// only an admin token may read; without them only pending keys count
	// as Unverified and none as Stale.
	Verifications bool
	// At is when the load finished.
	At time.Time
}

// Load reads every user with their keys and each key's last successful
// verification from reg, a page of users per request (GET /v1/inventory).
// From a registry without that endpoint it falls back to one request per
// user, with last verifications from the audit log when the token may read
// it. batch, when not nil, receives each page of users as soon as it is
// complete, in the registry's order, from Load's goroutine. A failure
// part-way returns the users read so far with the error.
func Load(ctx context.Context, reg *client.Client, opt Options, batch func([]User)) (*Inventory, error) {
	opt.defaults()
	if opt.PerUser {
		return loadEach(ctx, reg, opt, batch)
	}
	inv := &Inventory{Verifications: true}
	drift, err := driftByUser(ctx, reg)
	if err != nil {
		return inv, err
	}
	now := opt.Now()
	after := ""
	for {
		page, next, err := reg.Inventory(ctx, after, opt.PageSize)
		if err != nil {
			if after == "" && status(err) == http.StatusNotFound {
				return loadEach(ctx, reg, opt, batch)
			}
			return inv, fmt.Errorf("listing users: %w", err)
		}
		us := make([]User, len(page))
		for i, p := range page {
			us[i] = User{User: p.User, Keys: make([]Key, len(p.Keys))}
			for j, k := range p.Keys {
				us[i].Keys[j] = Key{Key: k.Key, FIDO2Models: k.FIDO2Models}
				if k.LastVerifiedAt != nil {
					us[i].Keys[j].LastVerified = *k.LastVerifiedAt
				}
			}
			us[i].judge(true, now, opt.StaleAfter)
			us[i].drifted(drift)
		}
		inv.Users = append(inv.Users, us...)
		if batch != nil && len(us) > 0 {
			batch(us)
		}
		if next == "" || len(page) == 0 {
			break
		}
		after = next
	}
	inv.At = opt.Now()
	return inv, nil
}

// loadEach is Load for a registry without GET /v1/inventory.
func loadEach(ctx context.Context, reg *client.Client, opt Options, batch func([]User)) (*Inventory, error) {
	inv := &Inventory{}
	drift, err := driftByUser(ctx, reg)
	if err != nil {
		return inv, err
	}
	last, err := LastVerifications(ctx, reg)
	switch {
	case err == nil:
		inv.Verifications = true
	case isForbidden(err):
		last = nil
	default:
		return inv, fmt.Errorf("reading verifications: %w", err)
	}
	now := opt.Now()
	after := ""
	for {
		us, next, err := reg.Users(ctx, after, opt.PageSize)
		if err != nil {
			return inv, fmt.Errorf("listing users: %w", err)
		}
		page, err := keysOf(ctx, reg, us, opt.Workers)
		if err != nil {
			return inv, err
		}
		for i := range page {
			for j := range page[i].Keys {
				page[i].Keys[j].LastVerified = last[page[i].Keys[j].ID]
			}
			page[i].judge(inv.Verifications, now, opt.StaleAfter)
			page[i].drifted(drift)
		}
		inv.Users = append(inv.Users, page...)
		if batch != nil && len(page) > 0 {
			batch(page)
		}
		if next == "" || len(us) == 0 {
			break
		}
		after = next
	}
	inv.At = opt.Now()
	return inv, nil
}

// keysOf reads the keys of every user in us, workers at a time.
func keysOf(ctx context.Context, reg *client.Client, us []registry.User, workers int) ([]User, error) {
	out := make([]User, len(us))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan int)
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ks, err := reg.UserKeys(ctx, us[i].ID)
				if err != nil {
					once.Do(func() { first = fmt.Errorf("keys of %s: %w", us[i].ExternalID, err); cancel() })
					continue
				}
				u := User{User: us[i], Keys: make([]Key, len(ks))}
				for j, k := range ks {
					u.Keys[j] = Key{Key: k}
				}
				out[i] = u
			}
		}()
	}
feed:
	for i := range us {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// judge fills in coverage and problems from the keys.
func (u *User) judge(known bool, now time.Time, staleAfter time.Duration) {
	c := backup.UserCoverage{UserID: u.ID, ExternalID: u.ExternalID}
	primary, backupKeys := 0, 0
	var p Problem
	for i := range u.Keys {
		k := &u.Keys[i]
		if k.LastVerified.After(u.LastVerified) {
			u.LastVerified = k.LastVerified
		}
		switch k.Status {
		case registry.KeyActive:
			c.ActiveKeys++
			if k.Role == registry.RoleBackup {
				backupKeys++
			} else {
				primary++
			}
			if known && k.LastVerified.IsZero() {
				p |= Unverified
			} else if known && now.Sub(k.LastVerified) > staleAfter {
				p |= Stale
			}
		case registry.KeyPending:
			if k.LastVerified.IsZero() {
				p |= Unverified
			}
		}
	}
	if primary == 0 {
		c.Missing = append(c.Missing, "primary")
		p |= NoPrimary
	}
	if backupKeys == 0 {
		c.Missing = append(c.Missing, "backup")
		p |= NoBackup
	}
	if c.ActiveKeys == 0 {
		p |= NoActive
	}
	c.Covered = len(c.Missing) == 0
	u.Coverage = c
	// The policy binds active users only (as app/backup's report).
	if u.Status != registry.UserActive {
		p = 0
	}
	u.Problems = p
}

// driftByUser reads the registry's identity-provider drift by user; a
// registry without GET /v1/idp-drift has none.
func driftByUser(ctx context.Context, reg *client.Client) (map[string][]registry.IDPDrift, error) {
	ds, err := reg.IDPDrift(ctx)
	if st := status(err); st == http.StatusNotFound || st == http.StatusForbidden {
		// A registry without the endpoint has none; a token that may not
		// read it may not read the inventory either, and hears so from it.
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading identity provider drift: %w", err)
	}
	out := map[string][]registry.IDPDrift{}
	for _, d := range ds {
		out[d.UserID] = append(out[d.UserID], d)
	}
	return out, nil
}

// drifted adds the user's identity-provider drift. Unlike the two-key
// policy it binds every user: a provider still letting a suspended user
// in with a lost key is the drift that matters most.
func (u *User) drifted(drift map[string][]registry.IDPDrift) {
	if d := drift[u.ID]; len(d) > 0 {
		u.Drift = d
		u.Problems |= IDPDrift
	}
}

// LastVerifications reads the audit log's successful verifications and
// returns the time of the last one of each key. It needs an admin token.
func LastVerifications(ctx context.Context, reg *client.Client) (map[string]time.Time, error) {
	last := map[string]time.Time{}
	q := client.AuditQuery{Action: "verification", Limit: 1000}
	for {
		pg, err := reg.Audit(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, e := range pg.Entries {
			var v registry.Verification
			if json.Unmarshal(e.Payload, &v) != nil || !v.OK || v.CloneSuspected {
				continue
			}
			at := v.At
			if at.IsZero() {
				at = e.Time
			}
			if at.After(last[v.KeyID]) {
				last[v.KeyID] = at
			}
		}
		if pg.Next == 0 {
			return last, nil
		}
		q.After = pg.Next
	}
}

func isForbidden(err error) bool { return status(err) == http.StatusForbidden }

// status is the HTTP status of the registry's refusal, 0 for other errors.
func status(err error) int {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// Summary is the counts at the top of the inventory.
type Summary struct {
	Users, ActiveUsers, Keys, ActiveKeys int
	// Covered counts active users with an active primary and backup key.
	Covered int
	// By problem: how many active users have it.
	NoActive, NoPrimary, NoBackup, Unverified, Stale int
	// IDPDrift counts users of any status an identity provider disagrees
	// with the registry about.
	IDPDrift int
}

// Summarise counts users.
func Summarise(us []User) Summary {
	var s Summary
	for i := range us {
		u := &us[i]
		s.Users++
		s.Keys += len(u.Keys)
		for _, k := range u.Keys {
			if k.Status == registry.KeyActive {
				s.ActiveKeys++
			}
		}
		if u.Problems&IDPDrift != 0 {
			s.IDPDrift++
		}
		if u.Status != registry.UserActive {
			continue
		}
		s.ActiveUsers++
		if u.Coverage.Covered {
			s.Covered++
		}
		p := u.Problems
		for _, c := range []struct {
			p Problem
			n *int
		}{{NoActive, &s.NoActive}, {NoPrimary, &s.NoPrimary}, {NoBackup, &s.NoBackup}, {Unverified, &s.Unverified}, {Stale, &s.Stale}} {
			if p&c.p != 0 {
				*c.n++
			}
		}
	}
	return s
}

// Report is the inventory's coverage as app/backup reports it.
func (inv *Inventory) Report() *backup.CoverageReport {
	r := &backup.CoverageReport{Users: []backup.UserCoverage{}}
	for _, u := range inv.Users {
		if u.Status != registry.UserActive {
			continue
		}
		r.Users = append(r.Users, u.Coverage)
		if u.Coverage.Covered {
			r.Covered++
		} else {
			r.Uncovered++
		}
	}
	return r
}

// Groups lists every group any user is in, sorted.
func Groups(us []User) []string {
	seen := map[string]bool{}
	for _, u := range us {
		for _, g := range u.Groups {
			seen[g] = true
		}
	}
	out := make([]string, 0, len(seen))
	for g := range seen {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}
