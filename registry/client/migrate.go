package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/keydesk/keydesk/registry"
)

// The bodies of the migration endpoints, shared with the server.
type (
	MigrationPlan = registry.MigrationPlan
	Advance       = registry.MigrationAdvance
	Advanced      = registry.MigrationAdvanced
	RolledBack    = registry.MigrationRollbackResult
)

// KeySets lists the registry's key sets.
func (c *Client) KeySets(ctx context.Context) ([]registry.KeySet, error) {
	var out struct {
		KeySets []registry.KeySet `json:"key_sets"`
	}
	_, _, err := c.do(ctx, "GET", "/v1/key-sets", nil, nil, &out)
	return out.KeySets, err
}

// CreateMigration stores a new plan in state draft. A bad plan is an
// *APIError with status 422 and the refusal's code (empty_cohort,
// unknown_key_set, percent_out_of_range, ...); one that shares users with
// another active migration is 409 overlapping_migration. Nothing is
// written on a refusal.
func (c *Client) CreateMigration(ctx context.Context, p MigrationPlan) (registry.Migration, error) {
	var m registry.Migration
	return m, c.write(ctx, "POST", "/v1/migrations", p, &m, nil)
}

// Migration reads one migration.
func (c *Client) Migration(ctx context.Context, id string) (registry.Migration, error) {
	var m registry.Migration
	_, _, err := c.do(ctx, "GET", migPath(id), nil, nil, &m)
	return m, err
}

// ReadinessCSV copies a migration's readiness report as CSV to w.
func (c *Client) ReadinessCSV(ctx context.Context, id string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+migPath(id)+"/readiness.csv", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	res, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%w: status %d", ErrUnreachable, res.StatusCode)
	case res.StatusCode != http.StatusOK:
		var e struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if err := json.Unmarshal(raw, &e); err != nil || e.Code == "" || res.StatusCode < 400 {
			return fmt.Errorf("%w: readiness.csv: status %d without the registry's error body", ErrBadResponse, res.StatusCode)
		}
		return &APIError{Status: res.StatusCode, Code: e.Code, Message: e.Message}
	}
	if _, err := io.Copy(w, io.LimitReader(res.Body, MaxResponse)); err != nil {
		return fmt.Errorf("%w: reading readiness.csv: %w", ErrUnreachable, err)
	}
	return nil
}

// DryRun plays the rest of a migration's plan without writing anything.
func (c *Client) DryRun(ctx context.Context, id string) (registry.DryRun, error) {
	var d registry.DryRun
	_, _, err := c.do(ctx, "GET", migPath(id)+"/dry-run", nil, nil, &d)
	return d, err
}

// AdvanceMigration moves a migration forward (admin only). A refused step
// is an *APIError: 409 invalid_transition, grace_period or
// migration_halted; 422 percent_out_of_range.
func (c *Client) AdvanceMigration(ctx context.Context, id string, a Advance) (Advanced, error) {
	var out Advanced
	return out, c.write(ctx, "POST", migPath(id)+"/advance", a, &out, nil)
}

// HaltMigration stops a migration by hand (admin only); users already cut
// over stay where they are.
func (c *Client) HaltMigration(ctx context.Context, id, reason string) (registry.Migration, error) {
	var m registry.Migration
	return m, c.write(ctx, "POST", migPath(id)+"/halt", map[string]string{"reason": reason}, &m, nil)
}

// RollbackMigration moves every user the migration cut over back to the
// old key set in one change set (admin only).
func (c *Client) RollbackMigration(ctx context.Context, id, reason string) (RolledBack, error) {
	var out RolledBack
	return out, c.write(ctx, "POST", migPath(id)+"/rollback", map[string]string{"reason": reason}, &out, nil)
}

// ReportLockout reports a failed sign-in as an organisation's auth server
// does (token role authserver or admin).
func (c *Client) ReportLockout(ctx context.Context, s registry.LockoutSignal) (registry.SignalOutcome, error) {
	var out registry.SignalOutcome
	in := map[string]any{"user_id": s.UserID, "key_id": s.KeyID, "reason": s.Reason}
	if len(s.CredentialID) > 0 {
		in["credential_id"] = s.CredentialID
	}
	return out, c.write(ctx, "POST", "/v1/signals/lockout", in, &out, nil)
}

func migPath(id string) string { return "/v1/migrations/" + url.PathEscape(id) }
