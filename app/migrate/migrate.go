// Package migrate is the desk's side of a key migration (docs/migrations.md):
// planning one from a JSON file or a form, reading its readiness and dry
// run, previewing exactly who a step would cut over or move back, taking
// the step, and following the change feed for halts. It talks to the
// registry through registry/client only and never prompts: the CLI and the
// Migration screen ask for confirmation with what Preview returns.
package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// Plan is a migration plan as a person writes it (the body of POST
// /v1/migrations). Users in Scope.Users and Canary.Users may be registry
// ids (usr_…) or external ids, which Create resolves.
type Plan = client.MigrationPlan

// Service runs the migration use cases against one registry.
type Service struct {
	C *client.Client
}

// New returns a Service over c.
func New(c *client.Client) *Service { return &Service{C: c} }

// LoadPlan reads a plan from JSON, refusing unknown fields so that a
// misspelt field is not silently ignored.
func LoadPlan(r io.Reader) (Plan, error) {
	var p Plan
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return p, &Error{Code: "bad_plan_file", Message: fmt.Sprintf("reading the plan: %v", err),
			hint: "A plan is one JSON object: name, from_set, to_set, scope, canary, stages, policy (docs/migrations.md).",
			desk: "A plan file is for the command line; on the Migration screen, fill in the New plan tab instead."}
	}
	if dec.More() {
		return p, &Error{Code: "bad_plan_file", Message: "reading the plan: more than one JSON object", hint: "Put one plan per file."}
	}
	return p, nil
}

// Create resolves the plan's external user ids and stores it as a draft.
// A refusal is an *Error naming the plan field at fault; nothing is
// written then.
func (s *Service) Create(ctx context.Context, p Plan) (registry.Migration, error) {
	if err := s.resolveUsers(ctx, &p); err != nil {
		return registry.Migration{}, err
	}
	m, err := s.C.CreateMigration(ctx, p)
	if err != nil {
		return m, s.explain(ctx, err, &p)
	}
	return m, nil
}

// resolveUsers replaces external ids in the plan's user lists by registry
// ids. An id nobody has is left alone for the registry to refuse.
func (s *Service) resolveUsers(ctx context.Context, p *Plan) error {
	need := false
	for _, u := range append(slices.Clone(p.Scope.Users), p.Canary.Users...) {
		if !strings.HasPrefix(u, "usr_") {
			need = true
		}
	}
	if !need {
		return nil
	}
	byExt := map[string]string{}
	if err := s.C.EachUser(ctx, 1000, func(u registry.User) (bool, error) {
		byExt[u.ExternalID] = u.ID
		return true, nil
	}); err != nil {
		return s.explain(ctx, err, nil)
	}
	for _, list := range []*[]string{&p.Scope.Users, &p.Canary.Users} {
		for i, u := range *list {
			if id, ok := byExt[u]; ok && !strings.HasPrefix(u, "usr_") {
				(*list)[i] = id
			}
		}
	}
	return nil
}

// List lists the migrations, newest state first as the registry orders them.
func (s *Service) List(ctx context.Context) ([]registry.Migration, error) {
	ms, err := s.C.Migrations(ctx)
	return ms, s.explain(ctx, err, nil)
}

// Get reads one migration.
func (s *Service) Get(ctx context.Context, id string) (registry.Migration, error) {
	m, err := s.C.Migration(ctx, id)
	return m, s.explain(ctx, err, nil)
}

// Readiness reads the readiness report.
func (s *Service) Readiness(ctx context.Context, id string) (registry.Readiness, error) {
	r, err := s.C.Readiness(ctx, id)
	return r, s.explain(ctx, err, nil)
}

// ReadinessCSV writes the readiness report as CSV (for outreach) to w.
func (s *Service) ReadinessCSV(ctx context.Context, id string, w io.Writer) error {
	return s.explain(ctx, s.C.ReadinessCSV(ctx, id, w), nil)
}

// DryRun reads the dry run of the plan as it stands.
func (s *Service) DryRun(ctx context.Context, id string) (registry.DryRun, error) {
	d, err := s.C.DryRun(ctx, id)
	return d, s.explain(ctx, err, nil)
}

// Step is one thing a person can do to a migration.
type Step struct {
	Action  string                  // "advance", "halt" or "rollback"
	To      registry.MigrationState // advance only
	Percent float64                 // advance to staged only (0: the next planned stage)
	Resume  bool                    // advance only: clear a halt
	Reason  string                  // halt and rollback
}

// Preview is exactly who a step would touch, read just before it is taken.
type Preview struct {
	Migration registry.Migration
	Step      Step
	// Stage is the stage the step leads to ("canary", "staged:10",
	// "complete"; "halted", "rolled_back").
	Stage string
	// CutOver are the users an advance would move to the new key set;
	// MovedBack those a rollback would move back to the old one.
	CutOver   []registry.UserReadiness
	MovedBack []registry.UserReadiness
	// HeldBack are the users of the stage's cohort who would stay on the
	// old set, with why.
	HeldBack []registry.UserReadiness
	// LockedOut are users the dry run finds without any valid credential
	// at that stage (never expected: the registry refuses to leave anyone
	// bare).
	LockedOut []string
}

