package enrolui

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/roster"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
)

// maxRosterBytes bounds the roster file read (roster.MaxRows rows of a few
// short fields fit well inside).
const maxRosterBytes = 64 << 20

// Batch states, as the trail records them.
const (
	batchRefused = "refused"
	batchChecked = "checked"
	batchRunning = "running"
	batchInsert  = "insert"
	batchDone    = "done"
)

// batch is the Batch enrolment screen: a roster checked first, then its
// users enrolled one after another with the same prompts as the wizard,
// one row per user, and a final report.
type batch struct {
	env *uikit.Env
	d   *desk

	root   *keyCatcher
	path   *keyEntry
	choose *widget.Button
	check  *widget.Button
	start  *widget.Button
	cancel *widget.Button
	status *widget.Label

	overall *widget.ProgressBar
	current *widget.Label
	prompt  *fyne.Container
	pin     *pinForm
	touch   *touchPanel
	insertN *widget.Label
	insertK *fyne.Container
	insertB fyne.CanvasObject
	rows    *fyne.Container
	report  *widget.Label
	center  *fyne.Container

	ros     *roster.Roster
	batchID string
	users   map[string]*userRow
	keys    []device.Key

	running   bool
	cancelRun context.CancelFunc

	trail trail
}

// userRow is one roster user's line.
type userRow struct {
	e     roster.Entry
	label *widget.Label
	done  []uint32
	now   string
}

func newBatch(env *uikit.Env, d *desk) *batch {
	b := &batch{env: env, d: d, users: map[string]*userRow{}}
	b.path = newKeyEntry(false, "/path/to/roster.csv")
	b.path.OnSubmitted = func(string) { b.validate() }
	b.path.OnEscape = b.doCancel
	b.choose = widget.NewButtonWithIcon("Choose…", theme.FolderOpenIcon(), b.chooseFile)
	b.check = widget.NewButtonWithIcon("Check", theme.ConfirmIcon(), b.validate)
	b.start = widget.NewButtonWithIcon("Start", theme.MediaPlayIcon(), b.run)
	b.start.Importance = widget.HighImportance
	b.start.Disable()
	b.cancel = widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), b.doCancel)
	b.cancel.Disable()
	b.status = wrapped("Choose a roster (CSV: external_id,display_name,email[,groups][,keys]). It is checked before anything starts.")
	b.overall = widget.NewProgressBar()
	b.overall.Hide()
	b.current = heading("")
	b.pin = newPINForm(env.Window, b.doCancel)
	b.touch = newTouchPanel(d)
	b.insertN = heading("")
	b.insertK = container.NewStack()
	b.insertB = container.NewVBox(b.insertN, wrapped("The batch goes on by itself once a factory-fresh key is attached. Attached now:"), b.insertK)
	b.prompt = container.NewStack()
	b.rows = container.NewVBox()
	b.report = wrapped("")
	pathRow := container.NewBorder(nil, nil, widget.NewLabel("Roster"), container.NewHBox(b.choose, b.check), b.path)
	top := container.NewVBox(heading("Batch enrolment"), pathRow, b.status, widget.NewSeparator())
	bottom := container.NewVBox(widget.NewSeparator(), container.NewHBox(layout.NewSpacer(), b.cancel, b.start))
	b.touch.relayout = func() { b.relayout() }
	b.center = container.NewVBox(b.overall, b.current, b.touch.box, b.prompt, b.rows, b.report)
	b.root = newKeyCatcher(container.NewBorder(top, bottom, nil, nil, container.NewVScroll(b.center)), b.key)
	if env.Feed != nil {
		env.Feed.Subscribe(func([]device.Key) {
			go d.do(func() { b.setKeys(env.Feed.Current()) })
		})
	}
	return b
}

func (b *batch) setKeys(ks []device.Key) {
	b.keys = ks
	b.insertK.Objects = []fyne.CanvasObject{keysView(ks)}
	b.insertK.Refresh()
	b.relayout()
	b.d.keysChanged()
	b.trail.add("keys")
}

func (b *batch) key(name fyne.KeyName) {
	switch {
	case isEnter(name):
		if !b.start.Disabled() {
			b.run()
		}
	case name == fyne.KeyEscape:
		b.doCancel()
	}
}

