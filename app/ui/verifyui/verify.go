// Package verifyui is the Verify screen of keydesk's desktop app: it runs
// app/verify's checks on an attached key (a fresh FIDO2 assertion and PIV
// signature over registry challenges, the key's state, any upcoming
// migration) and shows the checklist, green and red rows, each failure with
// its cause and the next step.
package verifyui

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/verify"
	"github.com/keydesk/keydesk/device"
)

// Screen is the Verify screen; every role sees it.
func Screen() uikit.Screen {
	return uikit.Screen{ID: "verify", Title: "Verify", Icon: theme.ConfirmIcon(), Make: func(env *uikit.Env) fyne.CanvasObject { return New(env).Root }}
}

// View is the Verify screen. Its widgets are fields for tests.
type View struct {
	env  *uikit.Env
	keys []device.Key

	Key     *widget.Select
	User    *uikit.Entry
	Run     *widget.Button
	Cancel  *widget.Button
	Touch   *widget.Label
	Summary *widget.Label
	Rows    *fyne.Container
	// Form is the PIN dialog open now (tests type into it).
	Form   *uikit.SecretForm
	Report *verify.Report
	Root   fyne.CanvasObject

	cancel context.CancelFunc
	// about is the serial of the key the summary and rows describe; 0
	// while they describe none.
	about uint32
	// ver is the key-state version (app/keys.State) the verdict is true
	// of: once the key's state moves on, the verdict goes.
	ver uint64
}

// intro is what the summary says while it describes no key.
const intro = "Choose a key and press Verify: the key signs fresh registry challenges and the registry's view of it is checked, as before a migration."

// New builds the Verify screen.
func New(env *uikit.Env) *View {
	v := &View{env: env}
	v.Key = widget.NewSelect(nil, func(string) { v.keyChanged(); v.enable() })
	v.Key.PlaceHolder = "Insert a key"
	v.User = uikit.NewEntry()
	v.User.SetPlaceHolder("who the key should belong to (optional)")
	if env.Role == uikit.Self {
		v.User.SetText(env.User)
		v.User.Disable()
	}
	v.Run = widget.NewButtonWithIcon("Verify", theme.ConfirmIcon(), v.start)
	v.Run.Importance = widget.HighImportance
	v.Cancel = widget.NewButton("Cancel", func() {
		if v.cancel != nil {
			v.cancel()
		}
	})
	v.Cancel.Hide()
	v.Touch = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	v.Touch.Importance = widget.HighImportance
	v.Touch.Hide()
	v.Summary = widget.NewLabel(intro)
	v.Summary.Wrapping = fyne.TextWrapWord
	v.Rows = container.NewVBox()
	form := widget.NewForm(widget.NewFormItem("Key", v.Key), widget.NewFormItem("User", v.User))
	top := container.NewVBox(widget.NewLabelWithStyle("Verify a key", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), form,
		container.NewHBox(v.Run, v.Cancel), v.Touch, v.Summary, widget.NewSeparator())
	v.Root = container.NewBorder(top, nil, nil, nil, container.NewVScroll(v.Rows))
	env.Feed.Subscribe(v.update)
	env.SubscribeStates(v.stateChanged)
	env.Feed.OnChoose(v.choose)
	v.enable()
	return v
}

// stateChanged takes keys whose state changed (a PIN typed wrong in
// another program, a status changed through the registry): a verdict
// about such a key describes a moment that has passed, and goes.
func (v *View) stateChanged(changed []keys.State) {
	for _, st := range changed {
		if v.cancel != nil || v.about != st.Key.Serial || v.ver == 0 || st.Version <= v.ver {
			continue
		}
		v.about, v.ver = 0, 0
		v.Report = nil
		v.Rows.RemoveAll()
		v.Summary.Importance = widget.MediumImportance
		v.Summary.SetText(fmt.Sprintf("Key %d has changed since it was verified; press Verify to check it as it is now.", st.Key.Serial))
	}
}

// choose picks the attached key with serial, as another screen asks
// ("Verify now" after an enrolment).
func (v *View) choose(serial uint32) {
	for i, k := range v.keys {
		if k.Serial == serial {
			v.Key.SetSelectedIndex(i)
			return
		}
	}
}

func (v *View) update(list []device.Key) {
	var was uint32
	if k, ok := v.selected(); ok {
		was = k.Serial
	}
	v.keys = list
	uikit.FillKeyPicker(v.Key, list, was)
	v.enable()
}

// keyChanged forgets a finished verification's summary and rows once
// another key is chosen: they describe a key no longer on screen. A
// verification still running goes on and reports on its own key.
func (v *View) keyChanged() {
	k, ok := v.selected()
	if v.cancel != nil || v.about == 0 || (ok && k.Serial == v.about) {
		return
	}
	v.about = 0
	v.Report = nil
	v.Rows.RemoveAll()
	v.Summary.Importance = widget.MediumImportance
	v.Summary.SetText(intro)
}

func (v *View) enable() {
	if v.cancel == nil && v.Key.SelectedIndex() >= 0 {
		v.Run.Enable()
	} else {
		v.Run.Disable()
	}
}

func (v *View) selected() (device.Key, bool) {
	i := v.Key.SelectedIndex()
	if i < 0 || i >= len(v.keys) {
		return device.Key{}, false
	}
	return v.keys[i], true
}

