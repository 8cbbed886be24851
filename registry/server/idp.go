package server

import (
	"net/http"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// idpRoutes keep the ledger of what went where: which identity provider
// holds which of a key's credentials under which method id, what the
// providers were last seen to hold, and the drift between the two
// (docs/identity-providers.md). Staff only.
func (s *Server) idpRoutes() []Route {
	staff := []Role{Admin, Helpdesk}
	return []Route{
		{Method: "POST", Pattern: "/v1/idp-links", Roles: staff, handle: s.recordIDPLink},
		{Method: "GET", Pattern: "/v1/idp-links", Roles: staff, handle: s.listIDPLinks},
		{Method: "POST", Pattern: "/v1/idp-links/{id}/delete", Roles: staff, handle: s.deleteIDPLink},
		{Method: "POST", Pattern: "/v1/idp-observations", Roles: staff, handle: s.observeIDP},
		{Method: "GET", Pattern: "/v1/idp-drift", Roles: staff, handle: s.idpDrift},
	}
}

// recordIDPLink is POST /v1/idp-links: a provider accepted a key's
// credential as a method. 201 with the link; 200 with the link already
// recorded for the same provider, method, key and credential.
func (s *Server) recordIDPLink(r *request) (int, any, error) {
	var in struct {
		Provider     string `json:"provider"`
		MethodID     string `json:"method_id"`
		KeyID        string `json:"key_id"`
		CredentialID []byte `json:"credential_id"`
		Nonce        string `json:"nonce"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	l := registry.IDPLink{Provider: in.Provider, MethodID: in.MethodID, KeyID: in.KeyID, CredentialID: in.CredentialID, Nonce: in.Nonce}
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		created, err := tx.RecordIDPLink(&l)
		if err != nil {
			return 0, nil, "", err
		}
		if !created {
			return http.StatusOK, l, "", nil
		}
		return http.StatusCreated, l, "", nil
	})
}

// listIDPLinks is GET /v1/idp-links?key_id=&user_id=&provider=.
func (s *Server) listIDPLinks(r *request) (int, any, error) {
	q := r.URL.Query()
	ls, err := s.st.IDPLinks(r.ctx, sqlstore.LinkFilter{KeyID: q.Get("key_id"), UserID: q.Get("user_id"), Provider: q.Get("provider")})
	if err != nil {
		return 0, nil, err
	}
	if ls == nil {
		ls = []registry.IDPLink{}
	}
	return http.StatusOK, map[string]any{"links": ls}, nil
}

// deleteIDPLink is POST /v1/idp-links/{id}/delete: the desk deleted the
// method at its provider.
func (s *Server) deleteIDPLink(r *request) (int, any, error) {
	var in struct{}
	if len(r.body) > 0 {
		if err := r.decode(&in); err != nil {
			return 0, nil, err
		}
	}
	id := r.PathValue("id")
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		l, err := tx.DeleteIDPLink(id)
		if err != nil {
			return 0, nil, "", err
		}
		return http.StatusOK, l, "", nil
	})
}

// observeIDP is POST /v1/idp-observations: the methods a provider listed
// for a user, and when.
func (s *Server) observeIDP(r *request) (int, any, error) {
	var o registry.IDPObservation
	if err := r.decode(&o); err != nil {
		return 0, nil, err
	}
	if !o.ObservedAt.IsZero() && o.ObservedAt.After(s.opt.Now().Add(5*time.Minute)) {
		return 0, nil, registry.Invalid("invalid_observed_at", "observed_at is in the future")
	}
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		if err := tx.PutIDPObservation(&o); err != nil {
			return 0, nil, "", err
		}
		return http.StatusCreated, o, "", nil
	})
}

// idpDrift is GET /v1/idp-drift: every disagreement between the registry
// and what the providers were last seen to hold (registry.ComputeIDPDrift).
func (s *Server) idpDrift(r *request) (int, any, error) {
	d, err := s.st.IDPDrift(r.ctx)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"drift": d}, nil
}
