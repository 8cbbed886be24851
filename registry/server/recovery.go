package server

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// recoveryRoutes are the helpdesk's endpoints (docs/workflows.md): find a
// key by its serial, replace a key's FIDO2 credentials after a FIDO2 reset
// (the old ones revoked in the same change set), and record a recovery step
// that happened on the key itself in the audit log.
func (s *Server) recoveryRoutes() []Route {
	staff := []Role{Admin, Helpdesk}
	return []Route{
		{Method: "GET", Pattern: "/v1/keys", Roles: []Role{Admin, Helpdesk, Self}, handle: s.findKey},
		{Method: "POST", Pattern: "/v1/keys/{id}/fido2/reset", Roles: staff, handle: s.resetFIDO},
		{Method: "POST", Pattern: "/v1/keys/{id}/recovery-events", Roles: staff, handle: s.recoveryEvent},
	}
}

// findKey is GET /v1/keys?serial=S: the key with that serial, with its
// credentials. A self token finds only its own keys (an engineer verifying
// a key they hold); anyone else's, or none, is 403 alike, so a self token
// cannot probe which serials are registered.
func (s *Server) findKey(r *request) (int, any, error) {
	serial := r.URL.Query().Get("serial")
	if serial == "" {
		return 0, nil, registry.Invalid("missing_field", "serial is required")
	}
	k, err := s.st.KeyBySerial(r.ctx, serial)
	if r.role == Self && (errors.Is(err, registry.ErrNotFound) || (err == nil && r.ownsUser(k.OwnerID) != nil)) {
		return 0, nil, fail(http.StatusForbidden, "forbidden", "a self token may act only on its own keys")
	}
	if err != nil {
		return 0, nil, err
	}
	d := keyDetail{Key: k}
	if d.FIDO2, err = s.st.FIDOCredentials(r.ctx, k.ID); err != nil {
		return 0, nil, err
	}
	if d.PIV, err = s.st.PIVSlots(r.ctx, k.ID); err != nil {
		return 0, nil, err
	}
	r.w.Header().Set("ETag", etag(k.Version))
	return http.StatusOK, d, nil
}

// resetFIDO is POST /v1/keys/{id}/fido2/reset: after a FIDO2 reset wiped the
// key, every FIDO2 credential the registry holds for it is revoked and the
// new ones made after the reset are registered, in one change set, so no
// auth server ever sees both or neither. The reason is audited
// (key.fido2_reset). New credentials without a trusted attestation on a key
// in service wait for a verification (registry.CredentialPending). A lost,
// revoked or retired key is refused (key_not_in_service).
func (s *Server) resetFIDO(r *request) (int, any, error) {
	var in struct {
		Reason string   `json:"reason"`
		FIDO2  []fidoIn `json:"fido2"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	if in.Reason == "" {
		return 0, nil, registry.Invalid("missing_field", "reason is required")
	}
	creds := make([]registry.FIDOCredential, 0, len(in.FIDO2))
	for i, f := range in.FIDO2 {
		c, err := f.model(r.PathValue("id"))
		if err != nil {
			var ie *registry.InvalidError
			if errors.As(err, &ie) {
				ie.Message = "fido2[" + strconv.Itoa(i) + "]: " + ie.Message
			}
			return 0, nil, err
		}
		s.attestFIDO(r.ctx, &c)
		creds = append(creds, c)
	}
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		if err := tx.Serialize(); err != nil {
			return 0, nil, "", err
		}
		k, err := tx.GetKey(r.PathValue("id"))
		if err != nil {
			return 0, nil, "", err
		}
		if err := takesCredentials(k); err != nil {
			return 0, nil, "", err
		}
		// The reset's reason is its break-glass reason: when the old
		// credentials were the owner's last in the validity view (the new
		// ones may wait for a verification) the reset is also audited as
		// key.break_glass.
		var revoked []string
		err = tx.GuardLastCredential(k.OwnerID, in.Reason, "key.break_glass", map[string]any{"key_id": k.ID, "owner_id": k.OwnerID, "change": "fido2_reset"}, func() error {
			old, err := tx.RevokeFIDOCredentials(k.ID)
			if err != nil {
				return err
			}
			revoked = make([]string, 0, len(old))
			for _, c := range old {
				revoked = append(revoked, c.ID)
			}
			for i := range creds {
				creds[i].Pending = registry.CredentialPending(k.Status, creds[i].Verdict)
				if err := tx.AddFIDOCredential(&creds[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, nil, "", err
		}
		if err := tx.Audit("key.fido2_reset", map[string]any{"key_id": k.ID, "serial": k.Serial, "reason": in.Reason, "revoked": revoked}); err != nil {
			return 0, nil, "", err
		}
		return http.StatusOK, map[string]any{"key": k, "revoked": revoked, "fido2": creds}, "", nil
	})
}

// recoveryActions are the steps done on a key itself that the registry
// records: it cannot see them, so the helpdesk's client reports them.
var recoveryActions = map[string]bool{
	"escrow_opened":     true, // the helpdesk decrypted the key's escrowed PUK
	"piv_pin_unblocked": true, // the PIV PIN was reset with the PUK
	"fido2_reset":       true, // the key's FIDO2 application was reset
	"diagnosed":         true, // the key was examined
}

// recoveryEvent is POST /v1/keys/{id}/recovery-events: an audit entry
// ("recovery.ACTION") with the caller's identity as actor.
func (s *Server) recoveryEvent(r *request) (int, any, error) {
	var in struct {
		Action string `json:"action"`
		Note   string `json:"note"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	if !recoveryActions[in.Action] {
		return 0, nil, registry.Invalid("invalid_action", "action must be escrow_opened, piv_pin_unblocked, fido2_reset or diagnosed")
	}
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		k, err := tx.GetKey(r.PathValue("id"))
		if err != nil {
			return 0, nil, "", err
		}
		ev := map[string]any{"key_id": k.ID, "serial": k.Serial, "owner_id": k.OwnerID, "action": in.Action, "note": in.Note, "at": tx.Now()}
		if err := tx.Audit("recovery."+in.Action, ev); err != nil {
			return 0, nil, "", err
		}
		return http.StatusCreated, ev, "", nil
	})
}