func (b *batch) focus(f fyne.Focusable) {
	if b.env.Window != nil {
		b.env.Window.Canvas().Focus(f)
	}
}

func (b *batch) chooseFile() {
	if b.env.Window == nil {
		return
	}
	fd := dialog.NewFileOpen(func(rc fyne.URIReadCloser, err error) {
		if err != nil || rc == nil {
			return
		}
		b.path.SetText(rc.URI().Path())
		rc.Close()
		b.validate()
	}, b.env.Window)
	fd.SetFilter(storage.NewExtensionFileFilter([]string{".csv", ".CSV"}))
	fd.Show()
}

// validate reads and checks the roster; Start is enabled only for a file
// without a single bad row.
func (b *batch) validate() {
	if b.running {
		return
	}
	path := strings.TrimSpace(b.path.Text)
	b.start.Disable()
	b.ros = nil
	b.rows.RemoveAll()
	b.report.SetText("")
	b.overall.Hide()
	b.current.SetText("")
	if path == "" {
		b.status.SetText("Type the roster's path or choose it.")
		return
	}
	b.status.SetText("Checking " + path + "…")
	var raw []byte
	var ros *roster.Roster
	b.d.run(b.env, func(ctx context.Context) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		raw, err = io.ReadAll(io.LimitReader(f, maxRosterBytes+1))
		if err != nil {
			return err
		}
		if len(raw) > maxRosterBytes {
			return fmt.Errorf("the file is larger than %d MB; split it", maxRosterBytes>>20)
		}
		ros, err = roster.Parse(bytes.NewReader(raw))
		return err
	}, func(err error) {
		b.showChecked(path, raw, ros, err)
	})
}

func (b *batch) showChecked(path string, raw []byte, ros *roster.Roster, err error) {
	b.rows.RemoveAll()
	b.status.Importance = widget.DangerImportance
	defer b.relayout()
	defer b.status.Refresh()
	switch {
	case err != nil:
		var he *roster.HeaderError
		if errors.As(err, &he) {
			b.status.SetText(fmt.Sprintf("%s can't be used: %v. Nothing was started.", path, err))
		} else {
			b.status.SetText(fmt.Sprintf("%s could not be read: %s", path, uikit.Message(err)))
		}
		b.trail.add(batchRefused)
		return
	case len(ros.Errors) > 0:
		b.status.SetText(fmt.Sprintf("%s of %s %s fixing. Nothing was started: fix them and check the file again.", uikit.Count(len(ros.Errors), "row", "rows"), path, verb(len(ros.Errors), "needs", "need")))
		for _, re := range ros.Errors {
			l := wrapped("✗  " + re.Error())
			l.Importance = widget.DangerImportance
			b.rows.Add(l)
		}
		b.trail.add(batchRefused)
		return
	case len(ros.Entries) == 0:
		b.status.SetText(path + " names no users. Nothing was started.")
		b.trail.add(batchRefused)
		return
	}
	b.status.Importance = widget.MediumImportance
	keys := 0
	for _, e := range ros.Entries {
		keys += e.Keys
	}
	also := ""
	if ps := providerNames(b.env.Settings()); len(ps) > 0 {
		also = " Each key is also registered with the identity providers " + strings.Join(ps, ", ") + "."
	}
	b.status.SetText(fmt.Sprintf("%s, %s at most: users who already hold their keys are skipped.%s Press Start (Enter) to begin.", uikit.Count(len(ros.Entries), "user", "users"), uikit.Count(keys, "key", "keys"), also))
	sum := sha256.Sum256(raw)
	b.ros, b.batchID = ros, hex.EncodeToString(sum[:8])
	b.users = map[string]*userRow{}
	for _, e := range ros.Entries {
		r := &userRow{e: e, label: wrapped("")}
		r.now = "waiting"
		b.users[e.ExternalID] = r
		b.rows.Add(r.label)
		b.setRow(r)
	}
	b.start.Enable()
	b.focus(b.root)
	b.trail.add(batchChecked)
}

