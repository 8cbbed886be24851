package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"

	"github.com/keydesk/keydesk/registry"
)

// Export reads one user's registrations (userID set) or the whole
// organisation's with its audit chain (admin only).
func (c *Client) Export(ctx context.Context, userID string) (registry.Export, error) {
	var x registry.Export
	p := "/v1/export"
	if userID != "" {
		p += "?user_id=" + url.QueryEscape(userID)
	}
	_, _, err := c.do(ctx, "GET", p, nil, nil, &x)
	return x, err
}

// Import restores x into the registry, which must hold no users and no keys.
//
// Its idempotency key is derived from the bundle (SHA-256 of the request
// body), not drawn at random: the same bundle sent again after a desk was
// killed before it read the answer is a replay, answered with the first
// restore's summary for as long as the registry keeps idempotency keys
// (its IdempotencyTTL, 7 days by default), instead of registry_not_empty.
func (c *Client) Import(ctx context.Context, x registry.Export) (registry.Restored, error) {
	var out registry.Restored
	b, err := json.Marshal(x)
	if err != nil {
		return out, err
	}
	sum := sha256.Sum256(b)
	_, _, err = c.do(ctx, "POST", "/v1/import", b, map[string]string{"Idempotency-Key": "import-" + hex.EncodeToString(sum[:16])}, &out)
	return out, err
}
