package server

import (
	"context"
	"encoding/csv"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// AuthServer is the role of an organisation's authentication server: it
// reads the validity view and reports failed sign-ins (lockout signals).
const AuthServer Role = "authserver"

// migrationRoutes are the key-set, migration and lockout-signal endpoints
// (docs/migrations.md).
func (s *Server) migrationRoutes() []Route {
	staff := []Role{Admin, Helpdesk}
	admin := []Role{Admin}
	return []Route{
		{Method: "POST", Pattern: "/v1/key-sets", Roles: admin, handle: s.createKeySet},
		{Method: "GET", Pattern: "/v1/key-sets", Roles: staff, handle: s.listKeySets},
		{Method: "POST", Pattern: "/v1/key-sets/{name}/keys", Roles: admin, handle: s.addSetKey},
		{Method: "DELETE", Pattern: "/v1/key-sets/{name}/keys/{key_id}", Roles: admin, handle: s.removeSetKey},
		{Method: "POST", Pattern: "/v1/migrations", Roles: admin, handle: s.createMigration},
		{Method: "GET", Pattern: "/v1/migrations", Roles: staff, handle: s.listMigrations},
		{Method: "GET", Pattern: "/v1/migrations/{id}", Roles: staff, handle: s.getMigration},
		{Method: "POST", Pattern: "/v1/migrations/{id}/advance", Roles: admin, handle: s.advanceMigration},
		{Method: "POST", Pattern: "/v1/migrations/{id}/halt", Roles: admin, handle: s.haltMigration},
		{Method: "POST", Pattern: "/v1/migrations/{id}/rollback", Roles: admin, handle: s.rollbackMigration},
		{Method: "GET", Pattern: "/v1/migrations/{id}/readiness", Roles: staff, handle: s.readiness},
		{Method: "GET", Pattern: "/v1/migrations/{id}/readiness.csv", Roles: staff, handle: s.readinessCSV},
		{Method: "GET", Pattern: "/v1/migrations/{id}/dry-run", Roles: staff, handle: s.dryRun},
		{Method: "POST", Pattern: "/v1/signals/lockout", Roles: []Role{AuthServer, Admin}, handle: s.lockoutSignal},
	}
}

// migrationErr maps the store's migration errors to API errors.
func migrationErr(err error) error {
	var te *registry.TransitionError
	switch {
	case errors.As(err, &te):
		return fail(http.StatusConflict, te.Code, "%s", te.Error())
	case errors.Is(err, registry.ErrOverlap):
		return fail(http.StatusConflict, "overlapping_migration", "%s", err.Error())
	case errors.Is(err, registry.ErrHalted):
		return fail(http.StatusConflict, "migration_halted", "%s", err.Error())
	}
	return err
}

func (s *Server) createKeySet(r *request) (int, any, error) {
	var in registry.KeySet
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	in.CreatedAt = time.Time{}
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		if err := tx.CreateKeySet(&in); err != nil {
			return 0, nil, "", err
		}
		return http.StatusCreated, in, "", nil
	})
}

func (s *Server) listKeySets(r *request) (int, any, error) {
	ks, err := s.st.KeySets(r.ctx)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"key_sets": ks}, nil
}

func (s *Server) addSetKey(r *request) (int, any, error) {
	var in struct {
		KeyID string `json:"key_id"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	set := r.PathValue("name")
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		if err := tx.AddKeyToSet(set, in.KeyID); err != nil {
			return 0, nil, "", err
		}
		return http.StatusCreated, map[string]string{"set": set, "key_id": in.KeyID}, "", nil
	})
}

func (s *Server) removeSetKey(r *request) (int, any, error) {
	set, key := r.PathValue("name"), r.PathValue("key_id")
	return s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		if err := tx.RemoveKeyFromSet(set, key); err != nil {
			return 0, nil, "", err
		}
		return http.StatusOK, map[string]string{"set": set, "key_id": key}, "", nil
	})
}

func (s *Server) createMigration(r *request) (int, any, error) {
	var in registry.MigrationPlan
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	m := registry.Migration{Name: in.Name, From: in.From, To: in.To, Scope: in.Scope, Canary: in.Canary, Stages: in.Stages, Policy: in.Policy}
	st, body, err := s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		if err := tx.CreateMigration(&m); err != nil {
			return 0, nil, "", err
		}
		return http.StatusCreated, m, etag(m.Version), nil
	})
	return st, body, migrationErr(err)
}

func (s *Server) listMigrations(r *request) (int, any, error) {
	ms, err := s.st.ListMigrations(r.ctx)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"migrations": ms}, nil
}

func (s *Server) getMigration(r *request) (int, any, error) {
	m, err := s.st.GetMigration(r.ctx, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	r.w.Header().Set("ETag", etag(m.Version))
	return http.StatusOK, m, nil
}

func (s *Server) advanceMigration(r *request) (int, any, error) {
	var in registry.MigrationAdvance
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	st, body, err := s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		m, cut, held, err := tx.AdvanceMigration(r.PathValue("id"), in.To, in.Percent, in.Resume)
		if err != nil {
			return 0, nil, "", err
		}
		return http.StatusOK, registry.MigrationAdvanced{Migration: m, CutOver: len(cut), HeldBack: len(held), HeldBackUsers: held}, etag(m.Version), nil
	})
	return st, body, migrationErr(err)
}

func (s *Server) haltMigration(r *request) (int, any, error) {
	var in struct {
		Reason string `json:"reason"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	st, body, err := s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		m, err := tx.HaltMigration(r.PathValue("id"), in.Reason)
		if err != nil {
			return 0, nil, "", err
		}
		return http.StatusOK, m, etag(m.Version), nil
	})
	return st, body, migrationErr(err)
}

