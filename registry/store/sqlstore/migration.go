package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keydesk/keydesk/registry"
)

// notCutAway holds for a key k of user u unless a migration that cut u over
// takes it away: k is in the migration's old set and not in its new one.
const notCutAway = `NOT EXISTS (SELECT 1 FROM migration_cutovers mc JOIN key_set_members ma ON ma.set_name = mc.from_set AND ma.key_id = k.id
 WHERE mc.user_id = u.id AND NOT EXISTS (SELECT 1 FROM key_set_members mb WHERE mb.set_name = mc.to_set AND mb.key_id = k.id))`

// hasValidCredential holds when user u has at least one credential in the
// validity view (the same rule as validityTemplate).
const hasValidCredential = `(EXISTS (SELECT 1 FROM keys k JOIN fido_credentials f ON f.key_id = k.id WHERE k.owner_id = u.id AND k.status = 'active' AND f.pending = 0 AND f.clone_suspected = 0 AND ` + notCutAway + `)
 OR EXISTS (SELECT 1 FROM keys k JOIN piv_slots p ON p.key_id = k.id WHERE k.owner_id = u.id AND k.status = 'active' AND p.pending = 0 AND ` + notCutAway + `))`

// withoutCredentialQuery lists active users with no valid credential.
const withoutCredentialQuery = "SELECT u.id FROM users u WHERE u.status = 'active' AND NOT " + hasValidCredential + " ORDER BY u.id"

type planJSON struct {
	Scope  registry.Cohort          `json:"scope"`
	Canary registry.Cohort          `json:"canary"`
	Stages []float64                `json:"stages"`
	Policy registry.MigrationPolicy `json:"policy"`
}

const migrationCols = "id, name, from_set, to_set, plan_json, state, percent, stage, stage_cohort, stage_affected, stage_started, halted, halt_reason, version, created_at, updated_at"

func scanMigration(sc interface{ Scan(...any) error }) (registry.Migration, error) {
	var m registry.Migration
	var plan, state string
	var started, created, updated int64
	var halted int
	if err := sc.Scan(&m.ID, &m.Name, &m.From, &m.To, &plan, &state, &m.Percent, &m.Stage, &m.StageCohort, &m.StageAffected, &started, &halted, &m.HaltReason, &m.Version, &created, &updated); err != nil {
		return m, err
	}
	var p planJSON
	if err := json.Unmarshal([]byte(plan), &p); err != nil {
		return m, fmt.Errorf("decoding migration plan: %w", err)
	}
	m.Scope, m.Canary, m.Stages, m.Policy = p.Scope, p.Canary, p.Stages, p.Policy
	m.State, m.Halted = registry.MigrationState(state), halted != 0
	m.StageStarted, m.CreatedAt, m.UpdatedAt = fromNanos(started), fromNanos(created), fromNanos(updated)
	return m, nil
}

func getMigration(ctx context.Context, s *Store, q querier, id string) (registry.Migration, error) {
	m, err := scanMigration(q.QueryRowContext(ctx, s.Rebind("SELECT "+migrationCols+" FROM migrations WHERE id = ?"), id))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("migration %s: %w", id, registry.ErrNotFound)
	}
	if err != nil {
		return m, fmt.Errorf("reading migration: %w", err)
	}
	if err := q.QueryRowContext(ctx, s.Rebind("SELECT COUNT(*) FROM migration_cutovers WHERE migration_id = ?"), id).Scan(&m.CutOver); err != nil {
		return m, fmt.Errorf("counting cut-over users: %w", err)
	}
	return m, nil
}

// GetMigration reads one migration.
func (s *Store) GetMigration(ctx context.Context, id string) (registry.Migration, error) {
	return getMigration(ctx, s, s.db, id)
}

// GetMigration reads one migration inside the transaction.
func (t *Tx) GetMigration(id string) (registry.Migration, error) {
	return getMigration(t.ctx, t.s, t.tx, id)
}

// ListMigrations lists every migration, newest first.
func (s *Store) ListMigrations(ctx context.Context) ([]registry.Migration, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+migrationCols+" FROM migrations ORDER BY created_at DESC, id")
	if err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	out := []registry.Migration{}
	for rows.Next() {
		m, err := scanMigration(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing migrations: %w", err)
		}
		out = append(out, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		if err := s.db.QueryRowContext(ctx, s.Rebind("SELECT COUNT(*) FROM migration_cutovers WHERE migration_id = ?"), out[i].ID).Scan(&out[i].CutOver); err != nil {
			return nil, fmt.Errorf("counting cut-over users: %w", err)
		}
	}
	return out, nil
}

func (t *Tx) saveMigration(m *registry.Migration) error {
	m.Version, m.UpdatedAt = m.Version+1, t.now
	if err := t.exec("UPDATE migrations SET state = ?, percent = ?, stage = ?, stage_cohort = ?, stage_affected = ?, stage_started = ?, halted = ?, halt_reason = ?, version = ?, updated_at = ? WHERE id = ?",
		string(m.State), m.Percent, m.Stage, m.StageCohort, m.StageAffected, nanos(m.StageStarted), b2i(m.Halted), m.HaltReason, m.Version, nanos(t.now), m.ID); err != nil {
		return fmt.Errorf("updating migration: %w", err)
	}
	return t.q().QueryRowContext(t.ctx, t.s.Rebind("SELECT COUNT(*) FROM migration_cutovers WHERE migration_id = ?"), m.ID).Scan(&m.CutOver)
}

func (t *Tx) q() querier { return t.tx }

// scopeUser is an active user as a migration sees it.
type scopeUser struct {
	id, ext, email string
	keys           []bKey // keys of the target set (readiness only)
	groups         []string
	bucket         int
}

