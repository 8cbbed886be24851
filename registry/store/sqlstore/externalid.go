package sqlstore

import (
	"context"
	"fmt"

	"github.com/keydesk/keydesk/registry"
)

// NonNormalExternalIDs lists the registry ids of users stored before
// external ids were normalised whose external id is not what
// registry.NormalizeExternalID makes of it (not NFC, or holding a control
// or format character): a lookup by external id no longer finds them.
// The registry warns of them at start; it does not rewrite them.
func (s *Store) NonNormalExternalIDs(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT id, external_id FROM users ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("reading external ids: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id, ext string
		if err := rows.Scan(&id, &ext); err != nil {
			return nil, fmt.Errorf("reading external ids: %w", err)
		}
		if n, err := registry.NormalizeExternalID(ext); err != nil || n != ext {
			ids = append(ids, id)
		}
	}
	return ids, rows.Err()
}