// start verifies the selected key in the background.
func (v *View) start() {
	k, ok := v.selected()
	if !ok || v.cancel != nil {
		return
	}
	user := strings.TrimSpace(v.User.Text)
	v.Rows.RemoveAll()
	v.Report = nil
	v.Summary.Importance = widget.MediumImportance
	v.Summary.SetText(fmt.Sprintf("Verifying key %d…", k.Serial))
	v.about = k.Serial
	v.Cancel.Show()
	cb := device.Callbacks{
		PIN: func(ctx context.Context, what string) (string, error) {
			vals, err := uikit.AwaitSecrets(ctx, v.env.Window, what, []string{what}, func(f *uikit.SecretForm) { v.Form = f })
			if err != nil {
				return "", err
			}
			return vals[0], nil
		},
		Touch: func(context.Context) {
			uikit.Do(func() {
				v.Touch.SetText(fmt.Sprintf("Touch key %d now: its light is blinking.", k.Serial))
				v.Touch.Show()
			})
		},
	}
	var rep *verify.Report
	var ver uint64
	v.ver = 0
	v.cancel = v.env.Go(func(ctx context.Context) error {
		reg, err := v.env.Registry(ctx)
		if err != nil {
			return err
		}
		release := v.env.HoldKeys()
		jp, _ := enrol.DefaultJournalPath() // none: nothing to store from it
		rep, err = verify.Run(ctx, k, verify.Options{Registry: reg, Keys: v.env.Keys, User: user, Callbacks: cb, EnrolJournal: jp})
		release()
		if t := v.env.States(); err == nil && t != nil {
			// The verdict is true of the key as the verification left it.
			st, _ := t.Refresh(ctx, k.Serial)
			ver = st.Version
		}
		return err
	}, func(err error) {
		v.cancel = nil
		// Another key chosen meanwhile: this outcome is not about it.
		defer v.keyChanged()
		v.Cancel.Hide()
		v.Touch.Hide()
		v.enable()
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, uikit.ErrNotGiven) {
				v.Summary.SetText("Verification canceled; press Verify to start again.")
				return
			}
			v.Summary.Importance = widget.DangerImportance
			v.Summary.SetText("Could not verify key " + strconv.FormatUint(uint64(k.Serial), 10) + ": " + uikit.Message(err))
			return
		}
		v.show(rep)
		v.ver = ver
		if t := v.env.States(); t != nil && ver != 0 {
			if st, ok := t.Get(k.Serial); ok && st.Version > ver {
				v.stateChanged([]keys.State{st}) // changed while the verdict was on its way
			}
		}
	})
}

// show lays out the report: one row per check.
func (v *View) show(r *verify.Report) {
	defer func() { v.Report = r }()
	who := r.ExternalID
	if who == "" {
		who = "nobody the registry knows"
	}
	if r.OK {
		v.Summary.SetText(fmt.Sprintf("Key %d of %s: all checks passed.", r.Serial, who))
		v.Summary.Importance = widget.SuccessImportance
	} else {
		v.Summary.SetText(fmt.Sprintf("Key %d of %s: %s failed. Each red row says why and what to do.", r.Serial, who, uikit.Count(len(r.Failed()), "check", "checks")))
		v.Summary.Importance = widget.DangerImportance
	}
	if r.Escrow != "" {
		v.Summary.SetText(v.Summary.Text + "\n" + r.Escrow)
	}
	v.Summary.Refresh()
	v.Rows.RemoveAll()
	for _, c := range r.Checks {
		v.Rows.Add(Row(c))
	}
}

// Row is one check as a row: a coloured status, the check's name and what
// was found; a failure adds its cause, the mismatch and the next step.
func Row(c verify.Check) fyne.CanvasObject {
	status := widget.NewLabelWithStyle(strings.ToUpper(string(c.Status)), fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	icon := widget.NewIcon(theme.ConfirmIcon())
	switch c.Status {
	case verify.Pass:
		status.Importance = widget.SuccessImportance
		icon.SetResource(theme.NewSuccessThemedResource(theme.ConfirmIcon()))
	case verify.Fail:
		status.Importance = widget.DangerImportance
		icon.SetResource(theme.NewErrorThemedResource(theme.CancelIcon()))
	case verify.Warn:
		status.Importance = widget.WarningImportance
		icon.SetResource(theme.NewWarningThemedResource(theme.WarningIcon()))
	default:
		status.Importance = widget.LowImportance
		icon.SetResource(theme.InfoIcon())
	}
	text := c.Detail
	if c.Status == verify.Fail && c.Cause != "" {
		text = c.Cause
	}
	lines := []string{text}
	if c.Mismatch != "" {
		lines = append(lines, "Mismatch: "+c.Mismatch)
	}
	if next := c.NextDesk; next != "" && c.Status != verify.Pass {
		// The desktop app's own words: its screens and buttons.
		lines = append(lines, "Next: "+next)
	} else if c.Next != "" && c.Status != verify.Pass {
		lines = append(lines, "Next: "+c.Next)
	}
	body := widget.NewLabel(strings.Join(lines, "\n"))
	body.Wrapping = fyne.TextWrapWord
	name := widget.NewLabelWithStyle(c.Name, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	head := container.NewHBox(icon, status, name)
	return container.NewVBox(head, body, widget.NewSeparator())
}
