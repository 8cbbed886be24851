// Package migrateui is the desktop Migration screen (docs/migrations.md): a
// plan editor that shows the registry's refusals beside the field at
// fault, the readiness of each cohort as a bar chart with the blocked
// reasons and a CSV export, advance / halt / roll back with a confirmation
// that names exactly who would be cut over or moved back, and a banner for
// halts read from the change feed while the screen is visible. Helpdesk
// staff see everything but cannot change a migration.
package migrateui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/migrate"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/registry"
)

// Screen is the Migration entry of the app's navigation.
func Screen() uikit.Screen {
	return uikit.Screen{
		ID:    "migration",
		Title: "Migration",
		Icon:  theme.MediaFastForwardIcon(),
		Roles: []uikit.Role{uikit.Admin, uikit.Helpdesk},
		Make:  func(env *uikit.Env) fyne.CanvasObject { return New(env).Content() },
	}
}

// PollEvery is how often the screen reads the change feed for halts while
// it is visible.
var PollEvery = 3 * time.Second

// View is the screen's state. Widgets are fields so tests can drive them.
type View struct {
	env      *uikit.Env
	canAct   bool
	root     fyne.CanvasObject
	top      *fyne.Container
	busy     sync.WaitGroup
	mu       sync.Mutex
	watcher  *migrate.Watcher
	ms       []registry.Migration
	current  *registry.Migration
	report   *registry.Readiness
	lastStep *migrate.Preview

	// top
	Banner     *widget.Label
	bannerBox  *fyne.Container
	Migrations *widget.Select
	RefreshBtn *widget.Button
	Status     *widget.Label

	// readiness and steps
	Summary   *widget.Label
	Chart     *Chart
	Reasons   *widget.Label
	ExportBtn *widget.Button
	StepTo    *widget.Select
	Percent   *uikit.Entry
	Resume    *widget.Check
	Reason    *uikit.Entry
	Advance   *widget.Button
	Halt      *widget.Button
	Rollback  *widget.Button
	// StepsNote says why a step button is disabled; empty when none is.
	StepsNote *widget.Label
	// Confirm is the open confirmation dialog's action button (nil when none).
	Confirm       *widget.Button
	confirmDialog dialog.Dialog

	// plan editor
	Name          *uikit.Entry
	From, To      *uikit.Entry
	ScopeAll      *widget.Check
	ScopeUsers    *uikit.Entry
	ScopeGroups   *uikit.Entry
	CanaryUsers   *uikit.Entry
	CanaryGroups  *uikit.Entry
	CanaryPercent *uikit.Entry
	Stages        *uikit.Entry
	MinB          *uikit.Entry
	Backup        *widget.Check
	MaxAge        *uikit.Entry
	Grace         *uikit.Entry
	Threshold     *uikit.Entry
	Create        *widget.Button
	// CreateNote says why Create is disabled; empty when it is not.
	CreateNote *widget.Label
	// FieldErr holds the refusal shown under each plan field, by the
	// registry's field name (from_set, to_set, scope, canary, stages,
	// policy, name).
	FieldErr map[string]*widget.Label
	Tabs     *container.AppTabs
}

// New builds the screen's state; call Content on the UI goroutine.
func New(env *uikit.Env) *View {
	return &View{env: env, canAct: env.Can(uikit.Admin), FieldErr: map[string]*widget.Label{}}
}

// Settle waits until the background work the view started has reported.
// A goroutine that holds the UI lock (a headless test does, see
// uikit.Release) gives it up while it waits: the work reports through
// uikit.Do, which takes that lock.
func (v *View) Settle() {
	retake := uikit.Release()
	defer retake()
	v.busy.Wait()
}

// run does work off the UI goroutine and then done on it.
func (v *View) run(work func(ctx context.Context, svc *migrate.Service) error, done func(error)) {
	v.busy.Add(1)
	v.env.Go(func(ctx context.Context) error {
		c, err := v.env.Registry(ctx)
		if err != nil {
			return err
		}
		return work(ctx, migrate.New(c))
	}, func(err error) {
		defer v.busy.Done()
		if done != nil {
			done(err)
		}
	})
}

