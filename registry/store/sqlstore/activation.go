package sqlstore

import (
	"fmt"

	"github.com/keydesk/keydesk/registry"
)

// escrowBeforeActive refuses to let key id become active while it has PIV
// slots and no escrow blob: activated like that, the helpdesk could never
// unblock its PIV PIN (the PUK and management key would exist only in the
// enrolling desk's journal). It is registry.ErrEscrowMissing then, unless
// an admin gives a break-glass reason (a key issued before keydesk, whose
// secrets were never escrowed), which is audited as
// key.activate_without_escrow. A key without PIV slots needs no escrow.
func (t *Tx) escrowBeforeActive(id, breakGlass string) error {
	var slots, blobs int
	q := "SELECT (SELECT COUNT(*) FROM piv_slots WHERE key_id = ?), (SELECT COUNT(*) FROM escrow_blobs WHERE key_id = ?)"
	if err := t.tx.QueryRowContext(t.ctx, t.s.Rebind(q), id, id).Scan(&slots, &blobs); err != nil {
		return fmt.Errorf("reading the key's escrow: %w", err)
	}
	if slots == 0 || blobs > 0 {
		return nil
	}
	if breakGlass == "" {
		return fmt.Errorf("key %s: %w", id, registry.ErrEscrowMissing)
	}
	return t.Audit("key.activate_without_escrow", map[string]string{"key_id": id, "reason": breakGlass})
}
