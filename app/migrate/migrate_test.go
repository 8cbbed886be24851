package migrate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/migrate"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

var env *enroltest.Env

func TestMain(m *testing.M) { enroltest.Main(m, 2, &env, enrolFixture) }

// enrolFixture enrols, once for every test, ana-lima's key into the new
// set yk5-2026 (verified, so she is ready) and ben-okafor's into the old
// set legacy-2024 (so he is not); cora-diallo has no key.
func enrolFixture(env *enroltest.Env) error {
	ctx := context.Background()
	for i, u := range []struct{ user, set string }{{"ana-lima", "yk5-2026"}, {"ben-okafor", "legacy-2024"}} {
		k, err := env.Key(ctx, env.Serial(i))
		if err == nil {
			_, err = enroltest.Enrol(ctx, env.Keys, env.Admin, k, enroltest.Options{User: u.user, Role: registry.RolePrimary,
				PIVPIN: "246810", FIDOPIN: "fido-2468", Recipients: []string{env.Recipient}, KeySets: []string{u.set}})
		}
		if err != nil {
			return fmt.Errorf("enrolling %s: %w", u.user, err)
		}
	}
	if err := env.AdminCall("POST", "/v1/users", map[string]string{"external_id": "cora-diallo", "display_name": "Cora Diallo", "email": "cora@example.org"}, nil); err != nil {
		return fmt.Errorf("adding cora-diallo: %w", err)
	}
	return nil
}

// goodPlan moves everyone from legacy-2024 to yk5-2026, ana-lima first
// (named by external id).
func goodPlan() migrate.Plan {
	return migrate.Plan{Name: "yk5 rollout", From: "legacy-2024", To: "yk5-2026",
		Scope: registry.Cohort{All: true}, Canary: registry.Cohort{Users: []string{"ana-lima"}},
		Stages: []float64{50}, Policy: registry.MigrationPolicy{MinVerifiedB: 1}}
}

// refused checks err is a *migrate.Error with code and field, a next step,
// and (for plan refusals) the promise that nothing was written.
func refused(t *testing.T, err error, code, field string, nothingWritten bool) *migrate.Error {
	t.Helper()
	var me *migrate.Error
	if !errors.As(err, &me) {
		t.Fatalf("want a *migrate.Error %s, got %T %v", code, err, err)
	}
	if me.Code != code || me.Field != field {
		t.Fatalf("refusal %q field %q (%v), want %q field %q", me.Code, me.Field, err, code, field)
	}
	if me.Hint() == "" {
		t.Errorf("%s: no hint", code)
	}
	if nothingWritten && !strings.Contains(me.Hint(), "Nothing was written.") {
		t.Errorf("%s: the hint does not say nothing was written: %q", code, me.Hint())
	}
	checkDeskHint(t, me)
	if nothingWritten && !strings.Contains(me.DeskHint(), "Nothing was written.") {
		t.Errorf("%s: the desktop app's hint does not say nothing was written: %q", code, me.DeskHint())
	}
	if field != "" && !strings.HasPrefix(err.Error(), field+": ") {
		t.Errorf("%s: the message does not name the field: %q", code, err)
	}
	return me
}

// command is what the desktop app must not tell a person: a keydesk
// command line, an API path, a plan's JSON or a name in snake_case.
var command = regexp.MustCompile(`keydesk [a-z]+|/v1/|"all"|\b[a-z]+_[a-z_]+\b`)

// checkDeskHint checks me's next step for the desktop app says what to do
// in the app's words.
func checkDeskHint(t *testing.T, me *migrate.Error) {
	t.Helper()
	if me.DeskHint() == "" {
		t.Errorf("%s: no hint for the desktop app", me.Code)
	}
	if c := command.FindString(me.DeskHint()); c != "" {
		t.Errorf("%s: the desktop app's hint says %q: %q", me.Code, c, me.DeskHint())
	}
}

// noMigrations checks the registry holds no migration at all.
func noMigrations(t *testing.T, s *migrate.Service) {
	t.Helper()
	ms, err := s.List(context.Background())
	if err != nil || len(ms) != 0 {
		t.Fatalf("after refusals the registry lists %d migration(s), %v", len(ms), err)
	}
}