// Summary is the preview in one sentence, for a confirmation.
// users is n users in words: "1 user", "3 users".
func users(n int) string {
	if n == 1 {
		return "1 user"
	}
	return strconv.Itoa(n) + " users"
}

func (p Preview) Summary() string {
	m := p.Migration
	switch p.Step.Action {
	case "advance":
		s := fmt.Sprintf("Advance %q to %s: %s cut over from %s to %s", m.Name, p.Stage, users(len(p.CutOver)), m.From, m.To)
		if len(p.HeldBack) > 0 {
			s += fmt.Sprintf(", %d held back on %s", len(p.HeldBack), m.From)
		}
		if len(p.LockedOut) > 0 {
			s += fmt.Sprintf(", %d WITHOUT A VALID CREDENTIAL", len(p.LockedOut))
		}
		return s + "."
	case "halt":
		return fmt.Sprintf("Halt %q in %s: no stage advances until it is resumed; the %s already on %s stay there (roll back to move them).", m.Name, m.Stage, users(m.CutOver), m.To)
	case "rollback":
		return fmt.Sprintf("Roll back %q: %s moved back from %s to %s in one change, and the migration ends.", m.Name, users(len(p.MovedBack)), m.To, m.From)
	}
	return ""
}

// Preview reads who step would touch: for an advance, the dry run's stage
// it leads to; for a rollback, every user the migration has cut over; for
// a halt, the migration as it stands.
func (s *Service) Preview(ctx context.Context, id string, st Step) (Preview, error) {
	m, err := s.Get(ctx, id)
	if err != nil {
		return Preview{}, err
	}
	p := Preview{Migration: m, Step: st}
	switch st.Action {
	case "halt":
		p.Stage = "halted"
		return p, nil
	case "rollback":
		p.Stage = string(registry.MigrationRolledBack)
		rd, err := s.Readiness(ctx, id)
		if err != nil {
			return p, err
		}
		for _, u := range rd.Users {
			if u.CutOver {
				p.MovedBack = append(p.MovedBack, u)
			}
		}
		return p, nil
	case "advance":
	default:
		return p, fmt.Errorf("unknown step %q", st.Action)
	}
	if st.To == registry.MigrationDryRun {
		p.Stage = string(registry.MigrationDryRun)
		return p, nil // no one moves
	}
	d, err := s.DryRun(ctx, id)
	if err != nil {
		return p, err
	}
	want := string(st.To)
	if st.To == registry.MigrationStaged {
		want = nextStaged(m, st.Percent)
	}
	if st.Resume && st.To == m.State {
		want = m.Stage
	}
	rd, err := s.Readiness(ctx, id)
	if err != nil {
		return p, err
	}
	byID := make(map[string]registry.UserReadiness, len(rd.Users))
	for _, u := range rd.Users {
		byID[u.UserID] = u
	}
	for _, ds := range d.Stages {
		if ds.Stage != want {
			continue
		}
		p.Stage = ds.Stage
		for _, u := range ds.CutOver {
			r, ok := byID[u]
			if !ok {
				r = registry.UserReadiness{UserID: u}
			}
			p.CutOver = append(p.CutOver, r)
		}
		p.HeldBack, p.LockedOut = ds.HeldBack, ds.LockedOut
		return p, nil
	}
	// A stage the dry run does not play (a percent between planned
	// stages, or a re-run): the readiness rules say who is ready.
	p.Stage = want
	for _, u := range rd.Users {
		if u.CutOver || !inStage(m, u, st.To, st.Percent) {
			continue
		}
		if u.Ready {
			p.CutOver = append(p.CutOver, u)
		} else {
			p.HeldBack = append(p.HeldBack, u)
		}
	}
	return p, nil
}

// nextStaged names the staged stage an advance with percent leads to.
func nextStaged(m registry.Migration, percent float64) string {
	if percent == 0 {
		for _, p := range m.Stages {
			if p > m.Percent {
				percent = p
				break
			}
		}
	}
	return fmt.Sprintf("staged:%g", percent)
}

// inStage approximates the registry's cohort rule from a readiness row:
// the canary, and for staged every user whose first planned stage is at or
// below percent.
func inStage(m registry.Migration, u registry.UserReadiness, to registry.MigrationState, percent float64) bool {
	switch to {
	case registry.MigrationComplete:
		return true
	case registry.MigrationCanary:
		return u.Cohort == "canary"
	case registry.MigrationStaged:
		if u.Cohort == "canary" {
			return true
		}
		var p float64
		if _, err := fmt.Sscanf(u.Cohort, "staged:%g", &p); err == nil {
			return p <= percent
		}
	}
	return false
}

// Result is what a step did.
type Result struct {
	Migration registry.Migration `json:"migration"`
	// CutOver counts the users an advance moved to the new set, HeldBack
	// those of its cohort it left on the old one (with why); Reverted the
	// users a rollback moved back.
	CutOver  int                      `json:"cut_over"`
	HeldBack []registry.UserReadiness `json:"held_back"`
	Reverted int                      `json:"reverted"`
}