func (s *Server) rollbackMigration(r *request) (int, any, error) {
	var in struct {
		Reason string `json:"reason"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	st, body, err := s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		m, users, err := tx.RollbackMigration(r.PathValue("id"), in.Reason)
		if err != nil {
			return 0, nil, "", err
		}
		return http.StatusOK, registry.MigrationRollbackResult{Migration: m, Reverted: len(users)}, etag(m.Version), nil
	})
	return st, body, migrationErr(err)
}

func (s *Server) readiness(r *request) (int, any, error) {
	rd, err := s.st.Readiness(r.ctx, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	if err := s.nameBModels(r.ctx, &rd); err != nil {
		return 0, nil, err
	}
	r.w.Header().Set("ETag", etag(rd.Version))
	return http.StatusOK, rd, nil
}

// ReadinessCSVHeader is the first line of GET /v1/migrations/{id}/readiness.csv.
var ReadinessCSVHeader = []string{"user_id", "external_id", "email", "cohort", "ready", "reasons", "good_b_keys", "cut_over"}

func (s *Server) readinessCSV(r *request) (int, any, error) {
	rd, err := s.st.Readiness(r.ctx, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	r.w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	r.w.Header().Set("Content-Disposition", `attachment; filename="readiness-`+rd.MigrationID+`.csv"`)
	r.w.Header().Set("ETag", etag(rd.Version))
	r.w.WriteHeader(http.StatusOK)
	WriteReadinessCSV(r.w, rd)
	return 0, nil, nil
}

// WriteReadinessCSV writes a readiness report as CSV, one user a line;
// reasons are separated by ";".
func WriteReadinessCSV(w interface{ Write([]byte) (int, error) }, rd registry.Readiness) error {
	cw := csv.NewWriter(w)
	cw.Write(ReadinessCSVHeader)
	for _, u := range rd.Users {
		cw.Write([]string{u.UserID, u.ExternalID, u.Email, u.Cohort, strconv.FormatBool(u.Ready), strings.Join(u.Reasons, ";"), strconv.Itoa(u.GoodBKeys), strconv.FormatBool(u.CutOver)})
	}
	cw.Flush()
	return cw.Error()
}

func (s *Server) dryRun(r *request) (int, any, error) {
	d, err := s.st.DryRun(r.ctx, r.PathValue("id"))
	if err != nil {
		return 0, nil, migrationErr(err)
	}
	return http.StatusOK, d, nil
}

// signalLimiter is a token bucket per token name for lockout signals.
type signalLimiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func (l *signalLimiter) allow(name string, rate float64, burst int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	b := l.buckets[name]
	if b == nil {
		if l.buckets == nil {
			l.buckets = map[string]*bucket{}
		}
		b = &bucket{tokens: float64(burst), last: now}
		l.buckets[name] = b
	}
	b.tokens = min(float64(burst), b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (s *Server) lockoutSignal(r *request) (int, any, error) {
	if !s.signals.allow(r.tok.Name, s.opt.SignalRate, s.opt.SignalBurst) {
		s.log.Warn("lockout signal refused: over the rate", "token", r.tok.Name, "remote_addr", s.clientAddr(r.Request))
		r.w.Header().Set("Retry-After", "1")
		return 0, nil, fail(http.StatusTooManyRequests, "rate_limited", "more than %g lockout signals a second from token %s", s.opt.SignalRate, r.tok.Name)
	}
	var in struct {
		UserID       string `json:"user_id"`
		KeyID        string `json:"key_id"`
		CredentialID []byte `json:"credential_id"`
		Reason       string `json:"reason"`
	}
	if err := r.decode(&in); err != nil {
		return 0, nil, err
	}
	status, body, err := s.write(r, func(tx *sqlstore.Tx) (int, any, string, error) {
		out, err := tx.ReportLockout(&registry.LockoutSignal{UserID: in.UserID, KeyID: in.KeyID, CredentialID: in.CredentialID, Reason: in.Reason})
		if err != nil {
			return 0, nil, "", err
		}
		return http.StatusCreated, out, "", nil
	})
	if err == nil {
		s.log.Info("lockout signal", "token", r.tok.Name, "user_id", in.UserID, "key_id", in.KeyID, "reason", in.Reason)
	}
	return status, body, err
}

// nameBModels adds to each user of a readiness report the models of the
// FIDO2 credentials on their set-B keys, from the FIDO Metadata Service
// BLOB the registry holds; without one it adds nothing.
func (s *Server) nameBModels(ctx context.Context, rd *registry.Readiness) error {
	set, _, err := s.mdsSet(ctx)
	if err != nil || set == nil {
		return err
	}
	m, err := s.st.GetMigration(ctx, rd.MigrationID)
	if err != nil {
		return err
	}
	creds, err := s.st.SetAAGUIDs(ctx, m.To)
	if err != nil {
		return err
	}
	at := make(map[string]int, len(rd.Users))
	for i, u := range rd.Users {
		at[u.UserID] = i
	}
	for _, c := range creds {
		if i, ok := at[c.OwnerID]; ok {
			rd.Users[i].BModels = append(rd.Users[i].BModels, fidoModel(set, c))
		}
	}
	return nil
}
