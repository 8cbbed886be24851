package server

import (
	"net/http"
	"strconv"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// backupRoutes export registrations and restore them into an empty
// registry (docs/workflows.md, "Back up and restore"). Admin only: an
// export holds every user's records and the escrow blobs.
func (s *Server) backupRoutes() []Route {
	admin := []Role{Admin}
	return []Route{
		{Method: "GET", Pattern: "/v1/export", Roles: admin, handle: s.export},
		{Method: "POST", Pattern: "/v1/import", Roles: admin, handle: s.importBundle, MaxBody: MaxImport},
	}
}

// MaxImport is the largest bundle POST /v1/import takes: an organisation's
// export is far larger than an ordinary request.
const MaxImport = 256 << 20

// export is GET /v1/export[?user_id=]: one user's registrations, or the
// whole organisation's with the audit chain, its checkpoints and the key
// that signed them.
func (s *Server) export(r *request) (int, any, error) {
	x, err := s.st.Export(r.ctx, r.URL.Query().Get("user_id"))
	if err != nil {
		return 0, nil, err
	}
	if x.Scope == "organisation" {
		x.AuditKey = s.opt.AuditKey
		// Audit entries the export could not chain (a full disk) are not
		// in it: the header says how many.
		pending, err := s.st.AuditPending(r.ctx)
		if err != nil {
			return 0, nil, err
		}
		r.w.Header().Set("X-Audit-Pending", strconv.Itoa(pending))
	}
	return http.StatusOK, x, nil
}

// importBundle is POST /v1/import: restore an export into this registry,
// which must hold no users and no keys.
func (s *Server) importBundle(r *request) (int, any, error) {
	var x registry.Export
	if err := r.decode(&x); err != nil {
		return 0, nil, err
	}
	if err := s.st.ChainPending(r.ctx); err != nil {
		return 0, nil, err
	}
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		out, err := tx.Restore(&x)
		if err != nil {
			return 0, nil, "", err
		}
		return http.StatusCreated, out, "", nil
	})
}
