package helpdeskui

import (
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
)

// PINDialog asks for a new PIN, typed twice, under the rule it must meet.
// The rule is shown before anything is typed and checked as the person
// types; the dialog closes only on a PIN that meets it, so nothing is
// opened, sent or audited for a PIN that would be refused. Tests type into
// Entries and call Submit.
type PINDialog struct {
	Entries []*uikit.Entry
	// Rule is the rule, shown from the start; Check says whether the PIN
	// typed meets it (in the error colour once a PIN was refused).
	Rule, Check *widget.Label
	OK          *widget.Button

	dlg    *dialog.CustomDialog
	check  func(string) string
	done   func(string)
	closed bool
}

// askNewPIN shows the dialog. check returns what is wrong with a PIN, ""
// when it meets the rule; done gets the PIN once it does. The PIN is never
// logged.
func askNewPIN(w fyne.Window, title, rule string, check func(string) string, done func(pin string)) *PINDialog {
	f := &PINDialog{check: check, done: done, Rule: wrapped(rule), Check: wrapped("")}
	f.Check.Hide()
	pin, again := uikit.NewPasswordEntry(), uikit.NewPasswordEntry()
	f.Entries = []*uikit.Entry{pin, again}
	for _, e := range f.Entries {
		e.OnEscape = f.Cancel
	}
	pin.OnChanged = func(string) { f.live() }
	uikit.ChainEntries(w, f.Entries, f.Submit)
	f.OK = widget.NewButtonWithIcon("OK", theme.ConfirmIcon(), f.Submit)
	f.OK.Importance = widget.HighImportance
	cancel := widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), f.Cancel)
	form := widget.NewForm(widget.NewFormItem("New PIN", pin), widget.NewFormItem("Again", again))
	content := container.NewVBox(f.Rule, form, f.Check, container.NewHBox(layout.NewSpacer(), cancel, f.OK))
	f.dlg = dialog.NewCustomWithoutButtons(title, content, w)
	f.dlg.Resize(fyne.NewSize(460, 0))
	uikit.UnfocusOnClose(f.dlg, f.Entries...)
	f.dlg.Show()
	w.Canvas().Focus(pin)
	return f
}

// Open says whether the dialog is still on screen.
func (f *PINDialog) Open() bool { return !f.closed }

// live says under the entries whether the PIN typed so far meets the rule.
func (f *PINDialog) live() {
	pin := f.Entries[0].Text
	if pin == "" {
		f.Check.Hide()
		return
	}
	if p := f.check(pin); p != "" {
		f.Check.Importance = widget.WarningImportance
		f.Check.SetText("Not yet: " + p + ".")
	} else {
		f.Check.Importance = widget.SuccessImportance
		f.Check.SetText("✓ Meets the rule.")
	}
	f.Check.Show()
}

// refuse shows why the PIN cannot be used, in the error colour, and
// empties both entries for another try; nothing has been done.
func (f *PINDialog) refuse(why string) {
	for _, e := range f.Entries {
		e.SetText("")
	}
	f.Check.Importance = widget.DangerImportance
	f.Check.SetText(why + " Nothing was done; type another PIN.")
	f.Check.Show()
	f.Check.Refresh()
}

// Submit hands the PIN over when both entries agree and it meets the
// rule; otherwise the dialog stays open saying why.
func (f *PINDialog) Submit() {
	if f.closed {
		return
	}
	pin := f.Entries[0].Text
	switch {
	case pin == "":
		f.refuse("Type the new PIN first.")
		return
	case pin != f.Entries[1].Text:
		f.refuse("The two PINs differ.")
		return
	}
	if p := f.check(pin); p != "" {
		f.refuse(capital(p) + ".")
		return
	}
	f.closed = true
	for _, e := range f.Entries {
		e.SetText("")
	}
	f.dlg.Hide()
	f.done(pin)
}

// Cancel closes the dialog; nothing is done.
func (f *PINDialog) Cancel() {
	if f.closed {
		return
	}
	f.closed = true
	for _, e := range f.Entries {
		e.SetText("")
	}
	f.dlg.Hide()
}

func wrapped(s string) *widget.Label {
	l := widget.NewLabel(s)
	l.Wrapping = fyne.TextWrapWord
	return l
}

func capital(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
