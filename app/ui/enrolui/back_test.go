package enrolui

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/ui/verifyui"
	"github.com/keydesk/keydesk/registry"
)

// TestWizardBackEveryStep: Back goes a step back wherever the key is not
// being changed — from the key step to the user, from the checks and from
// the FIDO2 PIN to the key step, from the PIV PIN to the FIDO2 PIN (the
// enrolment starts again on the same key) — and no Back ends the
// enrolment or changes the key. The backup step says the next key becomes
// the user's BACKUP; the result offers Verify now, which opens Verify with
// the key enrolled chosen. No touch prompt stands beside a PIN request.
func TestWizardBackEveryStep(t *testing.T) {
	h := newHarness(t)
	eve := uniq("u-eve")
	addUser(t, eve, "Eve Example")
	w, f := h.openWizard(eve)
	back := func(want string) {
		t.Helper()
		h.ui(func() {
			if !w.back.Visible() || w.back.Disabled() {
				t.Fatalf("no Back at step %q", w.step)
			}
			test.Tap(w.back)
		})
		f.await(want)
	}
	// The key step → the user step, the search kept; Enter goes on again.
	back(stepUser)
	f.await("users-loaded")
	h.ui(func() {
		if w.search.Text != eve || w.back.Visible() {
			t.Fatalf("back at step 1: search %q, Back shown %v", w.search.Text, w.back.Visible())
		}
		h.win.Canvas().Focus(w.search)
	})
	h.press(fyne.KeyReturn)
	f.await(stepKey)
	h.waitKeyListed(w, h.serials[0])
	h.chooseKey(w, h.serials[0])
	h.press(fyne.KeyReturn)
	f.await("checks-passed")
	// The checks → the key step; no result, nothing changed.
	back(stepKey)
	h.chooseKey(w, h.serials[0])
	h.press(fyne.KeyReturn)
	f.await("checks-passed")
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.FIDO2PIN))
	// The FIDO2 PIN → the key step.
	back(stepKey)
	h.chooseKey(w, h.serials[0])
	h.press(fyne.KeyReturn)
	f.await("checks-passed")
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.FIDO2PIN))
	h.choosePIN("correct horse", "correct horse")
	f.await("pin:" + string(enrol.PIVPIN))
	// The PIV PIN → the FIDO2 PIN, through the checks of the same key.
	back("checks-passed")
	h.ui(func() {
		if w.serial != h.serials[0] {
			t.Fatalf("back from the PIV PIN went on with key %d, not %d", w.serial, h.serials[0])
		}
	})
	for _, st := range w.trail.states() {
		if st == stepResult {
			t.Fatalf("a Back ended the enrolment: trail %v", w.trail.states())
		}
	}
	ctx := context.Background()
	if k, err := fx.Keys.Find(ctx, h.serials[0]); err != nil || !fresh(ctx, k) {
		t.Fatalf("the key after going back: fresh=%v, %v", err == nil && fresh(ctx, k), err)
	}
	if un := h.unfinished(); len(un) != 0 {
		t.Fatalf("journal after going back: %+v", un)
	}
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.FIDO2PIN))
	h.choosePIN("correct horse", "correct horse")
	f.await("pin:" + string(enrol.PIVPIN))
	h.choosePIN("246810", "246810")
	f.await("key-done")
	f.await(stepBackup)
	h.ui(func() {
		if !strings.Contains(w.backupNote.Text, "becomes Eve Example's BACKUP key") || w.back.Visible() {
			t.Fatalf("backup step: %q (Back shown %v)", w.backupNote.Text, w.back.Visible())
		}
	})
	h.press(fyne.KeyEscape) // Not now
	f.await(stepResult)

	// Verify now: Verify opens with the key just enrolled chosen.
	var vv *verifyui.View
	h.ui(func() {
		h.env.Open = func(id string) bool {
			if id != "verify" {
				return false
			}
			if vv == nil {
				vv = verifyui.New(h.env)
			}
			h.win.SetContent(vv.Root)
			return true
		}
	})
	h.ui(func() {
		if len(w.results) != 1 || w.results[0].Status != registry.KeyActive {
			t.Fatalf("result: %s", w.resultText.Text)
		}
		w.finish(w.results, nil) // again, now that there is a shell to open Verify in
		want := fmt.Sprintf("Verify key %d now", h.serials[0])
		if !w.verifyNow.Visible() || w.verifyNow.Text != want {
			t.Fatalf("Verify now: shown %v, %q", w.verifyNow.Visible(), w.verifyNow.Text)
		}
		test.Tap(w.verifyNow)
	})
	f.await("verify-opened")
	h.ui(func() {
		if vv == nil || !strings.Contains(vv.Key.Selected, fmt.Sprint(h.serials[0])) {
			t.Fatalf("Verify opened with %q chosen", vv.Key.Selected)
		}
		// A touch prompt left from an earlier request goes when a PIN is
		// asked for.
		h.win.SetContent(w.root)
		w.onTouch(h.serials[0])
		w.onNewPIN(enrol.PINRequest{Kind: enrol.FIDO2PIN, Serial: h.serials[0], MinLength: 8, MaxLength: 63}, 1, func(string, error) {})
		if w.touch.box.Visible() {
			t.Fatal("a touch prompt beside the PIN request")
		}
	})
}

