package registry

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// MigrationState is where a key migration stands. States only move forward
// (draft → dry_run → canary → staged → complete); rolled_back is reached
// from any state by a rollback and is final.
type MigrationState string

const (
	MigrationDraft      MigrationState = "draft"
	MigrationDryRun     MigrationState = "dry_run"
	MigrationCanary     MigrationState = "canary"
	MigrationStaged     MigrationState = "staged"
	MigrationComplete   MigrationState = "complete"
	MigrationRolledBack MigrationState = "rolled_back"
)

// Rank orders the forward states; rolled_back and unknown states are -1.
func (s MigrationState) Rank() int {
	switch s {
	case MigrationDraft:
		return 0
	case MigrationDryRun:
		return 1
	case MigrationCanary:
		return 2
	case MigrationStaged:
		return 3
	case MigrationComplete:
		return 4
	}
	return -1
}

// Active reports whether a migration in state s still claims its users:
// at most one active migration may cover a user.
func (s MigrationState) Active() bool { return s.Rank() >= 0 && s != MigrationComplete }

// Cohort selects users: explicit registry user ids, every member of the
// named groups, or everyone (All). In a canary, Percent adds the users whose
// stable bucket (see Bucket) is below Percent.
type Cohort struct {
	All     bool     `json:"all,omitempty"`
	Users   []string `json:"users"`
	Groups  []string `json:"groups"`
	Percent float64  `json:"percent,omitempty"`
}

// MigrationPolicy says when a user is ready to leave set A, and when the
// migration halts by itself.
type MigrationPolicy struct {
	// MinVerifiedB is how many good keys of set B a user needs (at least 1).
	MinVerifiedB int `json:"min_verified_b_keys"`
	// BackupRequired: one of those good B keys must have the backup role.
	BackupRequired bool `json:"backup_required"`
	// MaxVerificationAgeDays: a B key counts only if it passed a
	// verification within this many days (0: any successful verification).
	MaxVerificationAgeDays int `json:"verification_max_age_days"`
	// GracePeriodHours is the least time a stage must run before the next
	// advance, so that failure reports have time to arrive (0: none).
	GracePeriodHours int `json:"grace_period_hours"`
	// HaltThreshold is the share of the current cohort (0 < x ≤ 1) whose
	// failure reports halt the migration; default 0.01. The halt fires at
	// the report that makes ⌊HaltThreshold × cohort⌋ users (at least one)
	// affected.
	HaltThreshold float64 `json:"halt_threshold"`
}