// Do takes step.
func (s *Service) Do(ctx context.Context, id string, st Step) (Result, error) {
	switch st.Action {
	case "advance":
		out, err := s.C.AdvanceMigration(ctx, id, client.Advance{To: st.To, Percent: st.Percent, Resume: st.Resume})
		return Result{Migration: out.Migration, CutOver: out.CutOver, HeldBack: out.HeldBackUsers}, s.explain(ctx, err, nil)
	case "halt":
		if strings.TrimSpace(st.Reason) == "" {
			return Result{}, &Error{Code: "missing_field", Field: "reason", Message: "a halt needs a reason", hint: "Say why, for the audit log and the people watching the migration."}
		}
		m, err := s.C.HaltMigration(ctx, id, st.Reason)
		return Result{Migration: m}, s.explain(ctx, err, nil)
	case "rollback":
		if strings.TrimSpace(st.Reason) == "" {
			return Result{}, &Error{Code: "missing_field", Field: "reason", Message: "a rollback needs a reason", hint: "Say why, for the audit log and the people watching the migration."}
		}
		r, err := s.C.RollbackMigration(ctx, id, st.Reason)
		return Result{Migration: r.Migration, Reverted: r.Reverted}, s.explain(ctx, err, nil)
	}
	return Result{}, fmt.Errorf("unknown step %q", st.Action)
}

// Alert is a halt seen on the change feed.
type Alert struct {
	Seq       int64
	Migration registry.Migration
	// Automatic: the registry halted it because failure reports in the
	// current cohort reached the threshold.
	Automatic bool
	// Reverted are the users moved back to the old set with the halt.
	Reverted []string
}

// Message is the alert in one sentence.
func (a Alert) Message() string {
	how := "halted by hand"
	if a.Automatic {
		how = "halted by itself"
	}
	reason := strings.TrimSuffix(a.Migration.HaltReason, ".")
	if !strings.HasPrefix(reason, "halted") {
		reason = how + ": " + reason
	}
	s := fmt.Sprintf("Migration %q in %s %s.", a.Migration.Name, a.Migration.Stage, reason)
	if len(a.Reverted) > 0 {
		s += fmt.Sprintf(" %s moved back to %s.", users(len(a.Reverted)), a.Migration.From)
	}
	return s
}

// Watcher follows the change feed for migration halts from the moment it
// was made.
type Watcher struct {
	s      *Service
	cursor string
}

// Watch starts following the feed at its current head: only halts after
// now are reported.
func (s *Service) Watch(ctx context.Context) (*Watcher, error) {
	ch, err := s.C.Changes(ctx, "", 1)
	if err != nil {
		return nil, s.explain(ctx, err, nil)
	}
	return &Watcher{s: s, cursor: ch.Head}, nil
}

// Poll reads the feed since the last poll and returns the halts in it.
func (w *Watcher) Poll(ctx context.Context) ([]Alert, error) {
	var out []Alert
	for {
		ch, err := w.s.C.Changes(ctx, w.cursor, 1000)
		if err != nil {
			return out, w.s.explain(ctx, err, nil)
		}
		for _, c := range ch.Changes {
			if c.Entity != "migration" || c.Op != "halt" {
				continue
			}
			var d struct {
				Migration registry.Migration `json:"migration"`
				Automatic bool               `json:"automatic"`
				Reverted  []string           `json:"reverted"`
			}
			if err := json.Unmarshal(c.Data, &d); err != nil {
				return out, fmt.Errorf("reading halt %d from the feed: %w", c.Seq, err)
			}
			out = append(out, Alert{Seq: c.Seq, Migration: d.Migration, Automatic: d.Automatic, Reverted: d.Reverted})
		}
		w.cursor = ch.Cursor
		if !ch.More || len(ch.Changes) == 0 {
			return out, nil
		}
	}
}

// Resolve finds a migration by id, or by name when ref is not an id. A
// name several migrations share is refused: use the id then.
func (s *Service) Resolve(ctx context.Context, ref string) (registry.Migration, error) {
	if strings.HasPrefix(ref, "mig_") {
		return s.Get(ctx, ref)
	}
	ms, err := s.List(ctx)
	if err != nil {
		return registry.Migration{}, err
	}
	var found []registry.Migration
	for _, m := range ms {
		if m.Name == ref || m.ID == ref {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return registry.Migration{}, &Error{Code: "not_found", Message: fmt.Sprintf("no migration has the id or name %q", ref), hint: "List the migrations (keydesk migrate list) for their ids.",
			desk: "Press Refresh on the Migration screen and pick the migration from its list."}
	}
	return registry.Migration{}, &Error{Code: "ambiguous", Message: fmt.Sprintf("%d migrations are named %q", len(found), ref), hint: "Name it by its id (keydesk migrate list shows them).",
		desk: "Pick it from the Migration screen's list, which tells them apart by their key sets and state."}
}