func loadUsers(ctx context.Context, s *Store, q querier, groups bool) ([]scopeUser, error) {
	rows, err := q.QueryContext(ctx, "SELECT id, external_id, email, groups_json FROM users WHERE status = 'active' ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("reading users: %w", err)
	}
	defer rows.Close()
	var out []scopeUser
	for rows.Next() {
		var u scopeUser
		var g string
		if err := rows.Scan(&u.id, &u.ext, &u.email, &g); err != nil {
			return nil, fmt.Errorf("reading users: %w", err)
		}
		if groups && g != "[]" {
			if err := json.Unmarshal([]byte(g), &u.groups); err != nil {
				return nil, fmt.Errorf("decoding groups of %s: %w", u.id, err)
			}
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

type cohortSet struct {
	all     bool
	users   map[string]bool
	groups  map[string]bool
	percent float64
}

func newCohortSet(c registry.Cohort) cohortSet {
	s := cohortSet{all: c.All, users: map[string]bool{}, groups: map[string]bool{}, percent: c.Percent}
	for _, u := range c.Users {
		s.users[u] = true
	}
	for _, g := range c.Groups {
		s.groups[g] = true
	}
	return s
}

func (c cohortSet) has(u scopeUser) bool {
	if c.all || c.users[u.id] || registry.InPercent(u.bucket, c.percent) {
		return true
	}
	for _, g := range u.groups {
		if c.groups[g] {
			return true
		}
	}
	return false
}

func needGroups(ms ...*registry.Migration) bool {
	for _, m := range ms {
		if len(m.Scope.Groups) > 0 || len(m.Canary.Groups) > 0 {
			return true
		}
	}
	return false
}

// resolve returns the users in m's scope (with their buckets) and which of
// them are in the canary.
func resolve(m *registry.Migration, all []scopeUser) ([]scopeUser, map[string]bool) {
	sc, ca := newCohortSet(m.Scope), newCohortSet(m.Canary)
	sc.percent = 0
	scope := make([]scopeUser, 0, len(all))
	canary := map[string]bool{}
	for _, u := range all {
		u.bucket = registry.Bucket(m.ID, u.id)
		if !sc.has(u) {
			continue
		}
		scope = append(scope, u)
		if ca.has(u) {
			canary[u.id] = true
		}
	}
	return scope, canary
}

func stageName(to registry.MigrationState, percent float64) string {
	if to == registry.MigrationStaged {
		return "staged:" + strconv.FormatFloat(percent, 'f', -1, 64)
	}
	return string(to)
}

// cohortLabel is the first planned stage that includes u.
func cohortLabel(m *registry.Migration, u scopeUser, canary map[string]bool) string {
	if canary[u.id] {
		return "canary"
	}
	for _, p := range m.Stages {
		if registry.InPercent(u.bucket, p) {
			return stageName(registry.MigrationStaged, p)
		}
	}
	return "rest"
}

// CreateMigration validates and stores a new plan in state draft. Bad plans
// are *registry.InvalidError (empty_cohort, unknown_key_set, same_key_set,
// percent_out_of_range, invalid_policy, unknown_user, canary_outside_scope);
// a plan sharing users with another active migration is registry.ErrOverlap.
func (t *Tx) CreateMigration(m *registry.Migration) error {
	if m.From == "" || m.To == "" {
		return registry.Invalid("missing_field", "from_set and to_set are required")
	}
	if m.From == m.To {
		return registry.Invalid("same_key_set", "from_set and to_set are both %q", m.From)
	}
	if m.Name == "" {
		m.Name = m.From + " → " + m.To
	}
	p := &m.Policy
	if p.MinVerifiedB == 0 {
		p.MinVerifiedB = 1
	}
	if p.HaltThreshold == 0 {
		p.HaltThreshold = 0.01
	}
	switch {
	case p.MinVerifiedB < 1 || p.MinVerifiedB > 10:
		return registry.Invalid("invalid_policy", "min_verified_b_keys must be 1-10")
	case p.HaltThreshold < 0 || p.HaltThreshold > 1 || math.IsNaN(p.HaltThreshold):
		return registry.Invalid("invalid_policy", "halt_threshold is a share of the cohort, 0 < x ≤ 1 (0.01 = 1%%)")
	case p.MaxVerificationAgeDays < 0 || p.GracePeriodHours < 0:
		return registry.Invalid("invalid_policy", "verification_max_age_days and grace_period_hours cannot be negative")
	}
	if !m.Scope.All && len(m.Scope.Users) == 0 && len(m.Scope.Groups) == 0 {
		return registry.Invalid("empty_cohort", "the scope names no users and no groups (set all, users or groups)")
	}
	if m.Scope.Percent != 0 {
		return registry.Invalid("invalid_scope", "the scope takes no percent: percentages belong to the canary and the stages")
	}
	if m.Canary.All {
		return registry.Invalid("invalid_canary", "a canary cannot be everyone")
	}
	if m.Canary.Percent < 0 || m.Canary.Percent >= 100 || math.IsNaN(m.Canary.Percent) {
		return registry.Invalid("percent_out_of_range", "canary percent %g is outside 0 ≤ p < 100", m.Canary.Percent)
	}
	if len(m.Canary.Users) == 0 && len(m.Canary.Groups) == 0 && m.Canary.Percent == 0 {
		return registry.Invalid("empty_cohort", "the canary names no users, no groups and no percent")
	}
	if m.Stages == nil {
		m.Stages = []float64{}
	}
	for i, s := range m.Stages {
		if s <= 0 || s >= 100 || math.IsNaN(s) {
			return registry.Invalid("percent_out_of_range", "stage %d: %g%% is outside 0 < p < 100 (the last stage is complete)", i+1, s)
		}
		if i > 0 && s <= m.Stages[i-1] {
			return registry.Invalid("percent_out_of_range", "stage %d: %g%% does not grow from %g%%", i+1, s, m.Stages[i-1])
		}
	}
	for _, c := range []*registry.Cohort{&m.Scope, &m.Canary} {
		if c.Users == nil {
			c.Users = []string{}
		}
		if c.Groups == nil {
			c.Groups = []string{}
		}
	}
	if err := t.Serialize(); err != nil {
		return err
	}
	for _, set := range []string{m.From, m.To} {
		ok, err := t.keySetExists(set)
		if err != nil {
			return err
		}
		if !ok {
			return registry.Invalid("unknown_key_set", "key set %q does not exist", set)
		}
	}
	m.ID = NewID("mig")
	active, err := t.activeMigrations()
	if err != nil {
		return err
	}
	ms := []*registry.Migration{m}
	for i := range active {
		ms = append(ms, &active[i])
	}
	users, err := loadUsers(t.ctx, t.s, t.tx, needGroups(ms...))
	if err != nil {
		return err
	}
	known := make(map[string]bool, len(users))
	for _, u := range users {
		known[u.id] = true
	}
	for _, id := range append(append([]string{}, m.Scope.Users...), m.Canary.Users...) {
		if !known[id] {
			return registry.Invalid("unknown_user", "user %s does not exist or is not active", id)
		}
	}
	scope, canary := resolve(m, users)
	if len(scope) == 0 {
		return registry.Invalid("empty_cohort", "the scope matches no active user")
	}
	if len(canary) == 0 {
		return registry.Invalid("empty_cohort", "the canary matches no user in the scope")
	}
	inScope := make(map[string]bool, len(scope))
	for _, u := range scope {
		inScope[u.id] = true
	}
	for _, id := range m.Canary.Users {
		if !inScope[id] {
			return registry.Invalid("canary_outside_scope", "canary user %s is not in the scope", id)
		}
	}
	for i := range active {
		other, _ := resolve(&active[i], users)
		n, example := 0, ""
		for _, u := range other {
			if inScope[u.id] {
				if n == 0 {
					example = u.id
				}
				n++
			}
		}
		if n > 0 {
			return fmt.Errorf("%w: migration %s (%s, %s) already covers %d of these users, %s among them", registry.ErrOverlap, active[i].ID, active[i].Name, active[i].State, n, example)
		}
	}
	m.State, m.Stage, m.Percent, m.Version, m.CreatedAt, m.UpdatedAt, m.StageStarted = registry.MigrationDraft, string(registry.MigrationDraft), 0, 1, t.now, t.now, t.now
	plan, _ := json.Marshal(planJSON{Scope: m.Scope, Canary: m.Canary, Stages: m.Stages, Policy: m.Policy})
	if err := t.exec("INSERT INTO migrations ("+migrationCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, 0, '', ?, ?, ?)",
		m.ID, m.Name, m.From, m.To, string(plan), string(m.State), m.Percent, m.Stage, nanos(t.now), m.Version, nanos(t.now), nanos(t.now)); err != nil {
		return fmt.Errorf("inserting migration: %w", err)
	}
	return t.record("migration", m.ID, "create", map[string]any{"migration": m, "scope_users": len(scope), "canary_users": len(canary)})
}

func (t *Tx) activeMigrations() ([]registry.Migration, error) {
	rows, err := t.tx.QueryContext(t.ctx, "SELECT "+migrationCols+" FROM migrations WHERE state IN ('draft', 'dry_run', 'canary', 'staged') ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("listing active migrations: %w", err)
	}
	defer rows.Close()
	var out []registry.Migration
	for rows.Next() {
		m, err := scanMigration(rows)
		if err != nil {
			return nil, fmt.Errorf("listing active migrations: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// bKey is what readiness needs to know of one key in the target set: its
// state as readinessKeysQuery classifies it, and whether it has the backup
// role.
type bKey struct {
	state  int
	backup bool
}

// Key states of readinessKeysQuery, in the order its CASE tests them.
const (
	keyGood       = 0
	keyLost       = 1 // lost or revoked
	keyInactive   = 2 // pending, suspended or retired
	keyNoCred     = 3 // no usable credential
	keyPINBlocked = 4 // PIN blocked reported, no success since
	keyFailing    = 5 // last verification failed, or a failure reported since
	keyUnverified = 6 // no successful verification recent enough
)

// touchHealth moves a key's health timestamps forward (0 leaves one alone).
func (t *Tx) touchHealth(keyID string, ok, fail, sig, pin int64) error {
	if err := t.exec(touchHealthInsert+"(?, ?, ?, ?, ?)"+touchHealthConflict, keyID, ok, fail, sig, pin); err != nil {
		return fmt.Errorf("updating key health: %w", err)
	}
	return nil
}

// touchHealthLater is touchHealth sent with the change set's last
// statement, for a change set that reads no health after it. It holds the
// row's lock for no longer than that statement and its commit.
func (t *Tx) touchHealthLater(keyID string, ok, fail, sig, pin int64) {
	t.tail.add(touchHealthInsert, 5, 1, []any{keyID, ok, fail, sig, pin})
	t.tail.suffix(touchHealthConflict)
}

const touchHealthInsert = "INSERT INTO key_health (key_id, last_ok_at, last_fail_at, last_signal_at, last_pin_at) VALUES "

// touchHealthConflict keeps the later of each stored and new timestamp.
var touchHealthConflict = func() string {
	const later = "%[1]s = CASE WHEN excluded.%[1]s > key_health.%[1]s THEN excluded.%[1]s ELSE key_health.%[1]s END"
	return " ON CONFLICT (key_id) DO UPDATE SET " + fmt.Sprintf(later, "last_ok_at") + ", " + fmt.Sprintf(later, "last_fail_at") +
		", " + fmt.Sprintf(later, "last_signal_at") + ", " + fmt.Sprintf(later, "last_pin_at")
}()

// verificationHealth moves the verified key's health (a success, or a
// failure when the check failed or the counter suggests a clone) and feeds
// a failed verification of a cut-over user's key into the halt rules.
// RecordVerification calls it.
func (t *Tx) verificationHealth(v *registry.Verification) error {
	var err error
	if v.OK && !v.CloneSuspected {
		// Nothing after a successful verification reads the key's health.
		t.touchHealthLater(v.KeyID, nanos(t.now), 0, 0, 0)
	} else {
		err = t.touchHealth(v.KeyID, 0, nanos(t.now), 0, 0)
	}
	if err != nil {
		return err
	}
	if !v.OK {
		return t.failedVerification(v)
	}
	return nil
}

// readinessKeysQuery reads every key of one set with its owner, its role,
// and its state for readiness (the key* constants), judged in SQL so that
// each key comes back as three columns. A failure at the same instant as
// the last success counts as the later of the two. The one parameter after
// the set is the oldest verification time (Unix ns) that still counts. It
// is driven by the set's membership index, so its cost grows with the set,
// not the registry; a key's credentials are probed only when it is active.
const readinessKeysQuery = `SELECT k.owner_id, k.role, CASE
 WHEN k.status IN ('lost', 'revoked') THEN 1
 WHEN k.status <> 'active' THEN 2
 WHEN NOT (EXISTS (SELECT 1 FROM fido_credentials f WHERE f.key_id = k.id AND f.pending = 0 AND f.clone_suspected = 0)
  OR EXISTS (SELECT 1 FROM piv_slots p WHERE p.key_id = k.id AND p.pending = 0)) THEN 3
 WHEN COALESCE(h.last_pin_at, 0) <> 0 AND h.last_pin_at >= COALESCE(h.last_ok_at, 0) THEN 4
 WHEN (COALESCE(h.last_fail_at, 0) <> 0 AND h.last_fail_at >= COALESCE(h.last_ok_at, 0))
  OR (COALESCE(h.last_signal_at, 0) <> 0 AND h.last_signal_at >= COALESCE(h.last_ok_at, 0)) THEN 5
 WHEN COALESCE(h.last_ok_at, 0) = 0 OR h.last_ok_at < ? THEN 6
 ELSE 0 END
FROM key_set_members m JOIN keys k{indexed} ON k.id = m.key_id LEFT JOIN key_health h ON h.key_id = k.id
WHERE m.set_name = ?`

// loadReadiness reads the active users (sorted by id) and their keys of set
// in two sequential scans, merged here rather than by a join that would
// look up every user's keys one by one.
func loadReadiness(ctx context.Context, s *Store, q querier, set string, groups bool, oldest int64) ([]scopeUser, error) {
	if s.dialect == Postgres {
		// The planner's cost for the correlated EXISTS crosses the JIT
		// threshold; compiling the plan costs more than running it.
		if _, err := q.ExecContext(ctx, "SET LOCAL jit = off"); err != nil {
			return nil, fmt.Errorf("configuring readiness query: %w", err)
		}
	}
	// Sized up front: growing a slice of a million rows copies it twenty
	// times over.
	var n int
	if err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM users WHERE status = 'active'").Scan(&n); err != nil {
		return nil, fmt.Errorf("counting users: %w", err)
	}
	cols := "id, external_id, email, '[]'"
	if groups {
		cols = "id, external_id, email, groups_json"
	}
	rows, err := q.QueryContext(ctx, "SELECT "+cols+" FROM users WHERE status = 'active'")
	if err != nil {
		return nil, fmt.Errorf("reading users: %w", err)
	}
	users := make([]scopeUser, 0, n)
	for rows.Next() {
		var u scopeUser
		var g string
		if err := rows.Scan(&u.id, &u.ext, &u.email, &g); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading users: %w", err)
		}
		if groups && g != "[]" {
			if err := json.Unmarshal([]byte(g), &u.groups); err != nil {
				rows.Close()
				return nil, fmt.Errorf("decoding groups of %s: %w", u.id, err)
			}
		}
		users = append(users, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading users: %w", err)
	}
	sortByID(users)
	// SQLite reads the key from the covering index (00003) in one probe;
	// PostgreSQL hash-joins the whole set and needs no hint.
	indexed := ""
	if s.dialect != Postgres {
		indexed = " INDEXED BY keys_readiness"
	}
	rows, err = q.QueryContext(ctx, s.Rebind(strings.Replace(readinessKeysQuery, "{indexed}", indexed, 1)), oldest, set)
	if err != nil {
		return nil, fmt.Errorf("reading keys of set %s: %w", set, err)
	}
	defer rows.Close()
	at := make(map[string]int, len(users))
	for i := range users {
		at[users[i].id] = i
	}
	var owner, role sql.RawBytes
	for rows.Next() {
		var k bKey
		if err := rows.Scan(&owner, &role, &k.state); err != nil {
			return nil, fmt.Errorf("reading keys of set %s: %w", set, err)
		}
		i, ok := at[string(owner)]
		if !ok {
			continue // an owner who is not active is not in scope
		}
		k.backup = string(role) == string(registry.RoleBackup)
		users[i].keys = append(users[i].keys, k)
	}
	return users, rows.Err()
}

// sortByID sorts users by id. It sorts a permutation and then moves each
// row once, which costs less than swapping the rows themselves.
func sortByID(users []scopeUser) {
	perm := make([]int32, len(users))
	for i := range perm {
		perm[i] = int32(i)
	}
	slices.SortFunc(perm, func(a, b int32) int { return strings.Compare(users[a].id, users[b].id) })
	// Position j takes the row at perm[j]; follow each cycle once.
	for i := range perm {
		if perm[i] < 0 {
			continue
		}
		tmp, j := users[i], i
		for {
			k := int(perm[j])
			perm[j] = -1
			if k == i {
				users[j] = tmp
				break
			}
			users[j] = users[k]
			j = k
		}
	}
}

// intern returns the constant string for a key role or status, so that
// reading a large set does not allocate one string per key and column.
func intern(b []byte) string {
	for _, v := range [...]string{string(registry.KeyActive), string(registry.KeyPending), string(registry.KeySuspended), string(registry.KeyLost),
		string(registry.KeyRevoked), string(registry.KeyRetired), string(registry.RolePrimary), string(registry.RoleBackup)} {
		if string(b) == v {
			return v
		}
	}
	return string(b)
}

// judge applies the policy to one user's keys of the target set.
func judge(p registry.MigrationPolicy, keys []bKey) (good int, reasons []string) {
	if len(keys) == 0 {
		return 0, []string{registry.ReasonNoBKey}
	}
	add := func(r string) {
		if !slices.Contains(reasons, r) {
			reasons = append(reasons, r)
		}
	}
	goodBackup := false
	for _, k := range keys {
		switch k.state {
		case keyLost:
			add(registry.ReasonBKeyLost)
		case keyInactive:
			add(registry.ReasonBKeyInactive)
		case keyNoCred:
			add(registry.ReasonBKeyNoCred)
		case keyPINBlocked:
			add(registry.ReasonPINBlocked)
		case keyFailing:
			add(registry.ReasonBKeyFailing)
		case keyUnverified:
			add(registry.ReasonBKeyUnverified)
		default:
			good++
			goodBackup = goodBackup || k.backup
		}
	}
	if good >= p.MinVerifiedB && (!p.BackupRequired || goodBackup) {
		return good, nil
	}
	var out []string
	if good > 0 && good < p.MinVerifiedB {
		add(registry.ReasonTooFewBKeys)
	}
	if p.BackupRequired && !goodBackup {
		add(registry.ReasonNoBackupKey)
	}
	out = append(out, reasons...)
	return good, out
}

// evaluation is a migration's readiness for every user in scope.
type evaluation struct {
	m      *registry.Migration
	scope  []scopeUser
	canary map[string]bool
	rows   []registry.UserReadiness // parallel to scope
}

func evaluate(ctx context.Context, s *Store, q querier, m *registry.Migration, now time.Time) (*evaluation, error) {
	// A B key counts only if it passed a verification this recently (the
	// epoch's first nanosecond when any success counts).
	oldest := int64(1)
	if d := m.Policy.MaxVerificationAgeDays; d > 0 {
		oldest = nanos(now.Add(-time.Duration(d) * 24 * time.Hour))
	}
	users, err := loadReadiness(ctx, s, q, m.To, needGroups(m), oldest)
	if err != nil {
		return nil, err
	}
	scope, canary := resolve(m, users)
	rows, err := q.QueryContext(ctx, "SELECT mc.user_id, mc.migration_id, m.state FROM migration_cutovers mc JOIN migrations m ON m.id = mc.migration_id")
	if err != nil {
		return nil, fmt.Errorf("reading cut-overs: %w", err)
	}
	mine, other := map[string]bool{}, map[string]bool{}
	for rows.Next() {
		var u, mid, st string
		if err := rows.Scan(&u, &mid, &st); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading cut-overs: %w", err)
		}
		if mid == m.ID {
			mine[u] = true
		} else if registry.MigrationState(st).Active() {
			other[u] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	e := &evaluation{m: m, scope: scope, canary: canary, rows: make([]registry.UserReadiness, len(scope))}
	for i, u := range scope {
		good, reasons := judge(m.Policy, u.keys)
		if other[u.id] {
			reasons = append(reasons, registry.ReasonOtherMigration)
		}
		if reasons == nil {
			reasons = []string{}
		}
		e.rows[i] = registry.UserReadiness{UserID: u.id, ExternalID: u.ext, Email: u.email, Cohort: cohortLabel(m, u, canary),
			Ready: len(reasons) == 0, Reasons: reasons, GoodBKeys: good, CutOver: mine[u.id]}
	}
	return e, nil
}

func (e *evaluation) inStage(i int, to registry.MigrationState, percent float64) bool {
	switch to {
	case registry.MigrationCanary:
		return e.canary[e.scope[i].id]
	case registry.MigrationStaged:
		return e.canary[e.scope[i].id] || registry.InPercent(e.scope[i].bucket, percent)
	case registry.MigrationComplete:
		return true
	}
	return false
}

// cutStage moves every ready user of the stage's cohort who is not yet cut
// over to the new set, then checks in the same transaction, with the
// validity view's own rule, that each of them still has a valid credential;
// anyone who would not is moved back at once and reported held back.
func (t *Tx) cutStage(e *evaluation, to registry.MigrationState, percent float64, stage string) (cut []string, held []registry.UserReadiness, err error) {
	var idx []int
	for i := range e.scope {
		if !e.inStage(i, to, percent) || e.rows[i].CutOver {
			continue
		}
		if e.rows[i].Ready {
			idx = append(idx, i)
		} else {
			held = append(held, e.rows[i])
		}
	}
	const chunk = 400
	for off := 0; off < len(idx); off += chunk {
		end := min(off+chunk, len(idx))
		var b strings.Builder
		b.WriteString("INSERT INTO migration_cutovers (migration_id, user_id, from_set, to_set, stage) VALUES ")
		args := make([]any, 0, 5*(end-off))
		for j, i := range idx[off:end] {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?, ?, ?)")
			args = append(args, e.m.ID, e.scope[i].id, e.m.From, e.m.To, stage)
		}
		if _, err := t.tx.ExecContext(t.ctx, t.s.Rebind(b.String()), args...); err != nil {
			return nil, nil, fmt.Errorf("cutting users over: %w", err)
		}
	}
	// The store's own guard, independent of the readiness rules above.
	rows, err := t.tx.QueryContext(t.ctx, t.s.Rebind("SELECT u.id FROM migration_cutovers mcx JOIN users u ON u.id = mcx.user_id WHERE mcx.migration_id = ? AND mcx.stage = ? AND NOT "+hasValidCredential), e.m.ID, stage)
	if err != nil {
		return nil, nil, fmt.Errorf("checking cut-over users keep a credential: %w", err)
	}
	bare := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, nil, err
		}
		bare[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	for _, i := range idx {
		r := &e.rows[i]
		if bare[r.UserID] {
			if err := t.exec("DELETE FROM migration_cutovers WHERE migration_id = ? AND user_id = ?", e.m.ID, r.UserID); err != nil {
				return nil, nil, fmt.Errorf("holding user back: %w", err)
			}
			r.Ready, r.Reasons = false, append(r.Reasons, "would_have_no_valid_credential")
			held = append(held, *r)
			continue
		}
		r.CutOver = true
		cut = append(cut, r.UserID)
	}
	if held == nil {
		held = []registry.UserReadiness{}
	}
	if cut == nil {
		cut = []string{}
	}
	return cut, held, nil
}

// checkTransition applies the state machine and returns the staged percent.
func checkTransition(m *registry.Migration, to registry.MigrationState, percent float64, resume bool, now time.Time) (float64, error) {
	from := m.State
	bad := func(why string, args ...any) error {
		return &registry.TransitionError{From: from, To: to, Code: "invalid_transition", Why: fmt.Sprintf(why, args...)}
	}
	if from == registry.MigrationComplete || from == registry.MigrationRolledBack {
		return 0, bad("the migration is finished")
	}
	if to.Rank() <= 0 {
		return 0, registry.Invalid("invalid_state", "cannot advance to %q: the targets are dry_run, canary, staged and complete (rollback has its own request)", to)
	}
	if m.Halted && !resume {
		return 0, fmt.Errorf("%w: %s; advancing needs resume", registry.ErrHalted, m.HaltReason)
	}
	if to.Rank() < from.Rank() {
		return 0, bad("going backwards is refused: roll back instead")
	}
	rerun := m.Halted && to == from
	switch {
	case from == registry.MigrationDraft && to != registry.MigrationDryRun:
		return 0, bad("a plan goes through dry_run first")
	case from == registry.MigrationDryRun && to != registry.MigrationCanary:
		return 0, bad("the first cohort is the canary")
	case from == registry.MigrationCanary && to == registry.MigrationCanary && !rerun:
		return 0, bad("already in canary")
	}
	if (from == registry.MigrationCanary || from == registry.MigrationStaged) && !m.Halted && m.Policy.GracePeriodHours > 0 {
		until := m.StageStarted.Add(time.Duration(m.Policy.GracePeriodHours) * time.Hour)
		if now.Before(until) {
			return 0, &registry.TransitionError{From: from, To: to, Code: "grace_period", Why: "the current stage runs until " + until.Format(time.RFC3339) + " (grace period)"}
		}
	}
	if to != registry.MigrationStaged {
		return 0, nil
	}
	if percent == 0 {
		if rerun {
			return m.Percent, nil
		}
		for _, p := range m.Stages {
			if p > m.Percent {
				return p, nil
			}
		}
		return 0, registry.Invalid("percent_out_of_range", "no planned stage above %g%% is left: give a percent or advance to complete", m.Percent)
	}
	if percent <= 0 || percent >= 100 || math.IsNaN(percent) {
		return 0, registry.Invalid("percent_out_of_range", "staged percent %g is outside 0 < p < 100 (100%% is complete)", percent)
	}
	if from == registry.MigrationStaged && (percent < m.Percent || (percent == m.Percent && !rerun)) {
		return 0, bad("staged percent must grow beyond %g%%", m.Percent)
	}
	return percent, nil
}

// AdvanceMigration moves migration id forward to state to. Entering canary,
// staged (percent; 0 takes the next planned stage) or complete cuts that
// stage's ready users over to the new set in this one change set, so the
// validity view switches them in one version. resume clears a halt (and
// may re-run the current stage). It returns the users cut over and the
// users held back.
func (t *Tx) AdvanceMigration(id string, to registry.MigrationState, percent float64, resume bool) (registry.Migration, []string, []registry.UserReadiness, error) {
	if err := t.Serialize(); err != nil {
		return registry.Migration{}, nil, nil, err
	}
	m, err := t.GetMigration(id)
	if err != nil {
		return m, nil, nil, err
	}
	if percent, err = checkTransition(&m, to, percent, resume, t.now); err != nil {
		return m, nil, nil, err
	}
	cut, held := []string{}, []registry.UserReadiness{}
	from := m.State
	m.State, m.Stage, m.Halted, m.HaltReason, m.StageAffected, m.StageStarted = to, stageName(to, percent), false, "", 0, t.now
	switch to {
	case registry.MigrationStaged:
		m.Percent = percent
	case registry.MigrationComplete:
		m.Percent = 100
	}
	if to.Rank() >= registry.MigrationCanary.Rank() {
		e, err := evaluate(t.ctx, t.s, t.tx, &m, t.now)
		if err != nil {
			return m, nil, nil, err
		}
		if cut, held, err = t.cutStage(e, to, percent, m.Stage); err != nil {
			return m, nil, nil, err
		}
		if err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT COUNT(*) FROM migration_cutovers WHERE migration_id = ? AND stage = ?"), m.ID, m.Stage).Scan(&m.StageCohort); err != nil {
			return m, nil, nil, fmt.Errorf("counting stage cohort: %w", err)
		}
	} else {
		m.StageCohort = 0
	}
	if err := t.saveMigration(&m); err != nil {
		return m, nil, nil, err
	}
	heldIDs := make([]string, len(held))
	for i, h := range held {
		heldIDs[i] = h.UserID
	}
	return m, cut, held, t.record("migration", m.ID, "advance", map[string]any{"migration": m, "from": from, "resumed": resume, "cut_over": cut, "held_back": heldIDs})
}

// HaltMigration stops a migration by hand: no stage advances until it is
// resumed. Users already cut over stay where they are (roll back to move
// them back).
func (t *Tx) HaltMigration(id, reason string) (registry.Migration, error) {
	if err := t.Serialize(); err != nil {
		return registry.Migration{}, err
	}
	m, err := t.GetMigration(id)
	if err != nil {
		return m, err
	}
	if m.State == registry.MigrationComplete || m.State == registry.MigrationRolledBack {
		return m, &registry.TransitionError{From: m.State, To: m.State, Code: "invalid_transition", Why: "the migration is finished"}
	}
	if m.Halted {
		return m, &registry.TransitionError{From: m.State, To: m.State, Code: "invalid_transition", Why: "already halted: " + m.HaltReason}
	}
	if reason == "" {
		return m, registry.Invalid("missing_field", "a halt needs a reason")
	}
	m.Halted, m.HaltReason = true, "halted by hand: "+reason
	if err := t.saveMigration(&m); err != nil {
		return m, err
	}
	return m, t.record("migration", m.ID, "halt", map[string]any{"migration": m, "automatic": false, "reverted": []string{}})
}

// RollbackMigration moves every user the migration cut over back to the old
// set in one change set, so the validity view returns to its state before
// the migration in one new version. It works from any state but
// rolled_back, which it ends in.
func (t *Tx) RollbackMigration(id, reason string) (registry.Migration, []string, error) {
	if err := t.Serialize(); err != nil {
		return registry.Migration{}, nil, err
	}
	m, err := t.GetMigration(id)
	if err != nil {
		return m, nil, err
	}
	if m.State == registry.MigrationRolledBack {
		return m, nil, &registry.TransitionError{From: m.State, To: registry.MigrationRolledBack, Code: "invalid_transition", Why: "already rolled back"}
	}
	users, err := t.revert("migration_id = ?", m.ID)
	if err != nil {
		return m, nil, err
	}
	from := m.State
	m.State, m.Stage, m.Halted, m.StageCohort, m.StageAffected, m.StageStarted = registry.MigrationRolledBack, string(registry.MigrationRolledBack), false, 0, 0, t.now
	if err := t.saveMigration(&m); err != nil {
		return m, nil, err
	}
	return m, users, t.record("migration", m.ID, "rollback", map[string]any{"migration": m, "from": from, "reason": reason, "reverted": users})
}

// revert deletes the cut-over rows matching cond and returns their users.
func (t *Tx) revert(cond string, args ...any) ([]string, error) {
	rows, err := t.tx.QueryContext(t.ctx, t.s.Rebind("SELECT user_id FROM migration_cutovers WHERE "+cond+" ORDER BY user_id"), args...)
	if err != nil {
		return nil, fmt.Errorf("reading cut-over users: %w", err)
	}
	users := []string{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return nil, err
		}
		users = append(users, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if _, err := t.tx.ExecContext(t.ctx, t.s.Rebind("DELETE FROM migration_cutovers WHERE "+cond), args...); err != nil {
		return nil, fmt.Errorf("moving users back: %w", err)
	}
	return users, nil
}

// Signal reasons an auth server may report.
var signalReasons = map[string]bool{"failed_signin": true, "pin_blocked": true, "credential_not_recognised": true}

// ReportLockout records a failed sign-in an auth server reports for a
// user's key. If the user was cut over by a migration, the user is moved
// back to the old set at once, and when the users with failure reports
// reach the policy's halt threshold within the current stage's cohort the
// migration halts by itself and that whole cohort is moved back, all in
// this change set.
func (t *Tx) ReportLockout(sig *registry.LockoutSignal) (registry.SignalOutcome, error) {
	if sig.Reason == "" {
		sig.Reason = "failed_signin"
	}
	if !signalReasons[sig.Reason] {
		return registry.SignalOutcome{}, registry.Invalid("invalid_reason", "reason must be failed_signin, pin_blocked or credential_not_recognised")
	}
	if sig.UserID == "" || sig.KeyID == "" {
		return registry.SignalOutcome{}, registry.Invalid("missing_field", "user_id and key_id are required")
	}
	return t.reportFailure(sig, "lockout")
}

func (t *Tx) reportFailure(sig *registry.LockoutSignal, kind string) (registry.SignalOutcome, error) {
	if err := t.Serialize(); err != nil {
		return registry.SignalOutcome{}, err
	}
	k, err := t.GetKey(sig.KeyID)
	if err != nil || k.OwnerID != sig.UserID {
		return registry.SignalOutcome{}, registry.Invalid("unknown_credential", "key %s does not belong to user %s", sig.KeyID, sig.UserID)
	}
	sig.ID, sig.At = NewID("sig"), t.now
	out := registry.SignalOutcome{}
	var halted *registry.Migration
	var reverted []string
	// The user's cut-over, preferring a migration still under way.
	var mid, stage string
	err = t.tx.QueryRowContext(t.ctx, t.s.Rebind(`SELECT mc.migration_id, mc.stage FROM migration_cutovers mc JOIN migrations m ON m.id = mc.migration_id
 WHERE mc.user_id = ? ORDER BY CASE WHEN m.state IN ('canary', 'staged') THEN 0 ELSE 1 END, m.updated_at DESC LIMIT 1`), sig.UserID).Scan(&mid, &stage)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return out, fmt.Errorf("reading cut-over: %w", err)
	default:
		m, err := t.GetMigration(mid)
		if err != nil {
			return out, err
		}
		sig.MigrationID, sig.Stage = m.ID, stage
		if err := t.exec("DELETE FROM migration_cutovers WHERE migration_id = ? AND user_id = ?", m.ID, sig.UserID); err != nil {
			return out, fmt.Errorf("moving user back: %w", err)
		}
		out.UserReverted = true
		if stage == m.Stage && !m.Halted {
			m.StageAffected++
			// Halting once ⌊threshold × cohort⌋ users (at least one) are
			// affected keeps the affected share at or below the threshold
			// whenever the cohort has at least 1/threshold users.
			need := max(1, int(math.Floor(m.Policy.HaltThreshold*float64(m.StageCohort)+1e-9)))
			if m.StageAffected >= need {
				if reverted, err = t.revert("migration_id = ? AND stage = ?", m.ID, m.Stage); err != nil {
					return out, err
				}
				m.Halted = true
				users := "users"
				if m.StageCohort == 1 {
					users = "user"
				}
				m.HaltReason = fmt.Sprintf("halted by itself: %d of %d %s in stage %s (%.2f%%) reported failures, reaching the threshold of %.2f%%",
					m.StageAffected, m.StageCohort, users, m.Stage, 100*float64(m.StageAffected)/float64(max(1, m.StageCohort)), 100*m.Policy.HaltThreshold)
				out.Halted = true
				halted = &m
			}
			if err := t.saveMigration(&m); err != nil {
				return out, err
			}
		}
	}
	pin := int64(0)
	if sig.Reason == "pin_blocked" {
		pin = nanos(t.now)
	}
	if kind == "lockout" {
		if err := t.touchHealth(sig.KeyID, 0, 0, nanos(t.now), pin); err != nil {
			return out, err
		}
	}
	if err := t.exec("INSERT INTO migration_signals (id, user_id, key_id, credential_id, kind, reason, migration_id, stage, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		sig.ID, sig.UserID, sig.KeyID, sig.CredentialID, kind, sig.Reason, sig.MigrationID, sig.Stage, nanos(t.now)); err != nil {
		return out, fmt.Errorf("recording failure report: %w", err)
	}
	out.Signal = *sig
	if err := t.record("migration_signal", sig.ID, kind, out); err != nil {
		return out, err
	}
	if halted != nil {
		if err := t.record("migration", halted.ID, "halt", map[string]any{"migration": halted, "automatic": true, "reverted": reverted}); err != nil {
			return out, err
		}
	}
	return out, nil
}

// failedVerification feeds a failed verification of a cut-over user's key
// into the halt rules, like a lockout report.
func (t *Tx) failedVerification(v *registry.Verification) error {
	k, err := t.GetKey(v.KeyID)
	if err != nil {
		return err
	}
	var n int
	if err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT COUNT(*) FROM migration_cutovers WHERE user_id = ?"), k.OwnerID).Scan(&n); err != nil {
		return fmt.Errorf("reading cut-over: %w", err)
	}
	if n == 0 {
		return nil
	}
	_, err = t.reportFailure(&registry.LockoutSignal{UserID: k.OwnerID, KeyID: v.KeyID, Reason: "verification_failed"}, "verification")
	return err
}

// keepCredentials moves a cut-over user back to the old set when a change
// (a key lost, a credential flagged, a key leaving a set) left the user with
// no valid credential: a migration never leaves anyone without one.
func (t *Tx) keepCredentials(userID, cause string) error {
	var n int
	if err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT COUNT(*) FROM migration_cutovers WHERE user_id = ?"), userID).Scan(&n); err != nil {
		return fmt.Errorf("reading cut-over: %w", err)
	}
	if n == 0 {
		return nil
	}
	var bare int
	if err := t.tx.QueryRowContext(t.ctx, t.s.Rebind("SELECT COUNT(*) FROM users u WHERE u.id = ? AND u.status = 'active' AND NOT "+hasValidCredential), userID).Scan(&bare); err != nil {
		return fmt.Errorf("checking valid credentials: %w", err)
	}
	if bare == 0 {
		return nil
	}
	rows, err := t.tx.QueryContext(t.ctx, t.s.Rebind("SELECT migration_id FROM migration_cutovers WHERE user_id = ? ORDER BY migration_id"), userID)
	if err != nil {
		return fmt.Errorf("reading cut-over: %w", err)
	}
	var ms []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			rows.Close()
			return err
		}
		ms = append(ms, m)
	}
	rows.Close()
	if err := t.exec("DELETE FROM migration_cutovers WHERE user_id = ?", userID); err != nil {
		return fmt.Errorf("moving user back: %w", err)
	}
	return t.record("migration_user", userID, "reverted", map[string]any{"user_id": userID, "migrations": ms, "cause": cause})
}

