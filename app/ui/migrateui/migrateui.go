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
func (v *View) Settle() { v.busy.Wait() }

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
	return uikit.Message(err)
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
	v.StepTo = widget.NewSelect([]string{"dry_run", "canary", "staged", "complete"}, nil)
	v.Percent = uikit.NewEntry()
	v.Percent.SetPlaceHolder("next planned")
	v.Resume = widget.NewCheck("resume after a halt", nil)
	v.Reason = uikit.NewEntry()
	v.Reason.SetPlaceHolder("reason (halt, roll back)")
	v.Advance = widget.NewButtonWithIcon("Advance…", theme.MediaPlayIcon(), func() { v.preview(v.advanceStep()) })
	v.Halt = widget.NewButtonWithIcon("Halt…", theme.MediaPauseIcon(), func() { v.preview(migrate.Step{Action: "halt", Reason: v.Reason.Text}) })
	v.Rollback = widget.NewButtonWithIcon("Roll back…", theme.MediaReplayIcon(), func() { v.preview(migrate.Step{Action: "rollback", Reason: v.Reason.Text}) })
	v.Rollback.Importance = widget.DangerImportance

	steps := container.NewVBox(
		widget.NewLabelWithStyle("Steps", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		container.NewGridWithColumns(3, v.StepTo, v.Percent, v.Resume),
		v.Reason,
		container.NewHBox(v.Advance, v.Halt, v.Rollback),
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
	v.Name = e("YubiKey 5 rollout")
	v.From = e("legacy-2024")
	v.To = e("yk5-2026")
	v.ScopeAll = widget.NewCheck("everyone", nil)
	v.ScopeAll.SetChecked(true)
	v.ScopeUsers = e("users (ids or external ids, comma-separated)")
	v.ScopeGroups = e("groups, comma-separated")
	v.CanaryUsers = e("users (ids or external ids, comma-separated)")
	v.CanaryGroups = e("groups, comma-separated")
	v.CanaryPercent = e("percent of the scope, e.g. 1")
	v.Stages = e("staged percentages before complete, e.g. 10, 50")
	v.MinB = e("1")
	v.Backup = widget.NewCheck("a backup key is required", nil)
	v.MaxAge = e("30")
	v.Grace = e("24")
	v.Threshold = e("1")
	for _, f := range []string{"name", "from_set", "to_set", "scope", "canary", "stages", "policy"} {
		l := widget.NewLabel("")
		l.Importance = widget.DangerImportance
		l.Wrapping = fyne.TextWrapWord
		l.Hide()
		v.FieldErr[f] = l
	}
	v.Create = widget.NewButtonWithIcon("Create plan", theme.ContentAddIcon(), v.createPlan)
	v.Create.Importance = widget.HighImportance
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
	return container.NewVScroll(container.NewVBox(form, container.NewHBox(v.Create)))
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

// fieldError is a form value the desk cannot read, before the registry
// sees it.
type fieldError struct{ field, msg string }

func (e fieldError) Error() string { return e.field + ": " + e.msg }

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
		field, text = me.Field, me.Message
		if me.Hint() != "" {
			text += "\n" + me.Hint()
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
		v.fail("The plan was not sent", err)
		return
	}
	v.Create.Disable()
	var m registry.Migration
	v.run(func(ctx context.Context, svc *migrate.Service) error {
		var err error
		m, err = svc.Create(ctx, p)
		return err
	}, func(err error) {
		v.Create.Enable()
		if err != nil {
			v.showFieldError(err)
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
	return fmt.Sprintf("%s — %s → %s (%s)", m.Name, m.From, m.To, m.State)
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
		v.relayout()
		return
	}
	s := fmt.Sprintf("%s: %s → %s. State %s, stage %s; %s on %s.", m.Name, m.From, m.To, m.State, m.Stage, uikit.Count(m.CutOver, "user", "users"), m.To)
	if m.Halted {
		s += " HALTED: " + m.HaltReason + "."
	}
	s += fmt.Sprintf(" Halts at %g%% of a cohort failing.", 100*m.Policy.HaltThreshold)
	v.Summary.SetText(s)
	finished := m.State == registry.MigrationComplete || m.State == registry.MigrationRolledBack
	v.StepTo.SetSelected(nextState(*m))
	v.Resume.SetChecked(m.Halted)
	for _, b := range acts[:3] {
		if finished {
			b.Disable()
		} else {
			b.Enable()
		}
	}
	if m.State == registry.MigrationComplete {
		v.Rollback.Enable()
	}
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
			rs = append(rs, fmt.Sprintf("%s %d", r, n))
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

func (v *View) advanceStep() migrate.Step {
	p, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v.Percent.Text, "%")), 64)
	return migrate.Step{Action: "advance", To: registry.MigrationState(v.StepTo.Selected), Percent: p, Resume: v.Resume.Checked}
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
			n += " (" + strings.Join(u.Reasons, ", ") + ")"
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
	v.Confirm.Importance = widget.DangerImportance
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
	v.env.Go(func(ctx context.Context) error {
		v.pollOnce(ctx)
		t := time.NewTicker(PollEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			var on bool
			fyne.DoAndWait(func() { on = v.visible() })
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
	fyne.Do(func() {
		v.Banner.SetText(strings.Join(lines, "\n"))
		v.bannerBox.Show()
		v.relayout()
		v.load("")
	})
}
