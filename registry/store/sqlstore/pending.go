package sqlstore

import (
	"context"
	"fmt"
)

// AuditPending counts the audit entries committed but not yet chained
// (audit_pending): after AuditLog, those its sequencing pass could not
// chain, for example on a full disk. They are chained by the first pass
// that can write, with no restart.
func (s *Store) AuditPending(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM audit_pending").Scan(&n); err != nil {
		return 0, fmt.Errorf("counting pending audit entries: %w", err)
	}
	return n, nil
}