func msg(err error) string {
	if err == nil {
		return ""
	}
	var me *migrate.Error
	if errors.As(err, &me) {
		// The field the registry names is marked on the form; the message
		// alone reads better than the plan's field name in front of it.
		m := me.Message
		if h := me.DeskHint(); h != "" {
			m += "\n\n" + h
		}
		return words(m)
	}
	return words(uikit.Message(err))
}

// deskWords are the plan's and the registry's names for things, as the
// screen says them.
var deskWords = strings.NewReplacer(
	"from_set", "From key set", "to_set", "To key set",
	"min_verified_b_keys", "verified new keys per user", "halt_threshold", "halt threshold",
	"max_verification_age_days", "verified within (days)", "grace_period_hours", "grace period",
	"backup_required", "backup key required",
	"dry_run", "dry run", "rolled_back", "rolled back",
)

// words is s with the plan's field and state names in the screen's words.
func words(s string) string { return deskWords.Replace(s) }

// reasonWords are the readiness report's reasons a user is blocked, in
// words (registry.Reason*).
var reasonWords = map[string]string{
	registry.ReasonNoBKey:         "no new key",
	registry.ReasonBKeyLost:       "new key lost or revoked",
	registry.ReasonBKeyInactive:   "new key not active",
	registry.ReasonBKeyNoCred:     "new key has no usable credential",
	registry.ReasonBKeyUnverified: "new key not verified recently",
	registry.ReasonBKeyFailing:    "new key failing",
	registry.ReasonPINBlocked:     "PIN blocked",
	registry.ReasonTooFewBKeys:    "too few good new keys",
	registry.ReasonNoBackupKey:    "no backup key",
	registry.ReasonOtherMigration: "in another migration",
}

// reason is a blocked reason in words.
func reason(r string) string {
	if w, ok := reasonWords[r]; ok {
		return w
	}
	return strings.ReplaceAll(r, "_", " ")
}

// steps are the states a migration advances to, in words and as the
// registry names them.
var steps = []struct{ words, state string }{
	{"dry run", "dry_run"}, {"canary", "canary"}, {"staged", "staged"}, {"complete", "complete"},
}

func stepWords(state string) string {
	for _, s := range steps {
		if s.state == state {
			return s.words
		}
	}
	return state
}

func stepState(w string) string {
	for _, s := range steps {
		if s.words == w {
			return s.state
		}
	}
	return w
}

func (v *View) fail(what string, err error) {
	v.Status.SetText(what + ": " + strings.ReplaceAll(msg(err), "\n\n", " "))
	v.Status.Importance = widget.DangerImportance
	v.Status.Refresh()
	v.relayout()
}

func (v *View) ok(s string) {
	v.Status.SetText(s)
	v.Status.Importance = widget.MediumImportance
	v.Status.Refresh()
	v.relayout()
}

// relayout lays the screen out again once wrapped labels know their
// width, so that their height counts in the layout (UI goroutine).
func (v *View) relayout() {
	if v.root == nil {
		return
	}
	v.root.Refresh()
	v.root.Refresh()
}

