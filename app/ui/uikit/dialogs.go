package uikit

import (
	"fmt"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/device"
)

// hinter is an error that carries a plain-language next step (device,
// registry and app errors do).
type hinter interface{ Hint() string }

// deskHinter is an error whose next step, for the command line, names a
// command: DeskHint says it in the desktop app's words (its screens and
// buttons), which Message prefers.
type deskHinter interface{ DeskHint() string }

// deviceHint is the device layer's next step for err.
var deviceHint = device.Hint

// Message is what a person reads for err: what happened (Plain: never a
// library's own text), then what to do next when that is known
// (NextStep).
func Message(err error) string {
	if err == nil {
		return ""
	}
	msg := Plain(err)
	if next := NextStep(err); next != "" {
		msg += "\n\n" + next
	}
	return msg
}

// ShowError shows err with its next step in a dialog on w; Enter and
// Escape close it.
func ShowError(title string, err error, w fyne.Window) {
	ShowInfo(title, Message(err), w)
}

// ConfirmSerial asks before a destructive step on one key: the action
// button stays disabled until the person has typed the key's serial, and
// onConfirm runs on the UI goroutine only after they pressed it. Enter in
// the field confirms once the serial matches; Escape cancels.
func ConfirmSerial(w fyne.Window, serial uint32, action, consequence string, onConfirm func()) dialog.Dialog {
	want := strconv.FormatUint(uint64(serial), 10)
	entry := NewEntry()
	entry.SetPlaceHolder("serial " + want)
	body := wrapLabel(fmt.Sprintf("%s on the key with serial %s.\n%s\n\nType the serial to confirm.", action, want, consequence))
	var d *dialog.CustomDialog
	matches := func() bool { return strings.TrimSpace(entry.Text) == want }
	do := widget.NewButton(action, func() {
		if matches() {
			d.Hide()
			onConfirm()
		}
	})
	do.Importance = widget.DangerImportance
	do.Disable()
	cancel := widget.NewButton("Cancel", func() { d.Hide() })
	entry.OnChanged = func(string) {
		if matches() {
			do.Enable()
		} else {
			do.Disable()
		}
	}
	entry.OnSubmitted = func(string) { do.OnTapped() }
	entry.OnEscape = cancel.OnTapped
	d = dialog.NewCustomWithoutButtons(action+"?", container.NewVBox(body, entry), w)
	d.SetButtons([]fyne.CanvasObject{cancel, do})
	UnfocusOnClose(d, entry)
	d.Show()
	w.Canvas().Focus(entry)
	return d
}

// UnfocusOnClose takes the keyboard focus from a dialog's entries when d
// closes. Fyne drops a dialog's focus manager with the dialog without
// telling the object that held the focus: an entry focused at that moment
// (the one Enter was pressed in) goes on blinking its cursor, off screen,
// which repaints the whole window some fifteen times a second for as long
// as the app runs, and keeps the Go heap churning (docs/desktop-app.md,
// "Memory after the round").
func UnfocusOnClose(d dialog.Dialog, entries ...*Entry) {
	d.SetOnClosed(func() {
		for _, e := range entries {
			if e.Focused() {
				e.FocusLost()
			}
		}
	})
}

func wrapLabel(s string) *widget.Label {
	l := widget.NewLabel(s)
	l.Wrapping = fyne.TextWrapWord
	return l
}

// KeyLabel names a key in a picker: model and serial, and VIRTUAL for a
// practice key.
func KeyLabel(k device.Key) string {
	s := fmt.Sprintf("%s · serial %d", k.Model, k.Serial)
	if k.Virtual {
		s += " · VIRTUAL"
	}
	return s
}

// FillKeyPicker lists keys in sel. The key with serial keep stays chosen
// while it is attached, whatever else comes and goes; otherwise the first
// key is chosen, or none when the list is empty.
func FillKeyPicker(sel *widget.Select, keys []device.Key, keep uint32) {
	opts := make([]string, len(keys))
	chosen := -1
	for i, k := range keys {
		opts[i] = KeyLabel(k)
		if keep != 0 && k.Serial == keep {
			chosen = i
		}
	}
	sel.SetOptions(opts)
	switch {
	case len(opts) == 0:
		sel.ClearSelected()
	case chosen >= 0:
		sel.SetSelectedIndex(chosen)
	default:
		sel.SetSelectedIndex(0)
	}
}
