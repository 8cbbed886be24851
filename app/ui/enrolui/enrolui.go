// Package enrolui is the desktop face of enrolment (app/enrol): the Enrol
// wizard, which walks one user's primary and backup key through enrolment a
// step per screen, and the Batch screen, which enrols a CSV roster
// (app/roster) user after user. The terminal face of the same use case is
// app/cli's enrol command; both drive an enrol.Enroller through enrol.UI
// callbacks.
//
// The callbacks run on the enrolment goroutine. They hand each request to
// the UI goroutine with fyne.Do and wait for the answer on a channel, or for
// the run's context to end, so the window never waits on a key and Cancel
// works at every step. PINs are typed into password entries, passed to the
// enroller and cleared from the entry; nothing here logs or keeps them.
//
// Who sees what: the Enrol wizard is for admins and the helpdesk. The
// helpdesk enrols replacement and backup keys for users already in the
// registry; only an admin can add a new user from the wizard's first step
// (the user is created with their first key, enrol.Request.CreateUser, as
// keydesk enrol --user ID --name NAME does). The Batch screen is for admins
// only: a roster creates the users it names, which is an admin's decision.
package enrolui

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/registry/client"
)

// Config adjusts the screens.
type Config struct {
	// JournalPath is the enrolment journal; enrol's default (in the desk's
	// data directory) when empty.
	JournalPath string
	// RegistryWait is how long an enrolment waits for a registry that
	// cannot be reached before it stops and leaves the key under
	// "Unfinished enrolments" (enrol.Config.RegistryWait): zero is
	// enrol.DefaultRegistryWait, 30 s, the default of keydesk enrol's
	// --registry-wait; negative does not wait.
	RegistryWait time.Duration
}

// Screens returns the Enrol wizard (ID "enrol", admins and the helpdesk)
// and the Batch enrolment screen (ID "batch", admins).
func Screens() []uikit.Screen { return ScreensWith(Config{}) }

// ScreensWith is Screens with cfg.
func ScreensWith(cfg Config) []uikit.Screen {
	d := &desk{cfg: cfg}
	return []uikit.Screen{
		{ID: "enrol", Title: "Enrol", Icon: theme.ContentAddIcon(), Roles: []uikit.Role{uikit.Admin, uikit.Helpdesk},
			Make: func(env *uikit.Env) fyne.CanvasObject { return newWizard(env, d).root }},
		{ID: "batch", Title: "Batch enrolment", Icon: theme.ListIcon(), Roles: []uikit.Role{uikit.Admin},
			Make: func(env *uikit.Env) fyne.CanvasObject { return newBatch(env, d).root }},
	}
}

// pinChoices is how many times enrolment lets a person choose a PIN that
// meets the policy before it gives up (app/enrol's askPIN).
const pinChoices = 3

// touchWindow is how long a YubiKey waits for a touch on a FIDO2 request
// before it gives up (about 30 s; CTAP 2.1 leaves the time to the key).
const touchWindow = 30 * time.Second

// desk is what the two screens of one app share: one enrolment at a time.
// UI changes made from background goroutines go through uikit.Do, which
// keeps them one after another.
type desk struct {
	cfg Config

	mu   sync.Mutex
	busy string // the screen running an enrolment, "" when none

	// changed is closed (and replaced) whenever a screen took up a new list
	// of attached keys from the feed.
	changedMu sync.Mutex
	changed   chan struct{}

	// hook, when set (tests), sees every progress event on the enrolment
	// goroutine before the UI does.
	hook func(enrol.Event)
}

// do runs f on the UI goroutine. Call it only from background goroutines.
func (d *desk) do(f func()) {
	uikit.Do(f)
}

// keysChanged tells waitNewKey that the feed brought a new list. A
// screen calls it after taking the list up.
func (d *desk) keysChanged() {
	d.changedMu.Lock()
	defer d.changedMu.Unlock()
	if d.changed != nil {
		close(d.changed)
		d.changed = nil
	}
}

func (d *desk) nextChange() <-chan struct{} {
	d.changedMu.Lock()
	defer d.changedMu.Unlock()
	if d.changed == nil {
		d.changed = make(chan struct{})
	}
	return d.changed
}

