package uikit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/registry/client"
)

// hinter is an error that carries a plain-language next step (device,
// registry and app errors do).
type hinter interface{ Hint() string }

// deskHinter is an error whose next step, for the command line, names a
// command: DeskHint says it in the desktop app's words (its screens and
// buttons), which Message prefers.
type deskHinter interface{ DeskHint() string }

// Message is what a person reads for err: what happened, then what to do
// next when the error knows.
func Message(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	var fe *settings.FieldError
	var fes settings.Errors
	switch {
	case errors.As(err, &fes):
		lines := make([]string, len(fes))
		for i, e := range fes {
			lines[i] = e.Label() + " (Settings): " + e.Plain()
		}
		msg = strings.Join(lines, "\n")
	case errors.As(err, &fe):
		msg = fe.Label() + " (Settings): " + fe.Plain()
	}
	var dh deskHinter
	var h hinter
	if errors.As(err, &dh) && dh.DeskHint() != "" {
		msg += "\n\n" + dh.DeskHint()
	} else if errors.As(err, &h) && h.Hint() != "" {
		msg += "\n\n" + h.Hint()
	} else if hint := device.Hint(err); hint != "" {
		msg += "\n\n" + hint
	} else if rh := registryHint(err); rh != "" {
		msg += "\n\n" + rh
	}
	return msg
}

// registryHint is the next step for a registry that could not be used.
func registryHint(err error) string {
	if _, ok := client.Storage(err); ok {
		return "The registry answered but its storage took nothing; ask its operator to fix it, then try again."
	}
	switch {
	case errors.Is(err, client.ErrUnreachable):
		return "Check the network and that the registry is running (its address is in Settings), then try again."
	case errors.Is(err, ErrNoRegistry):
		return "Set the registry's address and token in Settings, then try again."
	}
	return ""
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