func TestLoadPlan(t *testing.T) {
	p, err := migrate.LoadPlan(strings.NewReader(`{"name":"n","from_set":"a","to_set":"b","scope":{"all":true},"canary":{"percent":1},"stages":[10,50],"policy":{"min_verified_b_keys":1}}`))
	if err != nil || p.Name != "n" || p.From != "a" || p.To != "b" || !p.Scope.All || p.Canary.Percent != 1 || !slices.Equal(p.Stages, []float64{10, 50}) || p.Policy.MinVerifiedB != 1 {
		t.Fatalf("good plan: %+v, %v", p, err)
	}
	for _, c := range []struct{ name, body, want string }{
		{"misspelt field", `{"name":"n","stage":[10]}`, `unknown field "stage"`},
		{"two plans", `{"name":"a"} {"name":"b"}`, "more than one JSON object"},
		{"not JSON", `name: n`, "reading the plan"},
		{"wrong type", `{"stages":"10"}`, "reading the plan"},
	} {
		_, err := migrate.LoadPlan(strings.NewReader(c.body))
		refused(t, err, "bad_plan_file", "", false)
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestCreateRefusals: each bad plan is refused with the field at fault and
// a next step, and nothing is written.
func TestCreateRefusals(t *testing.T) {
	ctx := context.Background()
	s := migrate.New(env.Admin)
	noMigrations(t, s)

	p := goodPlan()
	p.To = "yk6-2030"
	_, err := s.Create(ctx, p)
	me := refused(t, err, "unknown_key_set", "to_set", true)
	if !strings.Contains(me.Error(), `"yk6-2030"`) || !strings.Contains(me.Hint(), "legacy-2024") || !strings.Contains(me.Hint(), "yk5-2026") {
		t.Errorf("unknown to_set: %v; hint %q (should name the sets there are)", me, me.Hint())
	}

	p = goodPlan()
	p.From = "legacy-1999"
	_, err = s.Create(ctx, p)
	refused(t, err, "unknown_key_set", "from_set", true)

	p = goodPlan()
	p.To = p.From
	_, err = s.Create(ctx, p)
	refused(t, err, "same_key_set", "to_set", true)

	p = goodPlan()
	p.Stages = []float64{10, 120}
	_, err = s.Create(ctx, p)
	refused(t, err, "percent_out_of_range", "stages", true)

	p = goodPlan()
	p.Canary = registry.Cohort{Percent: 150}
	_, err = s.Create(ctx, p)
	refused(t, err, "percent_out_of_range", "canary", true)

	p = goodPlan()
	p.Canary = registry.Cohort{Users: []string{"nobody-here"}}
	_, err = s.Create(ctx, p)
	refused(t, err, "unknown_user", "canary", true)

	p = goodPlan()
	p.Scope = registry.Cohort{Users: []string{"ben-okafor"}}
	_, err = s.Create(ctx, p)
	refused(t, err, "empty_cohort", "canary", true)

	p = goodPlan()
	p.Scope = registry.Cohort{Groups: []string{"no-such-group"}}
	p.Canary = registry.Cohort{Percent: 1}
	_, err = s.Create(ctx, p)
	refused(t, err, "empty_cohort", "scope", true)

	p = goodPlan()
	p.Policy.HaltThreshold = 2
	_, err = s.Create(ctx, p)
	refused(t, err, "invalid_policy", "policy", true)

	// A helpdesk token may read but not plan.
	_, err = migrate.New(env.Helpdesk).Create(ctx, goodPlan())
	var me2 *migrate.Error
	if !errors.As(err, &me2) || !strings.Contains(me2.Hint(), "admin token") {
		t.Fatalf("planning with a helpdesk token: %v (hint %q)", err, hintOf(err))
	}
	checkDeskHint(t, me2)
	if !strings.Contains(me2.DeskHint(), "Settings screen") {
		t.Errorf("the desktop app's hint for a helpdesk token names no screen: %q", me2.DeskHint())
	}
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 403 {
		t.Fatalf("the refusal does not carry the registry's status: %v", err)
	}
	noMigrations(t, s)
}

func hintOf(err error) string {
	var me *migrate.Error
	if errors.As(err, &me) {
		return me.Hint()
	}
	return ""
}

// TestMigrationLifecycle plans a migration, reads its readiness and dry
// run, previews and takes each step (refusals included), follows the halt
// on the change feed and rolls back.
func TestMigrationLifecycle(t *testing.T) {
	ctx := context.Background()
	s := migrate.New(env.Admin)
	m, err := s.Create(ctx, goodPlan())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Leave no active migration for the other tests.
		if cur, err := s.Get(ctx, m.ID); err == nil && cur.State != registry.MigrationRolledBack {
			s.Do(ctx, m.ID, migrate.Step{Action: "rollback", Reason: "test cleanup"})
		}
	})
	if m.State != registry.MigrationDraft || len(m.Canary.Users) != 1 || !strings.HasPrefix(m.Canary.Users[0], "usr_") {
		t.Fatalf("created: state %s, canary %q (the external id should be resolved)", m.State, m.Canary.Users)
	}
	ana := m.Canary.Users[0]

	// A second plan over the same users overlaps.
	p := goodPlan()
	p.Name = "again"
	_, err = s.Create(ctx, p)
	refused(t, err, "overlapping_migration", "scope", true)

	// Resolve: by id, by name; an unknown name.
	for _, ref := range []string{m.ID, "yk5 rollout"} {
		if got, err := s.Resolve(ctx, ref); err != nil || got.ID != m.ID {
			t.Fatalf("resolving %q: %s, %v", ref, got.ID, err)
		}
	}
	_, err = s.Resolve(ctx, "no such rollout")
	refused(t, err, "not_found", "", false)
	_, err = s.Get(ctx, "mig_nope")
	refused(t, err, "not_found", "", false)

	// Readiness: ana is ready in the canary; ben has no key in the new
	// set; cora has no key at all.
	rd, err := s.Readiness(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	byExt := map[string]registry.UserReadiness{}
	for _, u := range rd.Users {
		byExt[u.ExternalID] = u
	}
	if u := byExt["ana-lima"]; !u.Ready || u.Cohort != "canary" || u.UserID != ana {
		t.Fatalf("ana-lima: %+v", u)
	}
	if u := byExt["ben-okafor"]; u.Ready || !slices.Contains(u.Reasons, "no_b_key") {
		t.Fatalf("ben-okafor: %+v", u)
	}
	var csv bytes.Buffer
	if err := s.ReadinessCSV(ctx, m.ID, &csv); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(csv.String()), "\n"); len(lines) != len(rd.Users)+1 || lines[0] != "user_id,external_id,email,cohort,ready,reasons,good_b_keys,cut_over" {
		t.Fatalf("readiness CSV:\n%s", csv.String())
	}

	// Dry run: the canary cuts ana over; nobody is left without a
	// credential at any stage.
	d, err := s.DryRun(ctx, m.ID)
	if err != nil || len(d.Stages) == 0 || d.Stages[0].Stage != "canary" || !slices.Equal(d.Stages[0].CutOver, []string{ana}) {
		t.Fatalf("dry run: %+v, %v", d, err)
	}
	for _, st := range d.Stages {
		if len(st.LockedOut) != 0 {
			t.Fatalf("stage %s leaves %q without a credential", st.Stage, st.LockedOut)
		}
	}

	// Out of order: the canary before the dry run state.
	_, err = s.Do(ctx, m.ID, migrate.Step{Action: "advance", To: registry.MigrationCanary})
	refused(t, err, "invalid_transition", "", false)
	if cur, _ := s.Get(ctx, m.ID); cur.State != registry.MigrationDraft {
		t.Fatalf("a refused advance moved the migration to %s", cur.State)
	}
	// Unknown steps are refused before the registry is asked.
	if _, err := s.Do(ctx, m.ID, migrate.Step{Action: "jump"}); err == nil || !strings.Contains(err.Error(), `unknown step "jump"`) {
		t.Fatalf("unknown step: %v", err)
	}
	if _, err := s.Preview(ctx, m.ID, migrate.Step{Action: "jump"}); err == nil {
		t.Fatal("previewing an unknown step: no error")
	}

	// dry_run moves nobody.
	pv, err := s.Preview(ctx, m.ID, migrate.Step{Action: "advance", To: registry.MigrationDryRun})
	if err != nil || pv.Stage != "dry_run" || len(pv.CutOver) != 0 {
		t.Fatalf("preview dry_run: %+v, %v", pv, err)
	}
	if _, err := s.Do(ctx, m.ID, migrate.Step{Action: "advance", To: registry.MigrationDryRun}); err != nil {
		t.Fatal(err)
	}

	// The canary: the preview names ana, and the advance moves exactly her.
	canary := migrate.Step{Action: "advance", To: registry.MigrationCanary}
	pv, err = s.Preview(ctx, m.ID, canary)
	if err != nil || pv.Stage != "canary" || len(pv.CutOver) != 1 || pv.CutOver[0].ExternalID != "ana-lima" || len(pv.LockedOut) != 0 {
		t.Fatalf("preview canary: %+v, %v", pv, err)
	}
	if want := `Advance "yk5 rollout" to canary: 1 user cut over from legacy-2024 to yk5-2026.`; pv.Summary() != want {
		t.Fatalf("summary %q, want %q", pv.Summary(), want)
	}
	res, err := s.Do(ctx, m.ID, canary)
	if err != nil || res.CutOver != 1 || res.Migration.State != registry.MigrationCanary {
		t.Fatalf("advance to canary: %+v, %v", res, err)
	}

	// Halt: a reason is required (nothing changes without one); the
	// watcher started before sees the halt, and only that.
	w, err := s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Do(ctx, m.ID, migrate.Step{Action: "halt", Reason: "  "})
	refused(t, err, "missing_field", "reason", false)
	if cur, _ := s.Get(ctx, m.ID); cur.Halted {
		t.Fatal("a halt without a reason halted the migration")
	}
	halt := migrate.Step{Action: "halt", Reason: "helpdesk calls"}
	if pv, err := s.Preview(ctx, m.ID, halt); err != nil || pv.Stage != "halted" || !strings.Contains(pv.Summary(), "the 1 user already on yk5-2026 stay there") {
		t.Fatalf("preview halt: %q, %v", pv.Summary(), err)
	}
	if res, err := s.Do(ctx, m.ID, halt); err != nil || !res.Migration.Halted {
		t.Fatalf("halt: %+v, %v", res.Migration, err)
	}
	alerts, err := w.Poll(ctx)
	if err != nil || len(alerts) != 1 || alerts[0].Automatic || alerts[0].Migration.ID != m.ID {
		t.Fatalf("alerts after the halt: %+v, %v", alerts, err)
	}
	if msg := alerts[0].Message(); msg != `Migration "yk5 rollout" in canary halted by hand: helpdesk calls.` {
		t.Fatalf("alert message %q", msg)
	}
	if again, err := w.Poll(ctx); err != nil || len(again) != 0 {
		t.Fatalf("the same halt reported twice: %+v, %v", again, err)
	}

	// Halted: advancing needs resume.
	_, err = s.Do(ctx, m.ID, migrate.Step{Action: "advance", To: registry.MigrationComplete})
	if me := refused(t, err, "migration_halted", "", false); !strings.Contains(me.Hint(), "resume") {
		t.Fatalf("halted advance hint: %q", me.Hint())
	}

	// Roll back: the preview names who moves back; a reason is required.
	back := migrate.Step{Action: "rollback", Reason: "canary feedback"}
	pv, err = s.Preview(ctx, m.ID, back)
	if err != nil || len(pv.MovedBack) != 1 || pv.MovedBack[0].UserID != ana {
		t.Fatalf("preview rollback: %+v, %v", pv, err)
	}
	if want := `Roll back "yk5 rollout": 1 user moved back from yk5-2026 to legacy-2024 in one change, and the migration ends.`; pv.Summary() != want {
		t.Fatalf("summary %q, want %q", pv.Summary(), want)
	}
	_, err = s.Do(ctx, m.ID, migrate.Step{Action: "rollback"})
	refused(t, err, "missing_field", "reason", false)
	res, err = s.Do(ctx, m.ID, back)
	if err != nil || res.Reverted != 1 || res.Migration.State != registry.MigrationRolledBack {
		t.Fatalf("rollback: %+v, %v", res, err)
	}
	// Ended: no step leads anywhere from here.
	_, err = s.Do(ctx, m.ID, migrate.Step{Action: "advance", To: registry.MigrationCanary, Resume: true})
	refused(t, err, "invalid_transition", "", false)
}