// focusLogCanvas is the headless test canvas with the desktop driver's
// focus rule: focus for an object that is not in the window's content or
// overlays is refused and logged (fyne.io/fyne/v2/internal/driver/common
// Canvas.Focus), where the test canvas refuses it silently.
type focusLogCanvas struct {
	fyne.Canvas
}

func (c focusLogCanvas) Focus(obj fyne.Focusable) {
	in := func(root fyne.CanvasObject) bool {
		found := false
		var walk func(o fyne.CanvasObject)
		walk = func(o fyne.CanvasObject) {
			if o == nil || found {
				return
			}
			if o == obj.(fyne.CanvasObject) {
				found = true
				return
			}
			if c, ok := o.(*fyne.Container); ok {
				for _, x := range c.Objects {
					walk(x)
				}
				return
			}
			if wd, ok := o.(fyne.Widget); ok {
				for _, x := range test.WidgetRenderer(wd).Objects() {
					walk(x)
				}
			}
		}
		walk(root)
		return found
	}
	ok := in(c.Content())
	for _, o := range c.Overlays().List() {
		ok = ok || in(o)
	}
	if !ok {
		fyne.LogError("Failed to focus object which is not part of the canvas’ content, menu or overlays.", nil)
		return
	}
	c.Canvas.Focus(obj)
}

// focusLogWindow is a test window whose canvas is a focusLogCanvas.
type focusLogWindow struct {
	fyne.Window
}

func (w focusLogWindow) Canvas() fyne.Canvas { return focusLogCanvas{w.Window.Canvas()} }

// TestEnrolOpensWithoutFocusError: the shell builds the Enrol screen, then
// puts it in the window; the search gets the keyboard focus once it is
// there, and Fyne logs no "Failed to focus object which is not part of
// the canvas" (as it did on stderr each time Enrol opened). Shown again
// after another screen, the same.
func TestEnrolOpensWithoutFocusError(t *testing.T) {
	h := newHarness(t)
	var buf bytes.Buffer
	log.SetOutput(&buf)
	defer log.SetOutput(os.Stderr)
	win := focusLogWindow{h.win}
	h.env.Window = win
	// The check itself: focus for an object outside the window is logged.
	win.Canvas().Focus(widget.NewEntry())
	if !strings.Contains(buf.String(), "Failed to focus") {
		t.Fatalf("the canvas does not log a refused focus: %q", buf.String())
	}
	buf.Reset()

	// The shell's layout: navigation beside a stack the screen goes in.
	content := container.NewStack()
	h.win.SetContent(container.NewHSplit(widget.NewLabel("navigation"), container.NewPadded(content)))
	var w *wizard
	h.ui(func() {
		w = newWizard(h.env, h.d) // built first, as the shell's Make does …
		obj := fyne.CanvasObject(w.root)
		content.Objects = []fyne.CanvasObject{obj} // … then shown
		content.Refresh()
	})
	if strings.Contains(buf.String(), "Failed to focus") {
		t.Fatalf("opening Enrol logged: %s", buf.String())
	}
	h.ui(func() {
		if h.win.Canvas().Focused() != w.search {
			t.Fatalf("the search does not have the focus (%T has)", h.win.Canvas().Focused())
		}
		// Another screen, then Enrol again.
		other := widget.NewEntry()
		content.Objects = []fyne.CanvasObject{other}
		content.Refresh()
		w.showUser()
		w.root.Shown()
		content.Objects = []fyne.CanvasObject{w.root}
		content.Refresh()
	})
	if strings.Contains(buf.String(), "Failed to focus") {
		t.Fatalf("a step shown while Enrol was not on screen logged: %s", buf.String())
	}
}
