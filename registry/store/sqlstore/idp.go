package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keydesk/keydesk/registry"
)

const linkCols = "l.id, l.provider, l.method_id, l.credential_id, l.key_id, k.serial, l.user_id, l.nonce, l.state, k.status, l.created_at, l.deleted_at"

func scanLink(sc interface{ Scan(...any) error }) (registry.IDPLink, error) {
	var l registry.IDPLink
	var st, ks string
	var created, deleted int64
	if err := sc.Scan(&l.ID, &l.Provider, &l.MethodID, &l.CredentialID, &l.KeyID, &l.Serial, &l.UserID, &l.Nonce, &st, &ks, &created, &deleted); err != nil {
		return l, err
	}
	l.State, l.KeyStatus, l.CreatedAt = registry.IDPLinkState(st), registry.KeyStatus(ks), fromNanos(created)
	if deleted != 0 {
		t := fromNanos(deleted)
		l.DeletedAt = &t
	}
	return l, nil
}

// RecordIDPLink stores that provider l.Provider holds key l.KeyID's
// credential l.CredentialID as method l.MethodID; the user is the key's
// owner. A link already recorded for the same provider and method, key and
// credential is returned as it is (a replayed write); one for another key
// or credential is a *registry.DuplicateError. The key must be in service.
func (t *Tx) RecordIDPLink(l *registry.IDPLink) (created bool, err error) {
	if l.Provider == "" || l.MethodID == "" || l.KeyID == "" || len(l.CredentialID) == 0 {
		return false, registry.Invalid("missing_field", "provider, method_id, key_id and credential_id are required")
	}
	if err := t.Serialize(); err != nil {
		return false, err
	}
	k, err := t.GetKey(l.KeyID)
	if err != nil {
		return false, err
	}
	old, err := scanLink(t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT "+linkCols+" FROM idp_links l JOIN keys k ON k.id = l.key_id WHERE l.provider = ? AND l.method_id = ?"), l.Provider, l.MethodID))
	switch {
	case err == nil:
		if old.KeyID != l.KeyID || !bytes.Equal(old.CredentialID, l.CredentialID) {
			return false, &registry.DuplicateError{Entity: "identity provider link", Field: "provider and method_id"}
		}
		*l = old
		return false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return false, fmt.Errorf("reading identity provider link: %w", err)
	}
	if !k.Status.InService() {
		return false, fmt.Errorf("key %s is %s: %w", k.ID, k.Status, registry.ErrKeyNotInService)
	}
	l.ID, l.UserID, l.Serial, l.KeyStatus, l.State, l.CreatedAt, l.DeletedAt = NewID("idl"), k.OwnerID, k.Serial, k.Status, registry.LinkActive, t.now, nil
	if err := t.exec("INSERT INTO idp_links (id, provider, method_id, credential_id, key_id, user_id, nonce, state, created_at, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
		l.ID, l.Provider, l.MethodID, l.CredentialID, l.KeyID, l.UserID, l.Nonce, string(l.State), nanos(t.now)); err != nil {
		if isUnique(err) {
			return false, &registry.DuplicateError{Entity: "identity provider link", Field: "provider and method_id"}
		}
		return false, fmt.Errorf("inserting identity provider link: %w", err)
	}
	return true, t.record("idp_link", l.ID, "create", l)
}

// DeleteIDPLink marks link id deleted: the desk deleted its method at the
// provider. A link already deleted is returned as it is.
func (t *Tx) DeleteIDPLink(id string) (registry.IDPLink, error) {
	if err := t.Serialize(); err != nil {
		return registry.IDPLink{}, err
	}
	l, err := scanLink(t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT "+linkCols+" FROM idp_links l JOIN keys k ON k.id = l.key_id WHERE l.id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return l, registry.ErrNotFound
	}
	if err != nil {
		return l, fmt.Errorf("reading identity provider link: %w", err)
	}
	if l.State == registry.LinkDeleted {
		return l, nil
	}
	if err := t.exec("UPDATE idp_links SET state = ?, deleted_at = ? WHERE id = ?", string(registry.LinkDeleted), nanos(t.now), id); err != nil {
		return l, fmt.Errorf("deleting identity provider link: %w", err)
	}
	now := t.now
	l.State, l.DeletedAt = registry.LinkDeleted, &now
	return l, t.record("idp_link", l.ID, "delete", l)
}

// PutIDPObservation keeps o as the last listing of o.Provider for o.UserID
// (an older one than the one kept is ignored) and audits it when it differs
// from the listing kept.
func (t *Tx) PutIDPObservation(o *registry.IDPObservation) error {
	if o.Provider == "" || o.UserID == "" || o.ObservedAt.IsZero() {
		return registry.Invalid("missing_field", "provider, user_id and observed_at are required")
	}
	for _, m := range o.Methods {
		if m.ID == "" {
			return registry.Invalid("missing_field", "every method needs an id")
		}
	}
	if o.Methods == nil {
		o.Methods = []registry.IDPMethod{}
	}
	if err := t.Serialize(); err != nil {
		return err
	}
	if _, err := t.GetUser(o.UserID); err != nil {
		return err
	}
	b, err := json.Marshal(o.Methods)
	if err != nil {
		return err
	}
	// The same listing as the one kept only moves its time forward: a
	// provider that holds what it held is no event for the audit chain, and
	// a desk that syncs every few minutes would otherwise grow the chain by
	// one entry per user and provider each time.
	var prev []byte
	err = t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT methods FROM idp_observations WHERE provider = ? AND user_id = ?"), o.Provider, o.UserID).Scan(&prev)
	switch {
	case err == nil && bytes.Equal(prev, b):
		if err := t.exec("UPDATE idp_observations SET observed_at = ? WHERE provider = ? AND user_id = ? AND observed_at <= ?",
			nanos(o.ObservedAt), o.Provider, o.UserID, nanos(o.ObservedAt)); err != nil {
			return fmt.Errorf("storing identity provider observation: %w", err)
		}
		return nil
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("reading identity provider observation: %w", err)
	}
	if err := t.exec("INSERT INTO idp_observations (provider, user_id, observed_at, methods) VALUES (?, ?, ?, ?) "+
		"ON CONFLICT (provider, user_id) DO UPDATE SET observed_at = excluded.observed_at, methods = excluded.methods "+
		"WHERE idp_observations.observed_at <= excluded.observed_at", o.Provider, o.UserID, nanos(o.ObservedAt), b); err != nil {
		return fmt.Errorf("storing identity provider observation: %w", err)
	}
	ids := make([]string, len(o.Methods))
	for i, m := range o.Methods {
		ids[i] = m.ID
	}
	return t.Audit("idp_observation.put", map[string]any{"provider": o.Provider, "user_id": o.UserID, "observed_at": o.ObservedAt.UTC(), "method_ids": ids})
}

// LinkFilter selects links; zero fields select all.
type LinkFilter struct {
	KeyID, UserID, Provider string
}

// IDPLinks lists links, oldest first.
func (s *Store) IDPLinks(ctx context.Context, f LinkFilter) ([]registry.IDPLink, error) {
	q := "SELECT " + linkCols + " FROM idp_links l JOIN keys k ON k.id = l.key_id WHERE 1 = 1"
	var args []any
	for _, c := range []struct{ col, v string }{{"l.key_id", f.KeyID}, {"l.user_id", f.UserID}, {"l.provider", f.Provider}} {
		if c.v != "" {
			q += " AND " + c.col + " = ?"
			args = append(args, c.v)
		}
	}
	var out []registry.IDPLink
	err := each(ctx, s, s.db, q+" ORDER BY l.created_at, l.id", args, func(r *sql.Rows) error {
		l, err := scanLink(r)
		out = append(out, l)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading identity provider links: %w", err)
	}
	return out, nil
}

// IDPObservations lists the kept observations.
func (s *Store) IDPObservations(ctx context.Context) ([]registry.IDPObservation, error) {
	var out []registry.IDPObservation
	err := each(ctx, s, s.db, "SELECT provider, user_id, observed_at, methods FROM idp_observations ORDER BY user_id, provider", nil, func(r *sql.Rows) error {
		var o registry.IDPObservation
		var at int64
		var b []byte
		if err := r.Scan(&o.Provider, &o.UserID, &at, &b); err != nil {
			return err
		}
		o.ObservedAt = fromNanos(at)
		if err := json.Unmarshal(b, &o.Methods); err != nil {
			return err
		}
		out = append(out, o)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading identity provider observations: %w", err)
	}
	return out, nil
}

// IDPDrift computes drift (registry.ComputeIDPDrift) from every kept
// observation, every link and the keys of the users observed or linked.
func (s *Store) IDPDrift(ctx context.Context) ([]registry.IDPDrift, error) {
	obs, err := s.IDPObservations(ctx)
	if err != nil {
		return nil, err
	}
	links, err := s.IDPLinks(ctx, LinkFilter{})
	if err != nil {
		return nil, err
	}
	if len(obs) == 0 {
		return []registry.IDPDrift{}, nil
	}
	var keys []registry.DriftKey
	ext := map[string]string{}
	q := "SELECT k.id, k.serial, k.owner_id, k.status, u.external_id, EXISTS (SELECT 1 FROM fido_credentials c WHERE c.key_id = k.id) " +
		"FROM keys k JOIN users u ON u.id = k.owner_id WHERE k.owner_id IN (SELECT user_id FROM idp_observations UNION SELECT user_id FROM idp_links)"
	err = each(ctx, s, s.db, q, nil, func(r *sql.Rows) error {
		var k registry.DriftKey
		var st, e string
		var has any
		if err := r.Scan(&k.ID, &k.Serial, &k.UserID, &st, &e, &has); err != nil {
			return err
		}
		k.Status, ext[k.UserID] = registry.KeyStatus(st), e
		switch v := has.(type) {
		case bool:
			k.HasFIDO2 = v
		case int64:
			k.HasFIDO2 = v != 0
		}
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading keys for drift: %w", err)
	}
	out := registry.ComputeIDPDrift(obs, links, keys)
	for i := range out {
		out[i].ExternalID = ext[out[i].UserID]
	}
	if out == nil {
		out = []registry.IDPDrift{}
	}
	return out, nil
}