// Content builds the screen and starts loading and the halt watch.
func (v *View) Content() fyne.CanvasObject {
	v.Banner = widget.NewLabel("")
	v.Banner.Wrapping = fyne.TextWrapWord
	v.Banner.Importance = widget.DangerImportance
	v.Banner.TextStyle.Bold = true
	dismiss := widget.NewButtonWithIcon("", theme.CancelIcon(), func() { v.bannerBox.Hide(); v.relayout() })
	v.bannerBox = container.NewBorder(nil, nil, widget.NewIcon(theme.WarningIcon()), dismiss, v.Banner)
	v.bannerBox.Hide()
	v.Status = widget.NewLabel("")
	v.Status.Wrapping = fyne.TextWrapWord
	v.Migrations = widget.NewSelect(nil, func(string) { v.selectCurrent() })
	v.Migrations.PlaceHolder = "(no migration)"
	v.RefreshBtn = widget.NewButtonWithIcon("Refresh", theme.ViewRefreshIcon(), func() { v.load("") })

	v.Summary = widget.NewLabel("")
	v.Summary.Wrapping = fyne.TextWrapWord
	v.Chart = NewChart()
	v.Reasons = widget.NewLabel("")
	v.ExportBtn = widget.NewButtonWithIcon("Export CSV…", theme.DocumentSaveIcon(), v.exportDialog)
	var stepNames []string
	for _, s := range steps {
		stepNames = append(stepNames, s.words)
	}
	v.StepTo = widget.NewSelect(stepNames, nil)
	v.Percent = uikit.NewEntry()
	v.Percent.SetPlaceHolder("percent: the next planned stage")
	v.Resume = widget.NewCheck("resume after a halt", func(bool) { v.enableSteps() })
	v.Reason = uikit.NewEntry()
	v.Reason.SetPlaceHolder("why you halt or roll back (kept in the audit log)")
	v.Reason.OnChanged = func(string) { v.enableSteps() }
	v.StepsNote = widget.NewLabel("")
	v.StepsNote.Wrapping = fyne.TextWrapWord
	v.StepsNote.Importance = widget.LowImportance
	v.Advance = widget.NewButtonWithIcon("Advance…", theme.MediaPlayIcon(), func() { v.preview(v.advanceStep()) })
	v.Halt = widget.NewButtonWithIcon("Halt…", theme.MediaPauseIcon(), func() { v.preview(migrate.Step{Action: "halt", Reason: v.Reason.Text}) })
	v.Rollback = widget.NewButtonWithIcon("Roll back…", theme.MediaReplayIcon(), func() { v.preview(migrate.Step{Action: "rollback", Reason: v.Reason.Text}) })
	v.Rollback.Importance = widget.DangerImportance

	steps := container.NewVBox(
		widget.NewLabelWithStyle("Steps", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		container.NewGridWithColumns(3, v.StepTo, v.Percent, v.Resume),
		v.Reason,
		container.NewHBox(v.Advance, v.Halt, v.Rollback),
		v.StepsNote,
	)
	if !v.canAct {
		steps = container.NewVBox(widget.NewLabel("Read only: advancing, halting and rolling back need an admin."))
	}
	overview := container.NewBorder(v.Summary, nil, nil, nil,
		container.NewBorder(nil, container.NewVBox(
			widget.NewLabelWithStyle("Blocked users, by reason", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
			v.Reasons, container.NewHBox(v.ExportBtn), widget.NewSeparator(), steps), nil, nil, v.Chart))

	v.Tabs = container.NewAppTabs(container.NewTabItem("Readiness and steps", overview))
	if v.canAct {
		v.Tabs.Append(container.NewTabItem("New plan", v.planForm()))
	}
	v.top = container.NewVBox(v.bannerBox, container.NewBorder(nil, nil, widget.NewLabel("Migration"), v.RefreshBtn, v.Migrations), v.Status)
	v.root = container.NewBorder(v.top, nil, nil, nil, v.Tabs)
	v.show()
	v.load("")
	v.watch()
	return v.root
}

func (v *View) planForm() fyne.CanvasObject {
	e := func(ph string) *uikit.Entry { w := uikit.NewEntry(); w.SetPlaceHolder(ph); return w }
	// A value the form starts with is text, not a placeholder: a
	// placeholder is a hint ("e.g. …") that cannot pass for a value.
	val := func(text string) *uikit.Entry { w := uikit.NewEntry(); w.SetText(text); return w }
	v.Name = e("e.g. YubiKey 5 rollout")
	v.From = e("e.g. legacy-2024, the key set people have now")
	v.To = e("e.g. yk5-2026, the key set they move to")
	v.ScopeAll = widget.NewCheck("everyone", nil)
	v.ScopeAll.SetChecked(true)
	v.ScopeUsers = e("users (ids or external ids, comma-separated)")
	v.ScopeGroups = e("groups, comma-separated, e.g. engineering, finance")
	v.CanaryUsers = e("users (ids or external ids, comma-separated)")
	v.CanaryGroups = e("groups, comma-separated, e.g. engineering, finance")
	v.CanaryPercent = e("percent of the scope, e.g. 1")
	v.Stages = e("staged percentages before complete, e.g. 10, 50")
	v.MinB = val("1")
	v.Backup = widget.NewCheck("a backup key is required", nil)
	v.MaxAge = val("30")
	v.Grace = val("24")
	v.Threshold = val("1")
	for _, f := range []string{"name", "from_set", "to_set", "scope", "canary", "stages", "policy"} {
		l := widget.NewLabel("")
		l.Importance = widget.DangerImportance
		l.Wrapping = fyne.TextWrapWord
		l.Hide()
		v.FieldErr[f] = l
	}
	v.Create = widget.NewButtonWithIcon("Create plan", theme.ContentAddIcon(), v.createPlan)
	v.Create.Importance = widget.HighImportance
	v.CreateNote = widget.NewLabel("")
	v.CreateNote.Importance = widget.LowImportance
	for _, w := range []*uikit.Entry{v.Name, v.From, v.To} {
		w.OnChanged = func(string) { v.enableCreate() }
	}
	v.enableCreate()
	f := v.FieldErr
	form := widget.NewForm(
		widget.NewFormItem("Name", container.NewVBox(v.Name, f["name"])),
		widget.NewFormItem("From key set", container.NewVBox(v.From, f["from_set"])),
		widget.NewFormItem("To key set", container.NewVBox(v.To, f["to_set"])),
		widget.NewFormItem("Scope", container.NewVBox(v.ScopeAll, v.ScopeUsers, v.ScopeGroups, f["scope"])),
		widget.NewFormItem("Canary", container.NewVBox(v.CanaryUsers, v.CanaryGroups, v.CanaryPercent, f["canary"])),
		widget.NewFormItem("Stages", container.NewVBox(v.Stages, f["stages"])),
		widget.NewFormItem("Policy", container.NewVBox(
			container.NewGridWithColumns(2, widget.NewLabel("verified new keys per user"), v.MinB),
			v.Backup,
			container.NewGridWithColumns(2, widget.NewLabel("verified within (days, 0 = any)"), v.MaxAge),
			container.NewGridWithColumns(2, widget.NewLabel("grace period per stage (hours)"), v.Grace),
			container.NewGridWithColumns(2, widget.NewLabel("halt at failures in the cohort (%)"), v.Threshold),
			f["policy"])),
	)
	return container.NewVScroll(container.NewVBox(form, container.NewHBox(v.Create, v.CreateNote)))
}

// enableCreate enables Create once the plan has a name and both key sets,
// and says what is missing while it does not.
func (v *View) enableCreate() {
	var missing []string
	for _, f := range []struct {
		e    *uikit.Entry
		name string
	}{{v.Name, "a name"}, {v.From, "the From key set"}, {v.To, "the To key set"}} {
		if strings.TrimSpace(f.e.Text) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) == 0 {
		v.Create.Enable()
		v.CreateNote.SetText("")
		return
	}
	v.Create.Disable()
	say := missing[len(missing)-1]
	if len(missing) > 1 {
		say = strings.Join(missing[:len(missing)-1], ", ") + " and " + say
	}
	v.CreateNote.SetText("Give the plan " + say + " first.")
}

func list(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// errMarked stands for a problem already shown under its field: the status
// line points there rather than saying it twice.
var errMarked = errors.New("the field marked in red on the New plan tab says why and what to change")

// fieldError is a form value the desk cannot read, before the registry
// sees it.
type fieldError struct{ field, msg string }

func (e fieldError) Error() string { return e.msg }

func num(field, label, s string, def float64) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fieldError{field, fmt.Sprintf("%s: %q is not a number", label, s)}
	}
	return f, nil
}

// plan reads the form.
func (v *View) plan() (migrate.Plan, error) {
	p := migrate.Plan{Name: strings.TrimSpace(v.Name.Text), From: strings.TrimSpace(v.From.Text), To: strings.TrimSpace(v.To.Text),
		Scope:  registry.Cohort{All: v.ScopeAll.Checked, Users: list(v.ScopeUsers.Text), Groups: list(v.ScopeGroups.Text)},
		Canary: registry.Cohort{Users: list(v.CanaryUsers.Text), Groups: list(v.CanaryGroups.Text)}, Stages: []float64{}}
	var err error
	if p.Canary.Percent, err = num("canary", "percent", v.CanaryPercent.Text, 0); err != nil {
		return p, err
	}
	for _, s := range list(v.Stages.Text) {
		f, err := num("stages", "stage", strings.TrimSuffix(s, "%"), 0)
		if err != nil {
			return p, err
		}
		p.Stages = append(p.Stages, f)
	}
	minB, err := num("policy", "verified new keys", v.MinB.Text, 1)
	if err != nil {
		return p, err
	}
	age, err := num("policy", "days", v.MaxAge.Text, 30)
	if err != nil {
		return p, err
	}
	grace, err := num("policy", "grace period", v.Grace.Text, 24)
	if err != nil {
		return p, err
	}
	th, err := num("policy", "halt threshold", v.Threshold.Text, 1)
	if err != nil {
		return p, err
	}
	p.Policy = registry.MigrationPolicy{MinVerifiedB: int(minB), BackupRequired: v.Backup.Checked, MaxVerificationAgeDays: int(age), GracePeriodHours: int(grace), HaltThreshold: th / 100}
	return p, nil
}

func (v *View) clearFieldErrors() {
	for _, l := range v.FieldErr {
		l.SetText("")
		l.Hide()
	}
}

// showFieldError puts a refusal under its field; false when err names none.
func (v *View) showFieldError(err error) bool {
	field, text := "", ""
	var fe fieldError
	var me *migrate.Error
	switch {
	case errors.As(err, &fe):
		field, text = fe.field, fe.msg
	case errors.As(err, &me) && me.Field != "":
		field, text = me.Field, words(me.Message)
		if h := me.DeskHint(); h != "" {
			text += "\n" + words(h)
		}
	}
	l := v.FieldErr[field]
	if l == nil {
		return false
	}
	l.SetText(text)
	l.Show()
	return true
}

func (v *View) createPlan() {
	v.clearFieldErrors()
	p, err := v.plan()
	if err != nil {
		v.showFieldError(err)
		v.fail("The plan was not sent", errMarked)
		return
	}
	v.Create.Disable()
	var m registry.Migration
	v.run(func(ctx context.Context, svc *migrate.Service) error {
		var err error
		m, err = svc.Create(ctx, p)
		return err
	}, func(err error) {
		v.enableCreate()
		if err != nil {
			// A refusal is said once: under the field at fault when it
			// names one, else on the status line.
			if v.showFieldError(err) {
				err = errMarked
			}
			v.fail("The registry refused the plan", err)
			return
		}
		v.ok(fmt.Sprintf("Planned %q (draft). Read its readiness and dry run before advancing.", m.Name))
		v.Tabs.SelectIndex(0)
		v.load(m.ID)
	})
}

// label is how a migration appears in the selector.
func label(m registry.Migration) string {
	return fmt.Sprintf("%s — %s → %s (%s)", m.Name, m.From, m.To, words(string(m.State)))
}

// load reloads the migration list and selects id (or keeps the selection).
func (v *View) load(id string) {
	if id == "" && v.current != nil {
		id = v.current.ID
	}
	var ms []registry.Migration
	v.run(func(ctx context.Context, svc *migrate.Service) error {
		var err error
		ms, err = svc.List(ctx)
		return err
	}, func(err error) {
		if err != nil {
			v.fail("Could not read the migrations", err)
			return
		}
		v.ms = ms
		opts := make([]string, len(ms))
		sel := ""
		for i, m := range ms {
			opts[i] = label(m)
			if m.ID == id || (id == "" && i == len(ms)-1) {
				sel = opts[i]
			}
		}
		v.Migrations.SetOptions(opts)
		if sel != "" {
			if v.Migrations.Selected == sel {
				v.selectCurrent()
			} else {
				v.Migrations.SetSelected(sel)
			}
		} else {
			v.current = nil
			v.show()
		}
	})
}

func (v *View) selectCurrent() {
	for i := range v.ms {
		if label(v.ms[i]) == v.Migrations.Selected {
			m := v.ms[i]
			v.current = &m
		}
	}
	if v.current == nil {
		return
	}
	id := v.current.ID
	var rd registry.Readiness
	v.run(func(ctx context.Context, svc *migrate.Service) error {
		var err error
		rd, err = svc.Readiness(ctx, id)
		return err
	}, func(err error) {
		if err != nil {
			v.report = nil
			v.show()
			v.fail("Could not read the readiness report", err)
			return
		}
		v.report = &rd
		v.show()
	})
}

// nextState is the step that usually follows m's state.
func nextState(m registry.Migration) string {
	switch m.State {
	case registry.MigrationDraft:
		return "dry_run"
	case registry.MigrationDryRun:
		return "canary"
	case registry.MigrationCanary:
		if len(m.Stages) > 0 {
			return "staged"
		}
		return "complete"
	case registry.MigrationStaged:
		for _, p := range m.Stages {
			if p > m.Percent {
				return "staged"
			}
		}
		return "complete"
	}
	return ""
}

// show renders the current migration and its report.
func (v *View) show() {
	m := v.current
	acts := []*widget.Button{v.Advance, v.Halt, v.Rollback, v.ExportBtn}
	if m == nil {
		v.Summary.SetText("No migration selected. Plan one in the New plan tab (admins).")
		v.Chart.SetTotals(nil)
		v.Reasons.SetText("")
		for _, b := range acts {
			b.Disable()
		}
		v.enableSteps()
		v.relayout()
		return
	}
	s := fmt.Sprintf("%s: %s → %s. State %s, stage %s; %s on %s.", m.Name, m.From, m.To, words(string(m.State)), words(m.Stage), uikit.Count(m.CutOver, "user", "users"), m.To)
	if m.Halted {
		s += " HALTED: " + m.HaltReason + "."
	}
	s += fmt.Sprintf(" Halts at %g%% of a cohort failing.", 100*m.Policy.HaltThreshold)
	v.Summary.SetText(s)
	v.StepTo.SetSelected(stepWords(nextState(*m)))
	v.Resume.SetChecked(m.Halted)
	v.enableSteps()
	if v.report == nil || v.report.MigrationID != m.ID {
		v.Chart.SetTotals(nil)
		v.Reasons.SetText("")
		v.ExportBtn.Disable()
		v.relayout()
		return
	}
	v.ExportBtn.Enable()
	v.Chart.SetTotals(v.report.Totals)
	var lines []string
	for _, t := range v.report.Totals {
		var rs []string
		for r, n := range t.Reasons {
			rs = append(rs, fmt.Sprintf("%s %d", reason(r), n))
		}
		sort.Strings(rs)
		line := fmt.Sprintf("%s: %d of %d ready", t.Cohort, t.Ready, t.Users)
		if len(rs) > 0 {
			line += "; blocked: " + strings.Join(rs, ", ")
		}
		lines = append(lines, line)
	}
	v.Reasons.SetText(strings.Join(lines, "\n"))
	v.relayout()
}

// enableSteps enables the step buttons that can help the selected
// migration now, and says why the others are disabled.
func (v *View) enableSteps() {
	if v.Advance == nil {
		return
	}
	m := v.current
	var why []string
	set := func(b *widget.Button, ok bool, reason string) {
		if ok {
			b.Enable()
			return
		}
		b.Disable()
		if reason != "" && !slices.Contains(why, reason) {
			why = append(why, reason)
		}
	}
	switch {
	case m == nil:
		for _, b := range []*widget.Button{v.Advance, v.Halt, v.Rollback} {
			set(b, false, "")
		}
		why = append(why, "Pick a migration first.")
	default:
		finished := m.State == registry.MigrationComplete || m.State == registry.MigrationRolledBack
		reasoned := strings.TrimSpace(v.Reason.Text) != ""
		ended := "This migration has ended (" + words(string(m.State)) + ")."
		switch {
		case finished:
			set(v.Advance, false, ended)
		case m.Halted && !v.Resume.Checked:
			set(v.Advance, false, "Advancing a halted migration needs \"resume after a halt\" ticked.")
		default:
			set(v.Advance, true, "")
		}
		switch {
		case finished:
			set(v.Halt, false, ended)
		case m.Halted:
			set(v.Halt, false, "It is halted already.")
		default:
			set(v.Halt, reasoned, "Halting and rolling back need a reason, kept in the audit log.")
		}
		if m.State == registry.MigrationRolledBack {
			set(v.Rollback, false, ended)
		} else {
			set(v.Rollback, reasoned, "Halting and rolling back need a reason, kept in the audit log.")
		}
	}
	v.StepsNote.SetText(strings.Join(why, " "))
}

func (v *View) advanceStep() migrate.Step {
	p, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v.Percent.Text, "%")), 64)
	return migrate.Step{Action: "advance", To: registry.MigrationState(stepState(v.StepTo.Selected)), Percent: p, Resume: v.Resume.Checked}
}