func (b *batch) setRow(r *userRow) {
	s := fmt.Sprintf("line %d · %s · %s · %s: %s", r.e.Line, r.e.ExternalID, r.e.DisplayName, uikit.Count(r.e.Keys, "key", "keys"), r.now)
	ps := providerNames(b.env.Settings())
	for i, n := range r.done {
		s += fmt.Sprintf("\n    ✓ key %d active (%s)", n, ordinal(i))
		if len(ps) > 0 {
			s += ", registered with " + strings.Join(ps, ", ")
		}
	}
	r.label.SetText(s)
}

func ordinal(i int) string {
	if i == 0 {
		return "first this run"
	}
	return fmt.Sprintf("key %d this run", i+1)
}

// run enrols the checked roster.
func (b *batch) run() {
	if b.ros == nil || b.running {
		return
	}
	if err := b.d.claim("Batch"); err != nil {
		b.status.SetText(err.Error())
		return
	}
	ros, id := b.ros, b.batchID
	b.running = true
	b.start.Disable()
	b.check.Disable()
	b.choose.Disable()
	b.cancel.Enable()
	b.overall.SetValue(0)
	b.overall.Show()
	b.current.SetText("Starting…")
	b.report.SetText("")
	b.focus(b.root)
	b.trail.add(batchRunning)
	var rep *enrol.BatchReport
	var left []*enrol.Record
	ui := b.d.bridge(b, b.env.Feed)
	b.cancelRun = b.d.run(b.env, func(ctx context.Context) error {
		en, err := b.d.enroller(ctx, b.env)
		if err != nil {
			return err
		}
		defer en.Close()
		rep, err = en.Batch(ctx, ros, id, ui)
		if err != nil {
			// Name what an interrupted key was left as.
			ids := map[string]bool{}
			for _, e := range ros.Entries {
				ids[e.ExternalID] = true
			}
			if recs, uerr := en.Unfinished(context.WithoutCancel(ctx)); uerr == nil {
				for _, r := range recs {
					if ids[r.ExternalID] {
						left = append(left, r)
					}
				}
			}
		}
		return err
	}, func(err error) {
		b.d.release("Batch")
		b.running, b.cancelRun = false, nil
		b.finish(rep, left, err)
	})
}

func (b *batch) finish(rep *enrol.BatchReport, left []*enrol.Record, err error) {
	b.touch.hide()
	b.pin.clear()
	b.prompt.RemoveAll()
	b.cancel.Disable()
	b.check.Enable()
	b.choose.Enable()
	b.current.SetText("")
	var s strings.Builder
	if rep != nil {
		for _, u := range rep.Users {
			r := b.users[u.ExternalID]
			if r == nil {
				continue
			}
			r.label.Importance = widget.MediumImportance
			switch {
			case u.Error != "":
				r.now = fmt.Sprintf("FAILED after %d of %s: %s", u.Already+len(u.Keys), uikit.Count(u.Wanted, "key", "keys"), u.Error)
				if u.Hint != "" {
					hint := u.Hint
					if u.DeskHint != "" {
						hint = u.DeskHint
					}
					r.now += "\n    Next step: " + hint
				}
				r.label.Importance = widget.DangerImportance
			case len(u.Keys) == 0 && u.OK():
				r.now = fmt.Sprintf("already holds %s, skipped", uikit.Count(u.Already, "key", "keys"))
			case u.OK():
				r.now = "done"
				if u.Covered {
					r.now += ", covered (primary and backup active)"
				}
				r.label.Importance = widget.SuccessImportance
			default:
				r.now = fmt.Sprintf("incomplete: %d of %s", u.Already+len(u.Keys), uikit.Count(u.Wanted, "key", "keys"))
				r.label.Importance = widget.DangerImportance
			}
			r.done = r.done[:0]
			b.setRow(r)
			for _, k := range u.Keys {
				r.label.SetText(r.label.Text + fmt.Sprintf("\n    ✓ %s key %d: %s", k.Role, k.Serial, k.Status))
			}
			r.label.Refresh()
		}
		fmt.Fprintf(&s, "%s enrolled in this run, %s incomplete.", uikit.Count(rep.Enrolled, "key", "keys"), uikit.Count(rep.Failed, "user", "users"))
		if rep.Failed == 0 && err == nil {
			b.overall.SetValue(b.overall.Max)
		}
	}
	if err != nil {
		if s.Len() > 0 {
			s.WriteString("\n\n")
		}
		if errors.Is(err, context.Canceled) {
			s.WriteString("Cancelled. Users finished so far keep their keys. Run the same file again to go on: finished users are skipped.")
		} else {
			s.WriteString("The batch stopped: " + uikit.Message(err))
		}
		for _, r := range left {
			s.WriteString("\n\n" + fmt.Sprintf("Key %d for %s stopped at %q. ", r.Serial, r.ExternalID, r.Stage) + stageState(r.Serial, r.Stage))
		}
	}
	b.report.SetText(s.String())
	b.relayout()
	b.trail.add(batchDone)
}

