package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/audit"
)

// Export reads the registrations of user userID (every user when empty) in
// one snapshot; for the whole organisation it adds the audit chain and its
// checkpoints, chained up to now.
func (s *Store) Export(ctx context.Context, userID string) (registry.Export, error) {
	x := registry.Export{Format: registry.ExportFormat, Scope: "organisation", ExportedAt: s.now().UTC(),
		Users: []registry.User{}, Keys: []registry.Key{}, FIDO2: []registry.FIDOCredential{}, PIV: []registry.PIVSlot{},
		Escrow: []registry.EscrowBlob{}, KeySets: []registry.KeySet{}}
	if userID == "" {
		es, cs, err := s.AuditLog(ctx)
		if err != nil {
			return x, err
		}
		x.Audit, x.Checkpoint = es, cs
	} else {
		x.Scope = "user"
	}
	tx, err := s.readTx(ctx)
	if err != nil {
		return x, err
	}
	defer tx.Rollback()
	q := "SELECT " + userCols + " FROM users"
	var args []any
	if userID != "" {
		q += " WHERE id = ?"
		args = append(args, userID)
	}
	if err := each(ctx, s, tx, q+" ORDER BY id", args, func(r *sql.Rows) error {
		u, err := scanUser(r)
		x.Users = append(x.Users, u)
		return err
	}); err != nil {
		return x, fmt.Errorf("exporting users: %w", err)
	}
	if userID != "" && len(x.Users) == 0 {
		return x, fmt.Errorf("user %s: %w", userID, registry.ErrNotFound)
	}
	q = "SELECT " + keyCols + " FROM keys"
	if userID != "" {
		q += " WHERE owner_id = ?"
	}
	if err := each(ctx, s, tx, q+" ORDER BY id", args, func(r *sql.Rows) error {
		k, err := scanKey(r)
		x.Keys = append(x.Keys, k)
		return err
	}); err != nil {
		return x, fmt.Errorf("exporting keys: %w", err)
	}
	for i := range x.Keys {
		k := &x.Keys[i]
		if err := keySets(ctx, s, tx, k); err != nil {
			return x, err
		}
		if err := each(ctx, s, tx, "SELECT "+fidoCols+" FROM fido_credentials WHERE key_id = ? ORDER BY id", []any{k.ID}, func(r *sql.Rows) error {
			c, err := scanFIDO(r)
			x.FIDO2 = append(x.FIDO2, c)
			return err
		}); err != nil {
			return x, fmt.Errorf("exporting fido2 credentials: %w", err)
		}
		if err := each(ctx, s, tx, "SELECT "+pivCols+" FROM piv_slots WHERE key_id = ? ORDER BY id", []any{k.ID}, func(r *sql.Rows) error {
			p, err := scanPIV(r)
			x.PIV = append(x.PIV, p)
			return err
		}); err != nil {
			return x, fmt.Errorf("exporting piv slots: %w", err)
		}
		if err := each(ctx, s, tx, "SELECT "+linkCols+" FROM idp_links l JOIN keys k ON k.id = l.key_id WHERE l.key_id = ? ORDER BY l.created_at, l.id", []any{k.ID}, func(r *sql.Rows) error {
			l, err := scanLink(r)
			l.KeyStatus = ""
			x.IDPLinks = append(x.IDPLinks, l)
			return err
		}); err != nil {
			return x, fmt.Errorf("exporting identity provider links: %w", err)
		}
		if err := each(ctx, s, tx, "SELECT key_id, kind, blob, version, created_at FROM escrow_blobs WHERE key_id = ? ORDER BY kind", []any{k.ID}, func(r *sql.Rows) error {
			var e registry.EscrowBlob
			var c int64
			err := r.Scan(&e.KeyID, &e.Kind, &e.Blob, &e.Version, &c)
			e.CreatedAt = fromNanos(c)
			x.Escrow = append(x.Escrow, e)
			return err
		}); err != nil {
			return x, fmt.Errorf("exporting escrow: %w", err)
		}
	}
	if err := each(ctx, s, tx, "SELECT name, description, created_at FROM key_sets ORDER BY name", nil, func(r *sql.Rows) error {
		var k registry.KeySet
		var c int64
		err := r.Scan(&k.Name, &k.Description, &c)
		k.CreatedAt = fromNanos(c)
		x.KeySets = append(x.KeySets, k)
		return err
	}); err != nil {
		return x, fmt.Errorf("exporting key sets: %w", err)
	}
	return x, nil
}