// Readiness reports, for every user in the migration's scope, whether the
// user is ready to leave the old set and why not, with totals per cohort,
// read in one snapshot.
func (s *Store) Readiness(ctx context.Context, id string) (registry.Readiness, error) {
	tx, err := s.readTx(ctx)
	if err != nil {
		return registry.Readiness{}, err
	}
	defer tx.Rollback()
	out := registry.Readiness{MigrationID: id}
	if err := tx.QueryRowContext(ctx, "SELECT change_seq FROM registry_head WHERE id = 1").Scan(&out.Version); err != nil {
		return out, fmt.Errorf("reading version: %w", err)
	}
	m, err := getMigration(ctx, s, tx, id)
	if err != nil {
		return out, err
	}
	e, err := evaluate(ctx, s, tx, &m, s.now().UTC())
	if err != nil {
		return out, err
	}
	tx.Rollback()
	// Identity-provider drift, reported beside the registry's own reasons.
	drift, err := s.IDPDrift(ctx)
	if err != nil {
		return out, err
	}
	by := map[string][]registry.IDPDrift{}
	for _, d := range drift {
		by[d.UserID] = append(by[d.UserID], d)
	}
	for i := range e.rows {
		e.rows[i].IDPDrift = by[e.rows[i].UserID]
	}
	out.Users, out.Totals = e.rows, totals(e.rows)
	return out, nil
}