// Migration is a plan to move users from key set From to key set To.
type Migration struct {
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	From    string          `json:"from_set"`
	To      string          `json:"to_set"`
	Scope   Cohort          `json:"scope"`
	Canary  Cohort          `json:"canary"`
	Stages  []float64       `json:"stages"` // planned staged percentages, increasing
	Policy  MigrationPolicy `json:"policy"`
	State   MigrationState  `json:"state"`
	Percent float64         `json:"percent"` // share of the scope reached (staged); 100 when complete
	// Stage names the current cohort ("canary", "staged:10", "complete").
	Stage string `json:"stage"`
	// StageCohort is how many users the current stage cut over; halt
	// thresholds are a share of it. StageAffected counts the users of the
	// current stage with failure reports.
	StageCohort   int       `json:"stage_cohort"`
	StageAffected int       `json:"stage_affected"`
	StageStarted  time.Time `json:"stage_started_at"`
	CutOver       int       `json:"cut_over"` // users on set B now
	Halted        bool      `json:"halted"`
	HaltReason    string    `json:"halt_reason,omitempty"`
	Version       int64     `json:"version"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Bucket is a user's stable position in a migration, 0-9999 (hundredths of
// a percent): the first 8 bytes of SHA-256(migrationID ":" userID). A user
// is in an n% cohort when Bucket < n×100, so growing n only adds users.
func Bucket(migrationID, userID string) int {
	h := sha256.Sum256([]byte(migrationID + ":" + userID))
	return int(binary.BigEndian.Uint64(h[:8]) % 10000)
}

// InPercent reports whether bucket b falls inside a p% cohort.
func InPercent(b int, p float64) bool { return float64(b) < p*100 }

// Readiness reasons: why a user cannot leave set A yet.
const (
	ReasonNoBKey         = "no_b_key"            // no key of set B at all
	ReasonBKeyLost       = "b_key_lost"          // B keys are lost or revoked
	ReasonBKeyInactive   = "b_key_not_active"    // B keys pending, suspended or retired
	ReasonBKeyNoCred     = "b_key_no_credential" // an active B key with no usable credential
	ReasonBKeyUnverified = "b_key_unverified"    // no successful verification within the policy's age
	ReasonBKeyFailing    = "b_key_failing"       // last verification failed or a failure was reported since
	ReasonPINBlocked     = "pin_blocked"         // an auth server reported the B key's PIN blocked
	ReasonTooFewBKeys    = "too_few_b_keys"      // fewer good B keys than the policy's minimum
	ReasonNoBackupKey    = "no_backup_key"       // backup required and no good B key has the backup role
	ReasonOtherMigration = "in_other_migration"  // cut over by another active migration
)

// UserReadiness is one user's row of a readiness report.
type UserReadiness struct {
	UserID     string   `json:"user_id"`
	ExternalID string   `json:"external_id"`
	Email      string   `json:"email"`
	Cohort     string   `json:"cohort"` // "canary", "staged:N" (first planned stage that includes the user) or "rest"
	Ready      bool     `json:"ready"`
	Reasons    []string `json:"reasons"`
	GoodBKeys  int      `json:"good_b_keys"`
	CutOver    bool     `json:"cut_over"`
	// BModels names the models of the FIDO2 credentials on the user's
	// set-B keys, from the FIDO Metadata Service BLOB the registry holds
	// (absent when it holds none).
	BModels []FIDOModel `json:"b_models,omitempty"`
	// IDPDrift is where an identity provider the organisation signs in
	// with disagrees with the registry about the user's keys (GET
	// /v1/idp-drift): a user cut over to set B whose new key is missing
	// at the provider cannot sign in there. It is reported, not a reason:
	// the registry's guards judge the registry's own state.
	IDPDrift []IDPDrift `json:"idp_drift,omitempty"`
}

// CohortTotals counts ready and blocked users of one cohort.
type CohortTotals struct {
	Cohort  string         `json:"cohort"`
	Users   int            `json:"users"`
	Ready   int            `json:"ready"`
	Blocked int            `json:"blocked"`
	Reasons map[string]int `json:"reasons"`
	// IDPDrift counts the cohort's users with identity-provider drift.
	IDPDrift int `json:"idp_drift,omitempty"`
}

// Readiness is a migration's readiness report at one view version.
type Readiness struct {
	MigrationID string          `json:"migration_id"`
	Version     int64           `json:"version"`
	Users       []UserReadiness `json:"users"`
	Totals      []CohortTotals  `json:"totals"`
}

// DryRunStage is what advancing to one stage would do.
type DryRunStage struct {
	Stage     string          `json:"stage"`
	Percent   float64         `json:"percent"`
	CutOver   []string        `json:"cut_over"`   // users this stage would move to set B
	HeldBack  []UserReadiness `json:"held_back"`  // users of the stage's cohort who stay on set A
	LockedOut []string        `json:"locked_out"` // users who would have no valid credential (never expected)
}

// DryRun is the dry run of a migration plan as it stands.
type DryRun struct {
	MigrationID string        `json:"migration_id"`
	Version     int64         `json:"version"`
	Stages      []DryRunStage `json:"stages"`
}

// LockoutSignal is a failed sign-in an organisation's auth server reports.
type LockoutSignal struct {
	ID           string    `json:"id"`
	UserID       string    `json:"user_id"`
	KeyID        string    `json:"key_id"`
	CredentialID []byte    `json:"credential_id,omitempty"`
	Reason       string    `json:"reason"` // "failed_signin", "pin_blocked", "credential_not_recognised"
	MigrationID  string    `json:"migration_id,omitempty"`
	Stage        string    `json:"stage,omitempty"`
	At           time.Time `json:"at"`
}

// SignalOutcome says what a failure report did to a migration.
type SignalOutcome struct {
	Signal       LockoutSignal `json:"signal"`
	UserReverted bool          `json:"user_reverted"` // the user was moved back to set A
	Halted       bool          `json:"halted"`        // this report halted the migration
}

// MigrationPlan is the body of POST /v1/migrations (docs/migrations.md).
type MigrationPlan struct {
	Name   string          `json:"name"`
	From   string          `json:"from_set"`
	To     string          `json:"to_set"`
	Scope  Cohort          `json:"scope"`
	Canary Cohort          `json:"canary"`
	Stages []float64       `json:"stages"`
	Policy MigrationPolicy `json:"policy"`
}

// MigrationAdvance is the body of POST /v1/migrations/{id}/advance: the
// state to go to, the staged percent (0 takes the next planned stage), and
// whether to clear a halt.
type MigrationAdvance struct {
	To      MigrationState `json:"to"`
	Percent float64        `json:"percent,omitempty"`
	Resume  bool           `json:"resume,omitempty"`
}

// MigrationAdvanced is what an advance did.
type MigrationAdvanced struct {
	Migration     Migration       `json:"migration"`
	CutOver       int             `json:"cut_over"`
	HeldBack      int             `json:"held_back"`
	HeldBackUsers []UserReadiness `json:"held_back_users"`
}

// MigrationRollbackResult is what a rollback did.
type MigrationRollbackResult struct {
	Migration Migration `json:"migration"`
	Reverted  int       `json:"reverted"`
}

// Migration errors a caller must act on.
var (
	// ErrOverlap: another active migration already covers some of the users.
	ErrOverlap = errors.New("overlapping migration")
	// ErrHalted: the migration is halted; advancing needs resume.
	ErrHalted = errors.New("migration halted")
)

// TransitionError reports a state change the state machine refuses.
type TransitionError struct {
	From, To MigrationState
	// Code is "invalid_transition", or "grace_period" when the current
	// stage has not yet run for the policy's grace period.
	Code string
	Why  string
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("migration cannot go from %s to %s: %s", e.From, e.To, e.Why)
}