// doCancel is Cancel and Escape.
func (b *batch) doCancel() {
	if b.running && b.cancelRun != nil {
		b.current.SetText("Cancelling…")
		b.cancel.Disable()
		b.pin.clear()
		b.cancelRun()
	}
}

// --- enrol.UI, on the UI goroutine ---

func (b *batch) onProgress(ev enrol.Event) {
	defer b.relayout()
	if ev.Total > 0 {
		b.overall.Max = float64(ev.Total)
		v := float64(ev.Done)
		if ev.Step == enrol.StepDone {
			v++
		}
		b.overall.SetValue(v)
	}
	r := b.users[ev.User]
	switch {
	case ev.Step == enrol.StepBatchUser:
		b.current.SetText(fmt.Sprintf("%s (%s)", ev.Detail, ev.User))
		if r != nil {
			r.now = "in progress"
			b.setRow(r)
		}
		return
	case ev.Step == enrol.StepKey:
		b.prompt.RemoveAll()
		if r != nil {
			r.now = fmt.Sprintf("in progress: key %d", ev.Serial)
			b.setRow(r)
		}
	case ev.Step == enrol.StepDone:
		if r != nil {
			r.done = append(r.done, ev.Serial)
			r.now = "in progress"
			b.setRow(r)
		}
	}
	if i := stepIndex(ev.Step); i >= 0 && i < len(stepNames) {
		b.touch.hide()
		b.prompt.RemoveAll()
		who := ev.User
		if r != nil {
			who = r.e.DisplayName
		}
		b.current.SetText(fmt.Sprintf("%s · key %d · %s", who, ev.Serial, stepNames[i].label))
	}
}

func (b *batch) onNewPIN(r enrol.PINRequest, try int, answer func(string, error)) {
	b.pin.ask(r, true, try, answer)
	b.showPrompt(b.pin.box)
	b.focus(b.pin.pin)
	b.trail.add("pin:" + string(r.Kind))
}

func (b *batch) onPIN(r enrol.PINRequest, answer func(string, error)) {
	b.pin.ask(r, false, 0, answer)
	b.showPrompt(b.pin.box)
	b.focus(b.pin.pin)
	b.trail.add("pin:" + string(r.Kind))
}

func (b *batch) onTouch(serial uint32) {
	b.touch.show(serial)
	b.trail.add("touch")
}

func (b *batch) onInsert(r enrol.InsertRequest) {
	what := "a factory-fresh key"
	if r.Role != "" {
		what += " as " + string(r.Role)
	}
	if r.Of > 0 {
		what += fmt.Sprintf(" (key %d of %d)", r.Index, r.Of)
	}
	b.insertN.SetText(fmt.Sprintf("Insert %s for %s.", what, r.User))
	b.insertK.Objects = []fyne.CanvasObject{keysView(b.keys)}
	b.showPrompt(b.insertB)
	b.focus(b.root)
	b.trail.add(batchInsert)
}

// onConfirm: a batch asks no yes/no questions (every roster key is wanted);
// should enrolment ask one, the answer is no.
func (b *batch) onConfirm(_ string, answer func(bool, error)) { answer(false, nil) }

func (b *batch) showPrompt(o fyne.CanvasObject) {
	b.prompt.Objects = []fyne.CanvasObject{container.NewVBox(widget.NewSeparator(), o, widget.NewSeparator())}
	b.relayout()
}

// relayout lays the screen out again after rows or prompts came or went.
func (b *batch) relayout() {
	b.prompt.Refresh()
	b.center.Refresh()
}

// verb is the verb's form for n subjects.
func verb(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