func totals(rows []registry.UserReadiness) []registry.CohortTotals {
	by := map[string]*registry.CohortTotals{}
	var order []string
	for _, r := range rows {
		c := by[r.Cohort]
		if c == nil {
			c = &registry.CohortTotals{Cohort: r.Cohort, Reasons: map[string]int{}}
			by[r.Cohort] = c
			order = append(order, r.Cohort)
		}
		c.Users++
		if r.Ready {
			c.Ready++
		} else {
			c.Blocked++
		}
		for _, re := range r.Reasons {
			c.Reasons[re]++
		}
		if len(r.IDPDrift) > 0 {
			c.IDPDrift++
		}
	}
	rank := func(s string) float64 {
		switch {
		case s == "canary":
			return -1
		case s == "rest":
			return 1000
		}
		p, _ := strconv.ParseFloat(strings.TrimPrefix(s, "staged:"), 64)
		return p
	}
	sort.Slice(order, func(i, j int) bool { return rank(order[i]) < rank(order[j]) })
	out := make([]registry.CohortTotals, len(order))
	for i, o := range order {
		out[i] = *by[o]
	}
	return out
}

var errDryRun = errors.New("dry run: nothing is kept")

// DryRun plays the rest of the plan as it stands — the canary (unless it
// is past), every planned stage above the current percent, then complete —
// inside one transaction that is rolled back, and reports for each stage
// who would be cut over, who would be held back and why, and who would be
// left without any valid credential by the validity view's own rule (by
// construction nobody).
func (s *Store) DryRun(ctx context.Context, id string) (registry.DryRun, error) {
	out := registry.DryRun{MigrationID: id, Stages: []registry.DryRunStage{}}
	_, _, err := s.Write(ctx, "dry-run", nil, func(t *Tx) (Result, error) {
		if err := t.Serialize(); err != nil {
			return Result{}, err
		}
		out.Version = t.changeSeq
		m, err := t.GetMigration(id)
		if err != nil {
			return Result{}, err
		}
		if m.State == registry.MigrationComplete || m.State == registry.MigrationRolledBack {
			return Result{}, &registry.TransitionError{From: m.State, To: m.State, Code: "invalid_transition", Why: "the migration is finished: nothing left to dry-run"}
		}
		before, err := t.usersWithoutCredential()
		if err != nil {
			return Result{}, err
		}
		e, err := evaluate(t.ctx, t.s, t.tx, &m, t.now)
		if err != nil {
			return Result{}, err
		}
		type step struct {
			to registry.MigrationState
			p  float64
		}
		var steps []step
		if m.State.Rank() < registry.MigrationCanary.Rank() || (m.State == registry.MigrationCanary && m.Halted) {
			steps = append(steps, step{registry.MigrationCanary, 0})
		}
		for _, p := range m.Stages {
			if p > m.Percent || (m.Halted && p == m.Percent && m.State == registry.MigrationStaged) {
				steps = append(steps, step{registry.MigrationStaged, p})
			}
		}
		steps = append(steps, step{registry.MigrationComplete, 100})
		for _, st := range steps {
			name := stageName(st.to, st.p)
			cut, held, err := t.cutStage(e, st.to, st.p, "dry-run:"+name)
			if err != nil {
				return Result{}, err
			}
			after, err := t.usersWithoutCredential()
			if err != nil {
				return Result{}, err
			}
			locked := []string{}
			for u := range after {
				if !before[u] {
					locked = append(locked, u)
				}
			}
			sort.Strings(locked)
			out.Stages = append(out.Stages, registry.DryRunStage{Stage: name, Percent: st.p, CutOver: cut, HeldBack: held, LockedOut: locked})
		}
		return Result{}, errDryRun
	})
	if errors.Is(err, errDryRun) {
		return out, nil
	}
	return out, err
}