func each(ctx context.Context, s *Store, q querier, query string, args []any, f func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, s.Rebind(query), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := f(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ChainPending chains audit entries still waiting for the sequencer, so a
// restore that rewrites the audit log starts from a complete one.
func (s *Store) ChainPending(ctx context.Context) error { return s.chainPending(ctx) }

// Restore writes x into a registry that holds no users and no keys, in this
// change set. An organisation export's audit chain is checked against its
// own checkpoints and the exporting registry's key, then kept verbatim as
// entries 1…N: this registry's own earlier entries (token creation) are
// chained again after it and their checkpoints replaced by the one this
// change set signs. Every restored record is a change-feed row and an audit
// entry ("ENTITY.restore"); "registry.restore" records the source's head
// and key so its last signed checkpoint can still be checked.
func (t *Tx) Restore(x *registry.Export) (registry.Restored, error) {
	out := registry.Restored{Scope: x.Scope}
	if x.Format != registry.ExportFormat {
		return out, registry.Invalid("unknown_format", "bundle format %q is not %q", x.Format, registry.ExportFormat)
	}
	if err := t.Serialize(); err != nil {
		return out, err
	}
	var n int64
	if err := t.tx.QueryRowContext(t.ctx, "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM keys) + (SELECT COUNT(*) FROM audit_pending)").Scan(&n); err != nil {
		return out, fmt.Errorf("checking the registry is empty: %w", err)
	}
	if n > 0 {
		return out, registry.Invalid("registry_not_empty", "a bundle is restored only into a registry with no users and no keys")
	}
	source := map[string]any{"scope": x.Scope, "exported_at": x.ExportedAt}
	if len(x.Audit) > 0 {
		rep, err := audit.Verify(x.Audit, x.Checkpoint, x.AuditKey)
		if err != nil {
			return out, registry.Invalid("audit_chain_broken", "the bundle's audit chain does not verify: %v", err)
		}
		if err := t.rechain(x.Audit, &out); err != nil {
			return out, err
		}
		source["head_seq"], source["head_hash"], source["audit_key"] = rep.Entries, hex.EncodeToString(rep.Head), hex.EncodeToString(x.AuditKey)
		if c := x.Checkpoint[len(x.Checkpoint)-1]; true {
			source["last_checkpoint"] = map[string]any{"seq": c.Seq, "hash": hex.EncodeToString(c.Hash), "signature": hex.EncodeToString(c.Signature)}
		}
	}
	for _, k := range x.KeySets {
		if err := t.exec("INSERT INTO key_sets (name, description, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", k.Name, k.Description, nanos(k.CreatedAt)); err != nil {
			return out, fmt.Errorf("restoring key set: %w", err)
		}
	}
	for _, u := range x.Users {
		ext, err := registry.NormalizeExternalID(u.ExternalID)
		if err != nil {
			return out, fmt.Errorf("restoring user %s: %w", u.ID, err)
		}
		u.ExternalID = ext
		g, _ := json.Marshal(u.Groups)
		if u.Groups == nil {
			g = []byte("[]")
		}
		if err := t.exec("INSERT INTO users ("+userCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", u.ID, u.ExternalID, u.DisplayName, u.Email, string(g), string(u.Status), u.Version, nanos(u.CreatedAt), nanos(u.UpdatedAt)); err != nil {
			if isUnique(err) {
				return out, fmt.Errorf("restoring user %s: %w", u.ID, &registry.DuplicateError{Entity: "user", Field: "external_id"})
			}
			return out, fmt.Errorf("restoring user %s: %w", u.ExternalID, err)
		}
		if err := t.record("user", u.ID, "restore", u); err != nil {
			return out, err
		}
		out.Users++
	}
	for _, k := range x.Keys {
		if err := t.exec("INSERT INTO keys ("+keyCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", k.ID, k.Serial, k.Model, k.Firmware, k.Label, k.OwnerID, string(k.Role), string(k.Status), k.Version, nanos(k.CreatedAt), nanos(k.UpdatedAt)); err != nil {
			return out, fmt.Errorf("restoring key %s: %w", k.Serial, err)
		}
		for _, set := range k.KeySets {
			if err := t.exec("INSERT INTO key_sets (name, description, created_at) VALUES (?, '', ?) ON CONFLICT DO NOTHING", set, nanos(t.now)); err != nil {
				return out, fmt.Errorf("restoring key set: %w", err)
			}
			if err := t.exec("INSERT INTO key_set_members (set_name, key_id) VALUES (?, ?)", set, k.ID); err != nil {
				return out, fmt.Errorf("restoring key set membership: %w", err)
			}
		}
		if err := t.record("key", k.ID, "restore", k); err != nil {
			return out, err
		}
		out.Keys++
	}
	for _, c := range x.FIDO2 {
		if err := t.exec("INSERT INTO fido_credentials ("+fidoCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", c.ID, c.KeyID, c.CredentialID, c.RPID, c.PublicKey, nonNil(c.AAGUID),
			int64(c.SignCount), c.CredProtect, c.AttestationObject, c.AttestationClientDataHash, string(c.Verdict), c.VerdictReason, b2i(c.CloneSuspected), b2i(c.Pending), nanos(c.CreatedAt), c.AttestationClientDataJSON); err != nil {
			return out, fmt.Errorf("restoring fido2 credential: %w", err)
		}
		if err := t.record("fido2_credential", c.ID, "restore", c); err != nil {
			return out, err
		}
		out.Credentials++
	}
	for _, p := range x.PIV {
		if err := t.exec("INSERT INTO piv_slots ("+pivCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", p.ID, p.KeyID, p.Slot, p.PublicKey, p.Certificate, p.AttestationCert, p.AttestationIntermediate,
			string(p.Verdict), p.VerdictReason, b2i(p.Pending), nanos(p.CreatedAt)); err != nil {
			return out, fmt.Errorf("restoring piv slot: %w", err)
		}
		if err := t.record("piv_slot", p.ID, "restore", p); err != nil {
			return out, err
		}
		out.Credentials++
	}
	for _, e := range x.Escrow {
		if err := t.exec("INSERT INTO escrow_blobs (key_id, kind, blob, version, created_at) VALUES (?, ?, ?, ?, ?)", e.KeyID, e.Kind, e.Blob, e.Version, nanos(e.CreatedAt)); err != nil {
			return out, fmt.Errorf("restoring escrow: %w", err)
		}
		// The blob itself stays out of the feed and the audit log.
		if err := t.Audit("escrow.restore", map[string]any{"key_id": e.KeyID, "kind": e.Kind, "version": e.Version}); err != nil {
			return out, err
		}
	}
	for _, l := range x.IDPLinks {
		var deleted int64
		if l.DeletedAt != nil {
			deleted = nanos(*l.DeletedAt)
		}
		if l.State != registry.LinkActive && l.State != registry.LinkDeleted {
			return out, registry.Invalid("invalid_link_state", "identity provider link %s: state %q", l.ID, l.State)
		}
		if err := t.exec("INSERT INTO idp_links (id, provider, method_id, credential_id, key_id, user_id, nonce, state, created_at, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			l.ID, l.Provider, l.MethodID, l.CredentialID, l.KeyID, l.UserID, l.Nonce, string(l.State), nanos(l.CreatedAt), deleted); err != nil {
			return out, fmt.Errorf("restoring identity provider link: %w", err)
		}
		if err := t.record("idp_link", l.ID, "restore", l); err != nil {
			return out, err
		}
		out.IDPLinks++
	}
	source["users"], source["keys"], source["credentials"], source["rechained"] = out.Users, out.Keys, out.Credentials, out.Rechained
	if out.IDPLinks > 0 {
		source["idp_links"] = out.IDPLinks
	}
	return out, t.Audit("registry.restore", source)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// rechain replaces the audit log with src (already verified) followed by
// this registry's own entries, chained again, and drops the checkpoints the
// rewrite invalidates; the change set's own checkpoint signs the new head.
func (t *Tx) rechain(src []audit.Entry, out *registry.Restored) error {
	rows, err := t.tx.QueryContext(t.ctx, "SELECT seq, at, actor, action, payload FROM audit_log ORDER BY seq")
	if err != nil {
		return fmt.Errorf("reading audit log: %w", err)
	}
	var local []audit.Entry
	for rows.Next() {
		var e audit.Entry
		var p string
		if err := rows.Scan(&e.Seq, &e.Time, &e.Actor, &e.Action, &p); err != nil {
			rows.Close()
			return fmt.Errorf("reading audit log: %w", err)
		}
		e.Payload = []byte(p)
		local = append(local, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if err := t.exec("DELETE FROM audit_checkpoints"); err != nil {
		return fmt.Errorf("replacing audit checkpoints: %w", err)
	}
	if err := t.exec("DELETE FROM audit_log"); err != nil {
		return fmt.Errorf("replacing audit log: %w", err)
	}
	ins := "INSERT INTO audit_log (seq, at, actor, action, payload, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)"
	for _, e := range src {
		if err := t.exec(ins, e.Seq, e.Time, e.Actor, e.Action, string(e.Payload), e.PrevHash, e.Hash); err != nil {
			return fmt.Errorf("restoring audit entry %d: %w", e.Seq, err)
		}
	}
	seq, hash := src[len(src)-1].Seq, src[len(src)-1].Hash
	for _, e := range local {
		audit.Seal(&e, seq, hash)
		if err := t.exec(ins, e.Seq, e.Time, e.Actor, e.Action, string(e.Payload), e.PrevHash, e.Hash); err != nil {
			return fmt.Errorf("rechaining audit entry: %w", err)
		}
		seq, hash = e.Seq, e.Hash
	}
	t.auditSeq, t.auditHash = seq, hash
	t.rechained = true
	out.AuditEntries, out.Rechained = len(src), len(local)
	return nil
}
