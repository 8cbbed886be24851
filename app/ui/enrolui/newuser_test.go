package enrolui

import (
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/registry"
)

// openStep1 shows the Enrol screen and types search into the user search.
func (h *harness) openStep1(search string) (*wizard, *follower) {
	h.t.Helper()
	var w *wizard
	h.ui(func() {
		w = newWizard(h.env, h.d)
		h.win.SetContent(w.root)
	})
	f := &follower{t: h.t, tr: &w.trail}
	f.await("users-loaded")
	h.ui(func() { h.win.Canvas().Focus(w.search) })
	h.typeText(search)
	return w, f
}

// TestWizardNewUser: an admin searches for someone not in the registry,
// is offered New user, leaves the display name empty (told so, beside the
// field), fills it in, enrols the primary key and declines the backup; the
// registry then holds the user as typed, with one active key. A second
// attempt with the same external id is refused on the form.
func TestWizardNewUser(t *testing.T) {
	h := newHarness(t)
	grace := uniq("u-grace")
	w, f := h.openStep1(grace)
	h.ui(func() {
		if !strings.Contains(w.userNote.Text, "New user") || !w.newUserBtn.Visible() {
			t.Fatalf("no user matches, but New user is not offered: %q", w.userNote.Text)
		}
	})
	// Enter on a search that finds nobody opens the form, the search
	// already in the external id.
	h.press(fyne.KeyReturn)
	f.await(stepNewUser)
	h.ui(func() {
		if w.nuExt.Text != grace || w.title.Text != "Step 1 of 5 · New user" {
			t.Fatalf("form: ext %q, title %q", w.nuExt.Text, w.title.Text)
		}
	})
	// The display name left empty.
	h.press(fyne.KeyReturn)
	f.await("newuser-invalid")
	h.ui(func() {
		if !w.nuNameErr.Visible() || !strings.Contains(w.nuNameErr.Text, "display name is required") || w.nuExtErr.Visible() {
			t.Fatalf("empty name: %q (ext problem shown: %v)", w.nuNameErr.Text, w.nuExtErr.Visible())
		}
		if h.win.Canvas().Focused() != w.nuName {
			t.Fatal("the focus is not on the field to fix")
		}
	})
	h.typeText("G")
	h.ui(func() {
		// Fixed as soon as the field holds a name, not at the next Next.
		if w.nuNameErr.Visible() {
			t.Fatalf("%q still shown under a filled display name", w.nuNameErr.Text)
		}
	})
	h.typeText("race Hopper")
	h.ui(func() {
		test.Tap(w.nuEmail)
		h.win.Canvas().Focus(w.nuEmail)
	})
	h.typeText(grace + "@example.org")
	h.ui(func() { h.win.Canvas().Focus(w.nuGroups) })
	h.typeText("engineering, oncall")
	h.ui(func() { test.Tap(w.next) })
	f.await("newuser-ok")
	f.await(stepKey)
	h.ui(func() {
		if !strings.Contains(w.summary.Text, "Grace Hopper ("+grace+")") || !strings.Contains(w.summary.Text, "new") {
			t.Fatalf("summary: %q", w.summary.Text)
		}
	})
	// Nothing is in the registry until the key is enrolled.
	if u, _ := userKeys(t, grace); u.ID != "" {
		t.Fatalf("user %+v created before enrolment", u)
	}
	h.waitKeyListed(w, h.serials[0])
	h.chooseKey(w, h.serials[0])
	h.press(fyne.KeyReturn)
	f.await("checks-passed")
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.FIDO2PIN))
	h.choosePIN("correct horse", "correct horse")
	f.await("pin:" + string(enrol.PIVPIN))
	h.choosePIN("246810", "246810")
	f.await("key-done")
	f.await(stepBackup)
	h.press(fyne.KeyEscape) // Not now
	f.await(stepResult)
	h.ui(func() {
		if w.resultHead.Text != "Done" || len(w.results) != 1 || w.results[0].Role != registry.RolePrimary {
			t.Fatalf("result: %s / %s", w.resultHead.Text, w.resultText.Text)
		}
	})
	u, ks := userKeys(t, grace)
	if u.DisplayName != "Grace Hopper" || u.Email != grace+"@example.org" || strings.Join(u.Groups, ",") != "engineering,oncall" {
		t.Fatalf("registry user %+v", u)
	}
	if activeKeys(ks) != 1 {
		t.Fatalf("registry keys %+v", ks)
	}

	// The same external id again: refused on the form, nothing enrolled.
	h.ui(func() { test.Tap(w.next) }) // Enrol another user
	f.await("users-loaded")
	h.ui(func() {
		// Enrol another user starts with an empty search.
		if w.search.Text != "" {
			t.Fatalf("search %q after Enrol another user", w.search.Text)
		}
		h.win.Canvas().Focus(w.search)
	})
	h.typeText(grace)
	h.ui(func() { test.Tap(w.newUserBtn) })
	f.await(stepNewUser)
	h.ui(func() {
		// The form takes up the search.
		if w.nuExt.Text != grace {
			t.Fatalf("external id %q, want the search %q", w.nuExt.Text, grace)
		}
		h.win.Canvas().Focus(w.nuName)
	})
	h.typeText("Grace Again")
	h.press(fyne.KeyReturn)
	f.await("newuser-invalid")
	h.ui(func() {
		if !strings.Contains(w.nuExtErr.Text, "already in the registry (Grace Hopper)") || w.step != stepNewUser {
			t.Fatalf("duplicate: %q at %s", w.nuExtErr.Text, w.step)
		}
		if w.nuEmailErr.Visible() || w.nuNameErr.Visible() {
			t.Fatal("problems shown for fields that are fine")
		}
	})
	// A malformed email is caught too; Escape goes back to the search.
	h.ui(func() { h.win.Canvas().Focus(w.nuEmail) })
	h.typeText("not an address")
	h.press(fyne.KeyReturn)
	f.await("newuser-invalid")
	h.ui(func() {
		if !strings.Contains(w.nuEmailErr.Text, "not an email address") {
			t.Fatalf("email: %q", w.nuEmailErr.Text)
		}
	})
	h.press(fyne.KeyEscape)
	f.await(stepUser)
	if _, ks := userKeys(t, grace); activeKeys(ks) != 1 {
		t.Fatalf("registry keys after the refused attempt %+v", ks)
	}
}

// TestWizardHelpdeskCannotAddUsers: the helpdesk finds nobody and is told
// only an admin adds users; there is no New user button and Enter does not
// open the form.
func TestWizardHelpdeskCannotAddUsers(t *testing.T) {
	h := newHarness(t)
	h.env.Role = uikit.Helpdesk
	w, _ := h.openStep1(uniq("u-nobody"))
	h.ui(func() {
		if !strings.Contains(w.userNote.Text, "Only an admin can add a new user") || w.newUserBtn.Visible() {
			t.Fatalf("helpdesk, nobody found: %q (New user visible: %v)", w.userNote.Text, w.newUserBtn.Visible())
		}
	})
	h.press(fyne.KeyReturn)
	h.ui(func() {
		w.showNewUser() // not reachable from the screen; refused all the same
		if w.step != stepUser {
			t.Fatalf("helpdesk reached step %s", w.step)
		}
	})
}