// TestRegistryDown: with the registry unreachable every call says so
// plainly, matches client.ErrUnreachable, and promises nothing changed.
func TestRegistryDown(t *testing.T) {
	ctx := context.Background()
	// A registry that was here and stopped: its port refuses connections.
	state := filepath.Join(t.TempDir(), "registry")
	tok, err := regtest.Token(env.Bin, state, "admin", "gone-admin", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.Start(env.Bin, state)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(p.URL, tok, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.Stop()
	s := migrate.New(c)
	down := func(what string, err error) {
		t.Helper()
		me := refused(t, err, "unreachable", "", false)
		if !errors.Is(err, client.ErrUnreachable) || me.Error() != "the registry could not be reached (connection refused)" || !strings.Contains(me.Hint(), "nothing was changed") {
			t.Errorf("%s with the registry down: %v (hint %q)", what, err, me.Hint())
		}
	}
	_, err = s.Create(ctx, goodPlan()) // resolving ana-lima needs the registry
	down("create", err)
	_, err = s.List(ctx)
	down("list", err)
	_, err = s.Resolve(ctx, "yk5 rollout")
	down("resolve", err)
	_, err = s.Readiness(ctx, "mig_x")
	down("readiness", err)
	down("readiness CSV", s.ReadinessCSV(ctx, "mig_x", &bytes.Buffer{}))
	_, err = s.DryRun(ctx, "mig_x")
	down("dry run", err)
	_, err = s.Preview(ctx, "mig_x", migrate.Step{Action: "advance", To: registry.MigrationCanary})
	down("preview", err)
	for _, st := range []migrate.Step{{Action: "advance", To: registry.MigrationCanary}, {Action: "halt", Reason: "r"}, {Action: "rollback", Reason: "r"}} {
		_, err = s.Do(ctx, "mig_x", st)
		down(st.Action, err)
	}
	_, err = s.Watch(ctx)
	down("watch", err)
}
