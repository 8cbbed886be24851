package uikit

import (
	"errors"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"

	"github.com/keydesk/keydesk/app/settings"
)

// press sends a key to whatever has the keyboard focus, as the window
// does for a key a person presses.
func press(t *testing.T, w fyne.Window, k fyne.KeyName) {
	t.Helper()
	f := w.Canvas().Focused()
	if f == nil {
		t.Fatalf("nothing has the keyboard focus for %s", k)
	}
	f.TypedKey(&fyne.KeyEvent{Name: k})
}

func newWindow(t *testing.T) fyne.Window {
	a := test.NewApp()
	t.Cleanup(a.Quit)
	w := a.NewWindow("t")
	w.Resize(fyne.NewSize(800, 600))
	return w
}

func open(w fyne.Window) int { return len(w.Canvas().Overlays().List()) }

// TestEnterAndEscapeCloseMessages: an error dialog and an information
// dialog (About, a temporary access pass) close on Enter and on Escape.
func TestEnterAndEscapeCloseMessages(t *testing.T) {
	for _, k := range []fyne.KeyName{fyne.KeyReturn, fyne.KeyEnter, fyne.KeyEscape} {
		w := newWindow(t)
		ShowError("Listing keys", errors.New("the card was removed"), w)
		if open(w) != 1 {
			t.Fatal("no dialog")
		}
		press(t, w, k)
		if open(w) != 0 {
			t.Errorf("%s did not close the error dialog", k)
		}
		ShowInfo("About keydesk", "keydesk dev", w)
		press(t, w, k)
		if open(w) != 0 {
			t.Errorf("%s did not close the information dialog", k)
		}
	}
}

// TestEscapeCancelsConfirmations: Escape in a confirmation's entry closes
// it without confirming; Escape in a PIN dialog answers "not given".
func TestEscapeCancelsConfirmations(t *testing.T) {
	w := newWindow(t)
	confirmed := 0
	ConfirmSerial(w, 12345678, "Reset FIDO2", "Every credential on the key is deleted.", func() { confirmed++ })
	test.Type(w.Canvas().Focused(), "12345678")
	press(t, w, fyne.KeyEscape)
	if confirmed != 0 || open(w) != 0 {
		t.Fatalf("after Escape: confirmed %d, %d dialogs open", confirmed, open(w))
	}
	ConfirmSerial(w, 12345678, "Reset FIDO2", "Every credential on the key is deleted.", func() { confirmed++ })
	test.Type(w.Canvas().Focused(), "12345678")
	press(t, w, fyne.KeyReturn)
	if confirmed != 1 || open(w) != 0 {
		t.Fatalf("after Enter: confirmed %d, %d dialogs open", confirmed, open(w))
	}

	var answered, gave bool
	AskSecrets(w, "Change PIN", []string{"Current PIN", "New PIN"}, func(v []string, ok bool) { answered, gave = true, ok })
	test.Type(w.Canvas().Focused(), "123")
	press(t, w, fyne.KeyEscape)
	if !answered || gave || open(w) != 0 {
		t.Fatalf("Escape in a PIN dialog: answered %v, ok %v, %d dialogs open", answered, gave, open(w))
	}
}

// TestWindowShortcutsPassAFocusedEntry: Ctrl+3 typed while an entry has
// the focus (Fyne gives the entry every shortcut) reaches the window's
// shortcut; copy and paste stay the entry's.
func TestWindowShortcutsPassAFocusedEntry(t *testing.T) {
	w := newWindow(t)
	e := NewEntry()
	w.SetContent(e)
	got := ""
	for _, k := range []fyne.KeyName{fyne.Key3, fyne.KeyR} {
		k := k
		w.Canvas().AddShortcut(&desktop.CustomShortcut{KeyName: k, Modifier: fyne.KeyModifierShortcutDefault}, func(fyne.Shortcut) { got += string(k) })
	}
	w.Canvas().Focus(e)
	e.TypedShortcut(&desktop.CustomShortcut{KeyName: fyne.Key3, Modifier: fyne.KeyModifierShortcutDefault})
	e.TypedShortcut(&desktop.CustomShortcut{KeyName: fyne.KeyR, Modifier: fyne.KeyModifierShortcutDefault})
	if got != "3R" {
		t.Fatalf("window shortcuts run: %q, want 3R", got)
	}
	test.Type(e, "abc")
	e.TypedShortcut(&fyne.ShortcutSelectAll{})
	clip := test.NewClipboard()
	e.TypedShortcut(&fyne.ShortcutCopy{Clipboard: clip})
	if clip.Content() != "abc" {
		t.Fatalf("copy in the entry gave %q", clip.Content())
	}
}

// TestSettingsErrorsInWords: a settings problem names the field as the
// Settings screen does, not by its JSON name.
func TestSettingsErrorsInWords(t *testing.T) {
	msg := Message(settings.Default().ReadyToEnrol())
	if strings.Contains(msg, "helpdesk_recipients") || !strings.Contains(msg, "Helpdesk recipients (Settings): none is set") {
		t.Fatalf("message: %q", msg)
	}
	s := settings.Default()
	s.RPID, s.MinPINLength = "", 2
	msg = Message(s.Validate())
	if strings.Contains(msg, "rp_id") || strings.Contains(msg, "min_pin_length") || !strings.Contains(msg, "RP id (Settings):") || !strings.Contains(msg, "Minimum PIN length (Settings):") {
		t.Fatalf("message: %q", msg)
	}
}

// TestClosedDialogsLeaveNoEntryFocused: a dialog closed by Enter or Escape
// in one of its entries takes the focus from that entry. Fyne drops the
// dialog's focus without telling the entry, whose cursor would go on
// blinking off screen, repainting the window for as long as the app runs.
func TestClosedDialogsLeaveNoEntryFocused(t *testing.T) {
	a := test.NewApp()
	defer a.Quit()
	w := a.NewWindow("t")
	w.Resize(fyne.NewSize(800, 600))
	focused := func(what string) *Entry {
		t.Helper()
		e, ok := w.Canvas().Focused().(*Entry)
		if !ok || !e.Focused() {
			t.Fatalf("%s: no entry has the focus", what)
		}
		return e
	}

	ConfirmSerial(w, 12345678, "Reset FIDO2", "Every credential on the key is deleted.", func() {})
	e := focused("confirm")
	test.Type(e, "12345678")
	e.OnSubmitted(e.Text)
	if e.Focused() {
		t.Error("the serial's entry keeps the focus after Enter confirmed and closed its dialog")
	}

	for _, close := range []string{"Enter", "Escape"} {
		f := AskSecrets(w, "Change PIN", []string{"New PIN"}, func([]string, bool) {})
		e := focused(close)
		test.Type(e, "246810")
		if close == "Enter" {
			e.OnSubmitted(e.Text)
		} else {
			e.TypedKey(&fyne.KeyEvent{Name: fyne.KeyEscape})
		}
		if !f.closed {
			t.Fatalf("%s did not close the dialog", close)
		}
		if e.Focused() {
			t.Errorf("the PIN entry keeps the focus after %s closed its dialog", close)
		}
	}
}
