package sqlstore

import (
	"fmt"

	"github.com/keydesk/keydesk/registry"
)

// RevokeFIDOCredentials removes every FIDO2 credential of key keyID, as a
// FIDO2 reset erases them on the key itself (CTAP 2.1 §6.6). Each removal is
// a change-feed row and an audit entry ("fido2_credential.revoke"), so the
// credentials leave the validity view in this change set. It returns the
// credentials it removed.
func (t *Tx) RevokeFIDOCredentials(keyID string) ([]registry.FIDOCredential, error) {
	rows, err := t.tx.QueryContext(t.ctx, t.s.Rebind("SELECT "+fidoCols+" FROM fido_credentials WHERE key_id = ? ORDER BY id"), keyID)
	if err != nil {
		return nil, fmt.Errorf("listing fido2 credentials: %w", err)
	}
	var old []registry.FIDOCredential
	for rows.Next() {
		c, err := scanFIDO(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing fido2 credentials: %w", err)
		}
		old = append(old, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing fido2 credentials: %w", err)
	}
	for _, c := range old {
		if err := t.exec("DELETE FROM fido_credentials WHERE id = ?", c.ID); err != nil {
			return nil, fmt.Errorf("revoking fido2 credential: %w", err)
		}
		if err := t.record("fido2_credential", c.ID, "revoke", map[string]any{"id": c.ID, "key_id": c.KeyID, "credential_id": c.CredentialID, "rp_id": c.RPID}); err != nil {
			return nil, err
		}
	}
	return old, nil
}