func (t *Tx) usersWithoutCredential() (map[string]bool, error) {
	rows, err := t.tx.QueryContext(t.ctx, withoutCredentialQuery)
	if err != nil {
		return nil, fmt.Errorf("finding users without a valid credential: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}

// UsersWithoutCredential lists the active users who have no credential in
// the validity view, with the view's version, read in one snapshot.
func (s *Store) UsersWithoutCredential(ctx context.Context) (int64, []string, error) {
	tx, err := s.readTx(ctx)
	if err != nil {
		return 0, nil, err
	}
	defer tx.Rollback()
	var v int64
	if err := tx.QueryRowContext(ctx, "SELECT change_seq FROM registry_head WHERE id = 1").Scan(&v); err != nil {
		return 0, nil, fmt.Errorf("reading version: %w", err)
	}
	rows, err := tx.QueryContext(ctx, withoutCredentialQuery)
	if err != nil {
		return 0, nil, fmt.Errorf("finding users without a valid credential: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return 0, nil, err
		}
		out = append(out, id)
	}
	return v, out, rows.Err()
}

// CutOverUsers lists the users a migration cut over in one stage ("" for
// every stage), in id order.
func (s *Store) CutOverUsers(ctx context.Context, migrationID, stage string) ([]string, error) {
	q, args := "SELECT user_id FROM migration_cutovers WHERE migration_id = ?", []any{migrationID}
	if stage != "" {
		q, args = q+" AND stage = ?", append(args, stage)
	}
	rows, err := s.db.QueryContext(ctx, s.Rebind(q+" ORDER BY user_id"), args...)
	if err != nil {
		return nil, fmt.Errorf("listing cut-over users: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
