package migrateui

import (
	"context"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

var env *enroltest.Env

func TestMain(m *testing.M) { enroltest.Main(m, 2, &env, nil) }

// world enrols ana-lima's new key (set yk5-2026, verified) and ben-okafor's
// old one (legacy-2024), and adds two users with no key, as a directory
// sync would.
func world(t *testing.T) {
	ctx := context.Background()
	for i, u := range []struct{ user, set string }{{"ana-lima", "yk5-2026"}, {"ben-okafor", "legacy-2024"}} {
		k, err := env.Key(ctx, env.Serial(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := enroltest.Enrol(ctx, env.Keys, env.Admin, k, enroltest.Options{User: u.user, Role: registry.RolePrimary,
			PIVPIN: "246810", FIDOPIN: "fido-2468", Recipients: []string{env.Recipient}, KeySets: []string{u.set}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"cora-diallo", "dev-patel"} {
		if err := env.AdminCall("POST", "/v1/users", map[string]string{"external_id": u, "display_name": u, "email": u + "@example.org"}, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func newView(t *testing.T, role uikit.Role, reg func(context.Context) (*client.Client, error)) (*View, fyne.Window) {
	uitest.HoldUI(t)
	a := test.NewApp()
	t.Cleanup(a.Quit)
	w := a.NewWindow("keydesk")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	v := New(&uikit.Env{App: a, Window: w, Ctx: ctx, Role: role, Registry: reg})
	w.SetContent(v.Content())
	w.Resize(fyne.NewSize(1000, 820))
	v.Settle()
	return v, w
}

func tapped(t *testing.T, v *View, b *widget.Button) {
	t.Helper()
	if b.Disabled() {
		t.Fatalf("button %q is disabled", b.Text)
	}
	test.Tap(b)
	v.Settle()
}

// confirmed taps the open confirmation's action and returns what it said.
func confirmed(t *testing.T, v *View) string {
	t.Helper()
	if v.Confirm == nil || v.lastStep == nil {
		t.Fatalf("no confirmation open; status: %s", v.Status.Text)
	}
	said := ConfirmText(*v.lastStep)
	tapped(t, v, v.Confirm)
	return said
}

// snake is a name as the plan file or the registry spells it (from_set,
// dry_run, no_b_key): the screen says such things in words.
var snake = regexp.MustCompile(`\b[a-z0-9]+_[a-z0-9_]+\b`)

// plainWindow checks that no tab of the screen shows a keydesk command
// line or a snake_case name, and that no problem is said twice.
func plainWindow(t *testing.T, v *View, w fyne.Window, when string) {
	t.Helper()
	sel := v.Tabs.SelectedIndex()
	defer v.Tabs.SelectIndex(sel)
	for i := range v.Tabs.Items {
		v.Tabs.SelectIndex(i)
		text := uitest.WindowText(w)
		if c := uitest.CLICommand(text); c != "" {
			t.Errorf("%s, tab %q shows the command line %q", when, v.Tabs.Items[i].Text, c)
		}
		if n := snake.FindString(text); n != "" {
			t.Errorf("%s, tab %q shows %q:\n%s", when, v.Tabs.Items[i].Text, n, text)
		}
		// A message (a label's line) is said once.
		seen := map[string]bool{}
		uitest.Visible(w, func(o fyne.CanvasObject) {
			l, ok := o.(*widget.Label)
			if !ok {
				return
			}
			for _, line := range strings.Split(l.Text, "\n") {
				if len(line) > 30 && seen[line] {
					t.Errorf("%s, tab %q says twice: %q", when, v.Tabs.Items[i].Text, line)
				}
				seen[line] = true
			}
		})
	}
}

// TestPlanForm: the form's placeholders are hints that cannot pass for
// values, the numbers the plan starts with are real text, and Create is
// disabled, with the reason beside it, until the plan has a name and both
// key sets.
func TestPlanForm(t *testing.T) {
	v, _ := newView(t, uikit.Admin, func(context.Context) (*client.Client, error) { return env.Admin, nil })
	for name, e := range map[string]*uikit.Entry{"name": v.Name, "from": v.From, "to": v.To, "scope users": v.ScopeUsers,
		"scope groups": v.ScopeGroups, "canary users": v.CanaryUsers, "canary groups": v.CanaryGroups, "canary percent": v.CanaryPercent,
		"stages": v.Stages, "verified keys": v.MinB, "days": v.MaxAge, "grace": v.Grace, "threshold": v.Threshold,
		"percent": v.Percent, "reason": v.Reason} {
		ph := e.PlaceHolder
		if ph == "" {
			if e.Text == "" {
				t.Errorf("%s: neither a value nor a hint", name)
			}
			continue
		}
		if _, err := strconv.ParseFloat(ph, 64); err == nil || !(strings.HasPrefix(ph, "e.g. ") || len(strings.Fields(ph)) >= 3) {
			t.Errorf("%s: the placeholder %q could pass for a value", name, ph)
		}
	}
	if v.MinB.Text != "1" || v.MaxAge.Text != "30" || v.Grace.Text != "24" || v.Threshold.Text != "1" {
		t.Errorf("policy starts as %q %q %q %q", v.MinB.Text, v.MaxAge.Text, v.Grace.Text, v.Threshold.Text)
	}
	if !v.Create.Disabled() || v.CreateNote.Text != "Give the plan a name, the From key set and the To key set first." {
		t.Fatalf("empty form: Create disabled %v, %q", v.Create.Disabled(), v.CreateNote.Text)
	}
	test.Type(v.Name, "yk5 rollout")
	test.Type(v.To, "yk5-2026")
	if !v.Create.Disabled() || v.CreateNote.Text != "Give the plan the From key set first." {
		t.Fatalf("no From: Create disabled %v, %q", v.Create.Disabled(), v.CreateNote.Text)
	}
	test.Type(v.From, "legacy-2024")
	if v.Create.Disabled() || v.CreateNote.Text != "" {
		t.Fatalf("full form: Create disabled %v, %q", v.Create.Disabled(), v.CreateNote.Text)
	}
}

// TestMigrationScreen plans a migration through the form against a real
// registry process (bad plans refused beside their field, nothing
// written), reads the per-cohort readiness, advances with confirmations
// that name who is cut over, shows the registry halting the canary by
// itself as a banner, matches the screen against its reference image,
// exports the CSV, rolls back, and reports a registry that went away.
func TestMigrationScreen(t *testing.T) {
	PollEvery = time.Hour // the test polls by hand
	world(t)
	ctx := context.Background()
	v, w := newView(t, uikit.Admin, func(context.Context) (*client.Client, error) { return env.Admin, nil })
	if !strings.Contains(v.Summary.Text, "No migration selected") {
		t.Fatalf("summary before any plan: %q", v.Summary.Text)
	}
	v.pollOnce(ctx) // start following the feed now

	// Bad plans: refused beside the field at fault; nothing written.
	test.Type(v.Name, "yk5 rollout")
	test.Type(v.From, "legacy-2024")
	test.Type(v.To, "yk6-2030")
	test.Type(v.CanaryUsers, "ana-lima")
	tapped(t, v, v.Create)
	if l := v.FieldErr["to_set"]; !l.Visible() || !strings.Contains(l.Text, `key set "yk6-2030" does not exist`) || !strings.Contains(l.Text, "yk5-2026") {
		t.Fatalf("to_set refusal: visible %v %q; status %q", l.Visible(), l.Text, v.Status.Text)
	}
	// Said once: under the field; the status line points there.
	if strings.Contains(v.Status.Text, "does not exist") || !strings.Contains(v.Status.Text, "marked in red") {
		t.Fatalf("status beside a field refusal: %q", v.Status.Text)
	}
	plainWindow(t, v, w, "after a refused plan")
	v.To.SetText("yk5-2026")
	test.Type(v.Stages, "ten")
	tapped(t, v, v.Create)
	if l := v.FieldErr["stages"]; !l.Visible() || !strings.Contains(l.Text, `"ten" is not a number`) || v.FieldErr["to_set"].Visible() {
		t.Fatalf("stages: %q (to_set still shown: %v)", l.Text, v.FieldErr["to_set"].Visible())
	}
	v.Stages.SetText("")
	test.Type(v.CanaryPercent, "150")
	tapped(t, v, v.Create)
	if l := v.FieldErr["canary"]; !l.Visible() || !strings.Contains(l.Text, "canary percent 150 is outside") {
		t.Fatalf("canary: %q", l.Text)
	}
	v.CanaryPercent.SetText("")
	v.CanaryUsers.SetText("")
	test.Type(v.CanaryGroups, "nobody")
	tapped(t, v, v.Create)
	if l := v.FieldErr["canary"]; !strings.Contains(l.Text, "the canary matches no user") {
		t.Fatalf("empty canary: %q", l.Text)
	}
	if ms, err := env.Admin.Migrations(ctx); err != nil || len(ms) != 0 {
		t.Fatalf("refused plans wrote migrations: %v %v", ms, err)
	}

	// A good plan: the canary is ana; ben and the two users without keys
	// are blocked for want of a new key.
	v.CanaryGroups.SetText("")
	v.CanaryUsers.SetText("ana-lima")
	tapped(t, v, v.Create)
	for f, l := range v.FieldErr {
		if l.Visible() {
			t.Errorf("%s still shows %q", f, l.Text)
		}
	}
	if !strings.Contains(v.Summary.Text, "yk5 rollout: legacy-2024 → yk5-2026. State draft") {
		t.Fatalf("summary: %q (status %q)", v.Summary.Text, v.Status.Text)
	}
	want := []registry.CohortTotals{{Cohort: "canary", Users: 1, Ready: 1}, {Cohort: "rest", Users: 3, Blocked: 3}}
	if len(v.Chart.totals) != 2 || v.Chart.totals[0].Cohort != want[0].Cohort || v.Chart.totals[0].Ready != 1 || v.Chart.totals[1].Blocked != 3 {
		t.Fatalf("chart totals %+v", v.Chart.totals)
	}
	if !strings.Contains(v.Reasons.Text, "rest: 0 of 3 ready; blocked: no new key 3") {
		t.Fatalf("reasons: %q", v.Reasons.Text)
	}

	// Advance to the dry run, then the canary: the confirmation names ana.
	if v.StepTo.Selected != "dry run" {
		t.Fatalf("next step %q", v.StepTo.Selected)
	}
	tapped(t, v, v.Advance)
	if v.Confirm == nil || v.Confirm.Importance == widget.DangerImportance {
		t.Fatal("advancing is confirmed with a red button")
	}
	confirmed(t, v)
	if !strings.Contains(v.Summary.Text, "State dry run") {
		t.Fatalf("after dry run: %q / %q", v.Summary.Text, v.Status.Text)
	}
	tapped(t, v, v.Advance)
	said := confirmed(t, v)
	if !strings.Contains(said, "1 user cut over from legacy-2024 to yk5-2026") || !strings.Contains(said, "Cut over to yk5-2026 (1):\nana-lima") {
		t.Fatalf("canary confirmation: %q", said)
	}
	if !strings.Contains(v.Summary.Text, "State canary") || !strings.Contains(v.Status.Text, "1 user cut over") {
		t.Fatalf("after canary: %q / %q", v.Summary.Text, v.Status.Text)
	}

	// The auth server reports ana's new key failing: the registry halts
	// the canary by itself, and the banner says so.
	k, err := env.Admin.KeyBySerial(ctx, strconv.FormatUint(uint64(env.Serial(0)), 10))
	if err != nil {
		t.Fatal(err)
	}
	users, _, _ := env.Admin.Users(ctx, "", 10)
	ana := ""
	for _, u := range users {
		if u.ExternalID == "ana-lima" {
			ana = u.ID
		}
	}
	out, err := env.Admin.ReportLockout(ctx, registry.LockoutSignal{UserID: ana, KeyID: k.ID, Reason: "failed_signin"})
	if err != nil || !out.Halted {
		t.Fatalf("lockout signal: %+v %v", out, err)
	}
	if v.bannerBox.Visible() {
		t.Fatal("banner before the poll")
	}
	v.pollOnce(ctx)
	v.Settle()
	if !v.bannerBox.Visible() || !strings.Contains(v.Banner.Text, `Migration "yk5 rollout" in canary halted by itself: 1 of 1 user in stage canary`) {
		t.Fatalf("banner: visible %v %q", v.bannerBox.Visible(), v.Banner.Text)
	}
	if !strings.Contains(v.Summary.Text, "HALTED") || !v.Resume.Checked {
		t.Fatalf("after the halt: %q", v.Summary.Text)
	}
	// Halting again cannot help; advancing needs resume ticked.
	if !v.Halt.Disabled() || !strings.Contains(v.StepsNote.Text, "halted already") {
		t.Fatalf("halted: Halt disabled %v, note %q", v.Halt.Disabled(), v.StepsNote.Text)
	}
	test.Tap(v.Resume)
	if !v.Advance.Disabled() || !strings.Contains(v.StepsNote.Text, "resume after a halt") {
		t.Fatalf("halted, resume unticked: Advance disabled %v, note %q", v.Advance.Disabled(), v.StepsNote.Text)
	}
	test.Tap(v.Resume)
	if v.Advance.Disabled() {
		t.Fatalf("halted, resume ticked: Advance disabled, note %q", v.StepsNote.Text)
	}
	plainWindow(t, v, w, "after the halt")
	// 0.01% of the pixels (anti-aliasing) may differ, so a changed word
	// still fails.
	uitest.MatchImageWithin(t, "migration.png", w.Canvas().Capture(), 24, 0.0001)

	// The CSV for outreach.
	csvPath := filepath.Join(t.TempDir(), "readiness.csv")
	f, err := os.Create(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	v.exportCSV(v.current.ID, f)
	v.Settle()
	b, _ := os.ReadFile(csvPath)
	if !strings.HasPrefix(string(b), "user_id,external_id,email,cohort,ready,reasons,good_b_keys,cut_over\n") || !strings.Contains(string(b), ",ben-okafor,") || !strings.Contains(string(b), "b_key_failing") {
		t.Fatalf("csv:\n%s", b)
	}

	// Roll back: disabled until there is a reason, and the confirmation
	// says who moves.
	if !v.Rollback.Disabled() || !strings.Contains(v.StepsNote.Text, "need a reason") {
		t.Fatalf("rollback without a reason: disabled %v, note %q", v.Rollback.Disabled(), v.StepsNote.Text)
	}
	test.Type(v.Reason, "canary failed")
	tapped(t, v, v.Rollback)
	if v.Confirm == nil || v.Confirm.Importance != widget.DangerImportance {
		t.Fatal("rolling back is not confirmed with a red button")
	}
	said = confirmed(t, v)
	if !strings.Contains(said, `Roll back "yk5 rollout": 0 users moved back from yk5-2026 to legacy-2024`) {
		t.Fatalf("rollback confirmation: %q", said)
	}
	if !strings.Contains(v.Summary.Text, "State rolled back") || !v.Advance.Disabled() || !v.Rollback.Disabled() || !strings.Contains(v.StepsNote.Text, "has ended") {
		t.Fatalf("after rollback: %q; note %q", v.Summary.Text, v.StepsNote.Text)
	}
	plainWindow(t, v, w, "after the rollback")

	// Helpdesk staff read but do not act.
	h, _ := newView(t, uikit.Helpdesk, func(context.Context) (*client.Client, error) { return env.Helpdesk, nil })
	if len(h.Tabs.Items) != 1 || h.Create != nil || !strings.Contains(h.Summary.Text, "State rolled back") {
		t.Fatalf("helpdesk view: %d tabs, create %v, %q", len(h.Tabs.Items), h.Create != nil, h.Summary.Text)
	}

	// The registry goes away: the screen says so and what to do.
	env.Registry.Stop()
	tapped(t, v, v.RefreshBtn)
	if !strings.Contains(v.Status.Text, "could not be reached") || !strings.Contains(v.Status.Text, "nothing was changed") {
		t.Fatalf("registry down: %q", v.Status.Text)
	}
}

// TestScreenEntry: the navigation entry is shown to admin and helpdesk
// staff only.
func TestScreenEntry(t *testing.T) {
	s := Screen()
	if s.ID != "migration" || s.Title != "Migration" || s.Icon == nil || s.Make == nil {
		t.Fatalf("screen %+v", s)
	}
	for role, want := range map[uikit.Role]bool{uikit.Admin: true, uikit.Helpdesk: true, uikit.Self: false} {
		if got := s.Visible(&uikit.Env{Role: role}); got != want {
			t.Errorf("visible to %s: %v, want %v", role, got, want)
		}
	}
}
