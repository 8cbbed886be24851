package client

import (
	"context"
	"net/url"
	"strconv"

	"github.com/keydesk/keydesk/registry"
)

// The bodies of GET /v1/inventory, shared with the server.
type (
	InventoryKey  = registry.InventoryKey
	InventoryUser = registry.InventoryUser
)

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