// preview reads who step would touch and asks to confirm it.
func (v *View) preview(st migrate.Step) {
	if v.current == nil || !v.canAct {
		return
	}
	if st.Action != "advance" && strings.TrimSpace(st.Reason) == "" {
		v.fail("Say why first", errors.New("a halt or roll back needs a reason, kept in the audit log"))
		return
	}
	id := v.current.ID
	var p migrate.Preview
	v.run(func(ctx context.Context, svc *migrate.Service) error {
		var err error
		p, err = svc.Preview(ctx, id, st)
		return err
	}, func(err error) {
		if err != nil {
			v.fail("Could not read who this step would move", err)
			return
		}
		v.confirm(id, p)
	})
}

func names(us []registry.UserReadiness, why bool) []string {
	var out []string
	for _, u := range us {
		n := u.ExternalID
		if n == "" {
			n = u.UserID
		}
		if why && len(u.Reasons) > 0 {
			rs := make([]string, len(u.Reasons))
			for i, r := range u.Reasons {
				rs[i] = reason(r)
			}
			n += " (" + strings.Join(rs, ", ") + ")"
		}
		out = append(out, n)
	}
	return out
}

// ConfirmText is what the confirmation of p says: the step, then exactly
// who it moves.
func ConfirmText(p migrate.Preview) string {
	var b strings.Builder
	b.WriteString(p.Summary())
	section := func(title string, ns []string) {
		if len(ns) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n\n%s (%d):\n%s", title, len(ns), strings.Join(ns, ", "))
	}
	section("Cut over to "+p.Migration.To, names(p.CutOver, false))
	section("Moved back to "+p.Migration.From, names(p.MovedBack, false))
	section("Held back on "+p.Migration.From, names(p.HeldBack, true))
	section("WITHOUT A VALID CREDENTIAL", p.LockedOut)
	return b.String()
}

