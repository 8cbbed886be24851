package client

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/keydesk/keydesk/registry"
)

// InventoryKey is a key with its last successful verification (nil when
// it never passed one).
type InventoryKey struct {
	registry.Key
	LastVerifiedAt *time.Time `json:"last_verified_at,omitempty"`
}

// InventoryUser is a user with every key they own.
type InventoryUser struct {
	User registry.User  `json:"user"`
	Keys []InventoryKey `json:"keys"`
}

// Inventory reads one page of users after the given id, each with their
// keys (GET /v1/inventory, staff only). next is "" at the end.
func (c *Client) Inventory(ctx context.Context, after string, limit int) ([]InventoryUser, string, error) {
	var out struct {
		Users []InventoryUser `json:"users"`
		Next  string          `json:"next"`
	}
	_, _, err := c.do(ctx, "GET", "/v1/inventory?after="+url.QueryEscape(after)+"&limit="+strconv.Itoa(limit), nil, nil, &out)
	return out.Users, out.Next, err
}
