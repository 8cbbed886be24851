package server

import (
	"context"
	"net/http"
	"strconv"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// inventoryRoutes serve the organisation's users with their keys, page by
// page, for the desk's inventory and coverage views (staff only).
func (s *Server) inventoryRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/v1/inventory", Roles: []Role{Admin, Helpdesk}, handle: s.inventory},
	}
}

// inventory is GET /v1/inventory?after=&limit=: up to limit users (1-5000,
// default 1000) after the cursor, each with their keys; next is the cursor
// of the following page, empty at the end.
func (s *Server) inventory(r *request) (int, any, error) {
	limit := 1000
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 5000 {
			return 0, nil, fail(http.StatusBadRequest, "bad_limit", "limit must be 1-5000")
		}
		limit = n
	}
	page, err := s.st.Inventory(r.ctx, r.URL.Query().Get("after"), limit)
	if err != nil {
		return 0, nil, err
	}
	out := make([]registry.InventoryUser, len(page))
	for i, u := range page {
		out[i] = registry.InventoryUser{User: u.User, Keys: make([]registry.InventoryKey, len(u.Keys))}
		for j, k := range u.Keys {
			out[i].Keys[j] = registry.InventoryKey{Key: k.Key}
			if !k.LastVerified.IsZero() {
				t := k.LastVerified
				out[i].Keys[j].LastVerifiedAt = &t
			}
		}
	}
	if err := s.nameModels(r.ctx, r.URL.Query().Get("after"), page, out); err != nil {
		return 0, nil, err
	}
	next := ""
	if len(page) == limit {
		next = page[len(page)-1].User.ID
	}
	return http.StatusOK, map[string]any{"users": out, "next": next}, nil
}

// nameModels adds to each key of an inventory page the model of each of
// its FIDO2 credentials, from the FIDO Metadata Service BLOB the registry
// holds; without one it adds nothing and costs one small query.
func (s *Server) nameModels(ctx context.Context, after string, page []sqlstore.InventoryUser, out []registry.InventoryUser) error {
	set, _, err := s.mdsSet(ctx)
	if err != nil || set == nil || len(page) == 0 {
		return err
	}
	creds, err := s.st.InventoryAAGUIDs(ctx, after, page[len(page)-1].User.ID)
	if err != nil {
		return err
	}
	at := map[string]*registry.InventoryKey{}
	for i := range out {
		for j := range out[i].Keys {
			at[out[i].Keys[j].ID] = &out[i].Keys[j]
		}
	}
	for _, c := range creds {
		if k := at[c.KeyID]; k != nil {
			k.FIDO2Models = append(k.FIDO2Models, fidoModel(set, c))
		}
	}
	return nil
}