func (v *View) confirm(id string, p migrate.Preview) {
	body := widget.NewLabel(ConfirmText(p))
	body.Wrapping = fyne.TextWrapWord
	action := map[string]string{"advance": "Advance", "halt": "Halt", "rollback": "Roll back"}[p.Step.Action]
	var d dialog.Dialog
	v.Confirm = widget.NewButton(action, func() {
		d.Hide()
		v.Confirm = nil
		v.take(id, p.Step)
	})
	// Advancing is the plan going ahead; halting and rolling back are the
	// destructive steps, red.
	v.Confirm.Importance = widget.HighImportance
	if p.Step.Action != "advance" {
		v.Confirm.Importance = widget.DangerImportance
	}
	cancel := widget.NewButton("Cancel", func() { d.Hide(); v.Confirm = nil })
	scroll := container.NewVScroll(body)
	scroll.SetMinSize(fyne.NewSize(480, 220))
	// Enter confirms and Escape cancels while no button has the focus.
	confirm := v.Confirm
	keys := uikit.NewKeyCatcher(scroll, confirm.OnTapped, cancel.OnTapped)
	cd := dialog.NewCustomWithoutButtons(action+" "+p.Migration.Name+"?", keys, v.env.Window)
	cd.SetButtons([]fyne.CanvasObject{cancel, v.Confirm})
	d = cd
	v.confirmDialog = d
	v.lastStep = &p
	d.Show()
	v.env.Window.Canvas().Focus(keys)
}