// waitNewKey waits until feed lists a key, both its interfaces visible,
// that was not attached when it was called, or until ctx ends. The
// enroller then checks the key with the key already read: a second reader
// of a key that has just arrived (the enroller's own watch beside the
// desk's) can find its FIDO interface busy and pass over it.
func (d *desk) waitNewKey(ctx context.Context, feed *uikit.KeyFeed) error {
	if feed == nil {
		return nil
	}
	before := map[uint32]bool{}
	for _, k := range feed.Current() {
		if !k.SerialUnknown && k.Reader != "" && k.FIDOPath != "" {
			before[k.Serial] = true
		}
	}
	for {
		next := d.nextChange()
		for _, k := range feed.Current() {
			if !k.SerialUnknown && k.Reader != "" && k.FIDOPath != "" && !before[k.Serial] {
				return nil
			}
		}
		select {
		case <-next:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// claim marks screen as running an enrolment; it fails when the other
// screen runs one.
func (d *desk) claim(screen string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.busy != "" && d.busy != screen {
		return fmt.Errorf("an enrolment is running on the %s screen: finish or cancel it first", d.busy)
	}
	d.busy = screen
	return nil
}

func (d *desk) release(screen string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.busy == screen {
		d.busy = ""
	}
}

// run does work off the UI goroutine (env.Go) and calls done on it.
func (d *desk) run(env *uikit.Env, work func(ctx context.Context) error, done func(error)) context.CancelFunc {
	return env.Go(work, done)
}

// enroller opens an enroller with the desk's current settings and registry.
func (d *desk) enroller(ctx context.Context, env *uikit.Env) (*enrol.Enroller, error) {
	s := env.Settings()
	if err := s.ReadyToEnrol(); err != nil {
		return nil, err
	}
	if env.Registry == nil {
		return nil, uikit.ErrNoRegistry
	}
	reg, err := env.Registry(ctx)
	if err != nil {
		return nil, err
	}
	prov, err := d.providers(s, reg)
	if err != nil {
		return nil, err
	}
	en, err := enrol.New(enrol.Config{Settings: s, Keys: env.Keys, Registry: reg, JournalPath: d.cfg.JournalPath, RegistryWait: d.cfg.RegistryWait, IDP: prov})
	if err != nil {
		prov.Close()
	}
	return en, err
}

// providers opens the identity providers the settings name, with their
// outbox beside the enrolment journal; nil when none is configured.
func (d *desk) providers(s settings.Settings, reg *client.Client) (*idp.Orchestrator, error) {
	if len(s.Providers) == 0 {
		return nil, nil
	}
	dir := filepath.Dir(d.cfg.JournalPath)
	if d.cfg.JournalPath == "" {
		var err error
		if dir, err = regconn.DefaultDataDir(); err != nil {
			return nil, err
		}
	}
	return idp.OpenDesk(s.Providers, secrets.Default(), reg, filepath.Join(dir, idp.OutboxFile))
}

// asker is a screen's side of enrol.UI. Its methods run on the UI
// goroutine and must not block; each answer func is called at most once.
type asker interface {
	onProgress(ev enrol.Event)
	onNewPIN(r enrol.PINRequest, try int, answer func(string, error))
	onPIN(r enrol.PINRequest, answer func(string, error))
	onTouch(serial uint32)
	onInsert(r enrol.InsertRequest)
	onConfirm(question string, answer func(bool, error))
}

// bridge turns a's UI-goroutine methods into enrol.UI callbacks for the
// enrolment goroutine. feed is the desk's list of attached keys.
func (d *desk) bridge(a asker, feed *uikit.KeyFeed) enrol.UI {
	var mu sync.Mutex
	tries := map[enrol.PINKind]int{}
	return enrol.UI{
		Progress: func(ev enrol.Event) {
			if d.hook != nil {
				d.hook(ev)
			}
			d.do(func() { a.onProgress(ev) })
		},
		NewPIN: func(ctx context.Context, r enrol.PINRequest) (string, error) {
			mu.Lock()
			if r.Problem == "" {
				tries[r.Kind] = 0
			}
			tries[r.Kind]++
			try := tries[r.Kind]
			mu.Unlock()
			return ask(ctx, d, func(answer func(string, error)) { a.onNewPIN(r, try, answer) })
		},
		PIN: func(ctx context.Context, r enrol.PINRequest) (string, error) {
			return ask(ctx, d, func(answer func(string, error)) { a.onPIN(r, answer) })
		},
		Touch: func(_ context.Context, serial uint32) {
			d.do(func() { a.onTouch(serial) })
		},
		InsertKey: func(ctx context.Context, r enrol.InsertRequest) error {
			// The screen shows what is attached meanwhile; a key
			// arriving in the feed ends the wait, and the enroller
			// checks it.
			d.do(func() { a.onInsert(r) })
			return d.waitNewKey(ctx, feed)
		},
		Confirm: func(ctx context.Context, q string) (bool, error) {
			return ask(ctx, d, func(answer func(bool, error)) { a.onConfirm(q, answer) })
		},
	}
}

// ask shows a question on the UI goroutine and waits for its answer or for
// ctx to end.
func ask[T any](ctx context.Context, d *desk, show func(answer func(T, error))) (T, error) {
	type reply struct {
		v   T
		err error
	}
	ch := make(chan reply, 1)
	d.do(func() {
		show(func(v T, err error) {
			select {
			case ch <- reply{v, err}:
			default:
			}
		})
	})
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// keyEntry is an entry that also reports Escape (Enter is OnSubmitted) and
// lets the window's shortcuts through.
type keyEntry = uikit.Entry

func newKeyEntry(password bool, placeholder string) *keyEntry {
	e := uikit.NewEntry()
	if password {
		e = uikit.NewPasswordEntry()
	}
	e.PlaceHolder = placeholder
	return e
}

// keyCatcher holds the keyboard focus on steps without an entry, so Enter
// advances and Escape cancels there too. It is also the screen's root, so
// it tells the screen when it is laid out in a window or shown again
// (onPlaced), the moments a focus asked for earlier can be given.
type keyCatcher struct {
	widget.BaseWidget
	child    fyne.CanvasObject
	onKey    func(fyne.KeyName)
	onPlaced func()
}

func newKeyCatcher(child fyne.CanvasObject, onKey func(fyne.KeyName)) *keyCatcher {
	k := &keyCatcher{child: child, onKey: onKey}
	k.ExtendBaseWidget(k)
	return k
}

func (k *keyCatcher) CreateRenderer() fyne.WidgetRenderer {
	return &placedRenderer{WidgetRenderer: widget.NewSimpleRenderer(k.child), k: k}
}

// Shown is uikit.Revisited: the shell calls it just before it puts the
// screen back in the window, so onPlaced runs once that is done.
func (k *keyCatcher) Shown() {
	if k.onPlaced != nil {
		uikit.Do(k.onPlaced)
	}
}

// placedRenderer lays the catcher's child out, then tells the catcher.
type placedRenderer struct {
	fyne.WidgetRenderer
	k *keyCatcher
}

func (r *placedRenderer) Layout(size fyne.Size) {
	r.WidgetRenderer.Layout(size)
	if r.k.onPlaced != nil && !size.IsZero() {
		r.k.onPlaced()
	}
}

// inCanvas reports whether obj is in c's content or overlays now, as far
// as containers, splits and scrolls show it (the shell's layout). A
// screen built but not yet put in the window, or replaced by another, is
// not: Fyne's desktop canvas refuses focus for such an object and logs
// "Failed to focus object which is not part of the canvas".
func inCanvas(c fyne.Canvas, obj fyne.CanvasObject) bool {
	var find func(o fyne.CanvasObject) bool
	find = func(o fyne.CanvasObject) bool {
		if o == nil {
			return false
		}
		if o == obj {
			return true
		}
		switch x := o.(type) {
		case *fyne.Container:
			for _, c := range x.Objects {
				if find(c) {
					return true
				}
			}
		case *container.Split:
			return find(x.Leading) || find(x.Trailing)
		case *container.Scroll:
			return find(x.Content)
		case *keyCatcher:
			return find(x.child)
		}
		return false
	}
	if c == nil {
		return false
	}
	if find(c.Content()) {
		return true
	}
	for _, o := range c.Overlays().List() {
		if find(o) {
			return true
		}
	}
	return false
}
func (k *keyCatcher) FocusGained()   {}
func (k *keyCatcher) FocusLost()     {}
func (k *keyCatcher) TypedRune(rune) {}
func (k *keyCatcher) TypedKey(ev *fyne.KeyEvent) {
	if k.onKey != nil {
		k.onKey(ev.Name)
	}
}

// enterList is a list on which Enter and Escape do what they do on the
// step around it (Next and Cancel): a click on a row gives the list the
// keyboard focus, and Fyne's list ignores both keys. The arrows and Space
// still move and choose.
type enterList struct {
	widget.List
	onKey func(fyne.KeyName)
}

func newEnterList(onKey func(fyne.KeyName), length func() int, create func() fyne.CanvasObject, update func(widget.ListItemID, fyne.CanvasObject)) *enterList {
	l := &enterList{onKey: onKey}
	l.Length, l.CreateItem, l.UpdateItem = length, create, update
	l.ExtendBaseWidget(l)
	return l
}

func (l *enterList) TypedKey(ev *fyne.KeyEvent) {
	if (isEnter(ev.Name) || ev.Name == fyne.KeyEscape) && l.onKey != nil {
		l.onKey(ev.Name)
		return
	}
	l.List.TypedKey(ev)
}

// isEnter reports whether name is one of the keyboard's Enter keys.
func isEnter(name fyne.KeyName) bool { return name == fyne.KeyReturn || name == fyne.KeyEnter }

// keyLine describes an attached key in one line.
func keyLine(k device.Key) string {
	if k.SerialUnknown {
		return fmt.Sprintf("%s (serial unreadable)", k.Model)
	}
	s := fmt.Sprintf("%d · %s · firmware %s", k.Serial, k.Model, k.Firmware)
	if k.FIDOPath == "" || k.Reader == "" {
		s += " · only partly visible (FIDO2 and PIV both needed)"
	}
	return s
}

// keyRow is a key in a list: its line and, for a practice key, a VIRTUAL
// badge.
func newKeyRow() fyne.CanvasObject {
	badge := widget.NewLabelWithStyle("VIRTUAL", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	badge.Importance = widget.WarningImportance
	return container.NewHBox(widget.NewIcon(theme.ComputerIcon()), widget.NewLabel(""), badge)
}

func setKeyRow(o fyne.CanvasObject, k device.Key) {
	box := o.(*fyne.Container)
	box.Objects[1].(*widget.Label).SetText(keyLine(k))
	if k.Virtual {
		box.Objects[2].Show()
	} else {
		box.Objects[2].Hide()
	}
}

// keysView lists keys (from the feed) as rows, with VIRTUAL badges.
func keysView(ks []device.Key) fyne.CanvasObject {
	box := container.NewVBox()
	for _, k := range ks {
		r := newKeyRow()
		setKeyRow(r, k)
		box.Add(r)
	}
	if len(ks) == 0 {
		box.Add(widget.NewLabel("No key is attached."))
	}
	return box
}

func wrapped(s string) *widget.Label {
	l := widget.NewLabel(s)
	l.Wrapping = fyne.TextWrapWord
	return l
}

func heading(s string) *widget.Label {
	l := widget.NewLabelWithStyle(s, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	l.Wrapping = fyne.TextWrapWord
	return l
}

// outcome says, for an enrolment that ended with err, what happened and in
// what state the key was left, with the next step at this desk.
func outcome(err error, serial uint32) string {
	var ie *enrol.InterruptedError
	var re *enrol.RegisteredError
	switch {
	case errors.As(err, &ie):
		what := fmt.Sprintf("Enrolment of key %d stopped at stage %q: %s", ie.Serial, ie.Stage, uikit.Plain(ie.Err))
		if errors.Is(ie.Err, context.Canceled) {
			what = fmt.Sprintf("Enrolment of key %d was cancelled at stage %q.", ie.Serial, ie.Stage)
		}
		return what + "\n\n" + stageState(ie.Serial, ie.Stage)
	case errors.As(err, &re):
		return uikit.Message(err)
	case errors.Is(err, context.Canceled):
		if serial == 0 {
			return "Cancelled. No key was changed and nothing was registered."
		}
		return fmt.Sprintf("Cancelled before key %d was changed: it is as it was, and nothing was registered.", serial)
	case errors.Is(err, enrol.ErrPINPolicy):
		return err.Error() + "\n\nThe key was not changed. Start again and choose a PIN that meets the policy."
	}
	return uikit.Message(err)
}

// stageState is the state a key stopped at stage is in, and what to do
// next from this desk (the journal keeps what is needed to finish).
func stageState(serial uint32, st enrol.Stage) string {
	switch st {
	case enrol.StageDevice, enrol.StageSealed:
		return fmt.Sprintf("Key %d is half set up and nothing was registered. Its new PUK and management key are sealed "+
			"to the helpdesk in the enrolment journal. Reset its PIV and FIDO2 applications (Keys screen), then enrol it again.", serial)
	case enrol.StagePrepared, enrol.StageQueued:
		return fmt.Sprintf("Key %d is set up and tested but not registered: the registration waits in this desk's outbox "+
			"and the journal. Keep the key. When the registry is back, resume it under \"Unfinished enrolments\" on the Enrol screen.", serial)
	case enrol.StageActive:
		return fmt.Sprintf("Key %d is enrolled and active.", serial)
	}
	return fmt.Sprintf("Key %d is registered but not active yet. Insert it and resume it under \"Unfinished enrolments\" on the Enrol screen.", serial)
}

// resumable reports whether a journalled enrolment at st can be finished
// by Resume.
func resumable(st enrol.Stage) bool {
	return st != enrol.StageDevice && st != enrol.StageSealed && st != enrol.StageActive
}

// stepNames are the enrolment stages shown in progress, in order.
var stepNames = []struct {
	step  enrol.Step
	label string
}{
	{enrol.StepGenuine, "Genuine YubiKey: a key made on it, attested by its factory key"},
	{enrol.StepFIDO2PIN, "FIDO2 PIN set, minimum length raised to policy"},
	{enrol.StepFIDO2, "The organisation's FIDO2 credential"},
	{enrol.StepSignIn, "Test sign-in with the new credential"},
	{enrol.StepPIV, "PIV: random PUK and management key, sealed to the helpdesk"},
	{enrol.StepCert, "PIV certificate"},
	{enrol.StepRegister, "Registered in the registry"},
	{enrol.StepEscrow, "Sealed PUK and management key stored"},
	{enrol.StepActivate, "Activated: the key signed the registry's challenge"},
	{enrol.StepProviders, "Registered with the identity providers"},
}

func stepIndex(s enrol.Step) int {
	for i, n := range stepNames {
		if n.step == s {
			return i
		}
	}
	if s == enrol.StepDone {
		return len(stepNames)
	}
	return -1
}

// stagesView shows enrolment progress: a bar and one row per stage.
type stagesView struct {
	bar    *widget.ProgressBar
	rows   []*widget.Label
	labels []string
	box    *fyne.Container
	at     int
}

// newStagesView shows the stages of an enrolment whose keys are also
// registered with the identity providers named (none: the registry only).
func newStagesView(providers []string) *stagesView {
	v := &stagesView{bar: widget.NewProgressBar(), box: container.NewVBox(), at: -1}
	v.bar.Max = float64(len(stepNames))
	v.box.Add(v.bar)
	for _, n := range stepNames {
		label := n.label
		if n.step == enrol.StepProviders {
			label = providersLabel(providers)
		}
		v.labels = append(v.labels, label)
		l := widget.NewLabel("○  " + label)
		v.rows = append(v.rows, l)
		v.box.Add(l)
	}
	return v
}

// providersLabel names the identity providers every key is registered
// with, for the stages and the batch screen.
func providersLabel(providers []string) string {
	if len(providers) == 0 {
		return "Identity providers: none configured (the registry only)"
	}
	return "Registered with the identity providers: " + strings.Join(providers, ", ")
}

// providerNames are the settings' identity providers, by name.
func providerNames(s settings.Settings) []string {
	var out []string
	for _, p := range s.Providers {
		out = append(out, p.Name)
	}
	return out
}

func (v *stagesView) reset() {
	v.at = -1
	v.bar.SetValue(0)
	for i := range stepNames {
		v.rows[i].SetText("○  " + v.labels[i])
		v.rows[i].Importance = widget.MediumImportance
		v.rows[i].Refresh()
	}
}

// reached marks every stage before s done and s running.
func (v *stagesView) reached(s enrol.Step) {
	i := stepIndex(s)
	if i < 0 {
		return
	}
	for j := range v.rows {
		mark, imp := "○  ", widget.MediumImportance
		switch {
		case j < i:
			mark, imp = "✓  ", widget.SuccessImportance
		case j == i:
			mark, imp = "▶  ", widget.HighImportance
		}
		v.rows[j].SetText(mark + v.labels[j])
		v.rows[j].Importance = imp
		v.rows[j].Refresh()
	}
	v.at = i
	v.bar.SetValue(float64(i))
}

// failed marks the running stage as where it stopped.
func (v *stagesView) failed() {
	if v.at >= 0 && v.at < len(v.rows) {
		v.rows[v.at].SetText("✗  " + v.labels[v.at])
		v.rows[v.at].Importance = widget.DangerImportance
		v.rows[v.at].Refresh()
	}
}

// touchPanel asks for a touch with a countdown of the key's wait.
type touchPanel struct {
	d     *desk
	box   *fyne.Container
	label *widget.Label
	bar   *widget.ProgressBar
	stop  chan struct{}
	// relayout lays the panel's screen out again after it shows or hides.
	relayout func()
}

func newTouchPanel(d *desk) *touchPanel {
	p := &touchPanel{d: d, label: heading(""), bar: widget.NewProgressBar()}
	p.bar.Max = touchWindow.Seconds()
	p.bar.TextFormatter = func() string { return fmt.Sprintf("%.0f s left", p.bar.Value) }
	p.box = container.NewVBox(container.NewBorder(nil, nil, widget.NewIcon(theme.WarningIcon()), nil, p.label), p.bar)
	p.box.Hide()
	return p
}

// show starts the countdown for key serial. UI goroutine.
func (p *touchPanel) show(serial uint32) {
	p.hide()
	p.label.SetText(fmt.Sprintf("Touch key %d now: its light is blinking.", serial))
	p.bar.SetValue(touchWindow.Seconds())
	p.box.Show()
	if p.relayout != nil {
		p.relayout()
	}
	stop := make(chan struct{})
	p.stop = stop
	end := time.Now().Add(touchWindow)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				left := end.Sub(now).Round(time.Second)
				if left < 0 {
					left = 0
				}
				p.d.do(func() {
					if p.stop != stop {
						return
					}
					p.bar.SetValue(left.Seconds())
					if left == 0 {
						p.label.SetText("The key stopped waiting for a touch.")
					}
				})
				if left == 0 {
					return
				}
			}
		}
	}()
}

// hide ends the countdown. UI goroutine.
func (p *touchPanel) hide() {
	if p.stop != nil {
		close(p.stop)
		p.stop = nil
	}
	if p.box.Visible() {
		p.box.Hide()
		if p.relayout != nil {
			p.relayout()
		}
	}
}

// pinForm is where a person chooses a PIN (typed twice) or types an
// existing one.
type pinForm struct {
	title   *widget.Label
	rule    *widget.Label
	problem *widget.Label
	// check says, as the person types a new PIN, whether it meets the
	// rules yet.
	check *widget.Label
	pin   *keyEntry
	again *keyEntry
	box   *fyne.Container

	win    fyne.Window
	req    enrol.PINRequest
	isNew  bool
	answer func(string, error)
}

func newPINForm(win fyne.Window, onEscape func()) *pinForm {
	f := &pinForm{win: win, title: heading(""), rule: wrapped(""), problem: wrapped(""), check: wrapped(""),
		pin: newKeyEntry(true, "PIN"), again: newKeyEntry(true, "the same PIN again")}
	f.problem.Importance = widget.DangerImportance
	f.check.Hide() // shown while a new PIN is typed
	f.pin.OnChanged = func(string) { f.live() }
	f.pin.OnEscape, f.again.OnEscape = onEscape, onEscape
	f.pin.OnSubmitted = func(string) {
		if f.isNew && f.again.Text == "" {
			f.focus(f.again)
			return
		}
		f.submit()
	}
	f.again.OnSubmitted = func(string) { f.submit() }
	f.box = container.NewVBox(f.title, f.rule, f.problem,
		widget.NewForm(widget.NewFormItem("PIN", f.pin), widget.NewFormItem("Again", f.again)), f.check)
	return f
}

func (f *pinForm) focus(e fyne.Focusable) {
	if f.win != nil && inCanvas(f.win.Canvas(), f.box) {
		f.win.Canvas().Focus(e)
	}
}

// ask shows request r (try of pinChoices for a new PIN, 0 for an existing
// one).
func (f *pinForm) ask(r enrol.PINRequest, isNew bool, try int, answer func(string, error)) {
	f.req, f.isNew, f.answer = r, isNew, answer
	f.pin.SetText("")
	f.again.SetText("")
	who := ""
	if r.User != "" {
		who = " for " + r.User
	}
	if isNew {
		f.title.SetText(fmt.Sprintf("Choose the %s%s on key %d", r.Kind, who, r.Serial))
		f.again.Show()
	} else {
		f.title.SetText(fmt.Sprintf("Type the %s of key %d", r.Kind, r.Serial))
		f.again.Hide()
	}
	switch r.Kind {
	case enrol.FIDO2PIN:
		f.rule.SetText(fmt.Sprintf("Policy: at least %d characters (at most %d bytes). The user types it to sign in; the key itself enforces the minimum from now on.", r.MinLength, r.MaxLength))
	default:
		f.rule.SetText(fmt.Sprintf("%d to %d characters, not the factory PIN 123456. It unlocks the key's certificate (smart-card sign-in).", r.MinLength, r.MaxLength))
	}
	f.problem.SetText("")
	f.live()
	if r.Problem != "" {
		f.problem.SetText(fmt.Sprintf("%s. The key was not changed; choose another PIN (%d more %s before the enrolment stops).",
			capital(r.Problem), pinChoices-try, plural(pinChoices-try, "choice", "choices")))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// localProblem is what is wrong with a new PIN that the request's rules
// already tell (too short, too long, the factory PIN). It is shown at once
// and the PIN is never handed to the enrolment, so a typo costs none of
// the choices the enrolment allows and never reaches the key.
func (f *pinForm) localProblem(pin string) string {
	if !f.isNew {
		return ""
	}
	r := f.req
	switch r.Kind {
	case enrol.PIVPIN:
		switch {
		case len(pin) < r.MinLength || len(pin) > r.MaxLength:
			return fmt.Sprintf("a PIV PIN is %d to %d characters; this one has %d", r.MinLength, r.MaxLength, len(pin))
		case pin == "123456":
			return "that is the factory PIN; choose another"
		}
	default:
		switch n := utf8.RuneCountInString(pin); {
		case n < r.MinLength:
			return fmt.Sprintf("the PIN must be at least %d characters; this one has %d", r.MinLength, n)
		case r.MaxLength > 0 && len(pin) > r.MaxLength:
			return fmt.Sprintf("the PIN must be at most %d bytes", r.MaxLength)
		}
	}
	return ""
}

// live says under the entries whether the PIN typed so far meets the
// rules.
func (f *pinForm) live() {
	if !f.isNew || f.pin.Text == "" {
		f.check.SetText("")
		f.check.Hide()
		return
	}
	if p := f.localProblem(f.pin.Text); p != "" {
		f.check.Importance = widget.WarningImportance
		f.check.SetText("Not yet: " + p + ".")
	} else {
		f.check.Importance = widget.SuccessImportance
		f.check.SetText("✓ Meets the rules.")
	}
	f.check.Show()
}

func capital(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// submit hands the PIN over when both entries agree, and forgets it.
func (f *pinForm) submit() {
	if f.answer == nil {
		return
	}
	pin := f.pin.Text
	if f.isNew && pin != f.again.Text {
		f.problem.SetText("The two PINs differ. Type the PIN again in both fields.")
		f.pin.SetText("")
		f.again.SetText("")
		f.focus(f.pin)
		return
	}
	if pin == "" {
		f.problem.SetText("Type the PIN first.")
		return
	}
	if p := f.localProblem(pin); p != "" {
		f.problem.SetText(capital(p) + ". Nothing was sent to the key and this does not count as a try; type another PIN.")
		f.pin.SetText("")
		f.again.SetText("")
		f.focus(f.pin)
		return
	}
	answer := f.answer
	f.answer = nil
	f.pin.SetText("")
	f.again.SetText("")
	answer(pin, nil)
}

// reset clears the form of everything the last request put in it.
func (f *pinForm) reset() {
	f.clear()
	f.req = enrol.PINRequest{}
	for _, l := range []*widget.Label{f.title, f.rule, f.problem, f.check} {
		l.SetText("")
	}
	f.check.Hide()
}

// clear drops any pending request and typed text.
func (f *pinForm) clear() {
	f.answer = nil
	f.pin.SetText("")
	f.again.SetText("")
}
