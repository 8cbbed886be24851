package client

import (
	"context"
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
func (c *Client) Import(ctx context.Context, x registry.Export) (registry.Restored, error) {
	var out registry.Restored
	err := c.write(ctx, "POST", "/v1/import", x, &out, nil)
	return out, err
}