func (v *View) take(id string, st migrate.Step) {
	var res migrate.Result
	v.run(func(ctx context.Context, svc *migrate.Service) error {
		var err error
		res, err = svc.Do(ctx, id, st)
		return err
	}, func(err error) {
		if err != nil {
			v.fail("The registry refused the step", err)
			v.load(id)
			return
		}
		m := res.Migration
		switch st.Action {
		case "advance":
			v.ok(fmt.Sprintf("%s is in %s: %s cut over, %d held back.", m.Name, m.Stage, uikit.Count(res.CutOver, "user", "users"), len(res.HeldBack)))
		case "halt":
			v.ok(fmt.Sprintf("%s halted: %s.", m.Name, m.HaltReason))
		case "rollback":
			v.ok(fmt.Sprintf("%s rolled back: %s back on %s.", m.Name, uikit.Count(res.Reverted, "user", "users"), m.From))
		}
		v.load(id)
	})
}

func (v *View) exportDialog() {
	if v.current == nil {
		return
	}
	id := v.current.ID
	d := dialog.NewFileSave(func(w fyne.URIWriteCloser, err error) {
		if err != nil || w == nil {
			return
		}
		v.exportCSV(id, w)
	}, v.env.Window)
	d.SetFileName("readiness-" + id + ".csv")
	d.Show()
}

