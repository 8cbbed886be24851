package ui

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/helpdeskid"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
)

// texts collects what every label, entry, button and hyperlink under obj
// shows, placeholders included.
func texts(obj fyne.CanvasObject, out *[]string) {
	switch o := obj.(type) {
	case *widget.Label:
		*out = append(*out, o.Text)
	case *widget.Entry:
		*out = append(*out, o.Text, o.PlaceHolder)
	case *uikit.Entry:
		*out = append(*out, o.Text, o.PlaceHolder)
	case *widget.Button:
		*out = append(*out, o.Text)
	case *widget.Hyperlink:
		*out = append(*out, o.Text)
	case *widget.RichText:
		*out = append(*out, o.String())
	case *fyne.Container:
		for _, c := range o.Objects {
			texts(c, out)
		}
		return
	}
	if w, ok := obj.(fyne.Widget); ok {
		for _, c := range test.WidgetRenderer(w).Objects() {
			texts(c, out)
		}
	}
}

// windowTexts is every text in w's content and its dialogs.
func windowTexts(w fyne.Window) []string {
	var out []string
	texts(w.Canvas().Content(), &out)
	for _, o := range w.Canvas().Overlays().List() {
		texts(o, &out)
	}
	return out
}

// TestBareDesktopWords is a practice desk set to an organisation's
// registry on a desktop with no keyring: the window says once, in plain
// words, that the registry's token needs a keyring and how to get one; the
// key rows say only that the registry is not connected; and no text in any
// screen or dialog shows D-Bus, keyring-library or other library text
// (uitest.RawFragments).
func TestBareDesktopWords(t *testing.T) {
	// No session bus: the keyring is not even asked.
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "disabled:")
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(home, "data"))
	p, err := settings.DefaultPath()
	if err != nil {
		t.Fatal(err)
	}
	s := settings.Default()
	s.RegistryURL = "https://registry.example.org"
	if err := settings.Save(p, s); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	uitest.HoldUI(t)
	a := test.NewApp()
	defer a.Quit()
	d := newDesk(ctx, a, Options{Practice: "1", SimDir: uitest.SimDir()})
	w := a.NewWindow("keydesk")
	w.Resize(fyne.NewSize(1280, 800))
	d.env.Window = w
	d.env.Keys = uitest.Fleet.Keys
	// An admin's desk: every screen, and keys not registered to anyone
	// listed (an engineer's desk hides those).
	d.env.Role = uikit.Admin
	d.shell = NewShell(d.env, Screens())
	w.SetContent(d.shell.Root)
	defer w.Close()

	d.openRegistry()
	list, err := uitest.Fleet.Keys.List(ctx)
	if err != nil || len(list) == 0 {
		t.Fatalf("practice keys: %v, %v", list, err)
	}
	d.env.Feed.Publish(list)
	ok := uitest.Eventually(20*time.Second, func() bool {
		return strings.Contains(d.shell.Status.Text, "Registry: not connected (no system keyring for its token)") &&
			uitest.HasText(d.shell.Content, "Registry not connected")
	})
	if !ok {
		t.Fatalf("status %q; texts %q", d.shell.Status.Text, windowTexts(w))
	}
	if n := len(w.Canvas().Overlays().List()); n != 1 {
		t.Fatalf("%d dialogs open, want the one that says what is missing", n)
	}
	if !uitest.HasText(w.Canvas().Overlays().Top(), "install gnome-keyring") {
		t.Error("the dialog does not say how to get a keyring")
	}
	// Said once: a later status refresh (a key inserted) opens no second dialog.
	d.refreshStatus()
	d.env.Feed.Publish(list)
	time.Sleep(0) // the test driver runs fyne.Do at once
	if n := len(w.Canvas().Overlays().List()); n != 1 {
		t.Fatalf("%d dialogs open after a refresh, want 1", n)
	}
	// Practice mode still has its helpdesk identity, without a keyring.
	if len(d.currentSettings().HelpdeskRecipients) != 1 {
		t.Error("the practice desk has no helpdesk recipient")
	}
	if _, err := d.helpdeskIdentity(); err != nil {
		t.Errorf("practice helpdesk identity: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(home, "data", "keydesk", helpdeskid.PracticeFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("practice identity file: %v, %v", fi, err)
	}

	// Under the UI lock, as the screens' background updates run (see
	// uikit.Do).
	fyne.DoAndWait(func() {
		unlock := uikit.LockUI()
		defer unlock()
		walkScreens(t, d, w, "no keyring", "helpdesk_recipients")
	})
}