// exportCSV writes the readiness report as CSV to w and closes it.
func (v *View) exportCSV(id string, w io.WriteCloser) {
	v.run(func(ctx context.Context, svc *migrate.Service) error {
		err := svc.ReadinessCSV(ctx, id, w)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		return err
	}, func(err error) {
		if err != nil {
			v.fail("The CSV was not written", err)
			return
		}
		v.ok("Readiness exported as CSV.")
	})
}

// visible says whether the screen is on show (UI goroutine).
func (v *View) visible() bool {
	if v.root == nil || !v.root.Visible() {
		return false
	}
	return fyne.CurrentApp().Driver().CanvasForObject(v.root) != nil
}

// watch polls the change feed for halts while the window is open, and
// skips polls while the screen is not visible.
func (v *View) watch() {
	every := PollEvery // read here, on the UI goroutine
	v.env.Go(func(ctx context.Context) error {
		v.pollOnce(ctx)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			var on bool
			uikit.DoAndWait(func() { on = v.visible() })
			if on {
				v.pollOnce(ctx)
			}
		}
	}, nil)
}

// pollOnce reads halts since the last poll and shows them in the banner.
func (v *View) pollOnce(ctx context.Context) {
	c, err := v.env.Registry(ctx)
	if err != nil {
		return // the status line already says why on the next load
	}
	svc := migrate.New(c)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.watcher == nil {
		// Follow from now: halts before the screen opened show in the
		// summary of their migration.
		v.watcher, _ = svc.Watch(ctx)
		return
	}
	alerts, err := v.watcher.Poll(ctx)
	if err != nil || len(alerts) == 0 {
		return
	}
	var lines []string
	for _, a := range alerts {
		lines = append(lines, a.Message())
	}
	uikit.Do(func() {
		v.Banner.SetText(strings.Join(lines, "\n"))
		v.bannerBox.Show()
		v.relayout()
		v.load("")
	})
}
