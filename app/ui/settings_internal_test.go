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

	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
)

// find is the first object under obj (widgets' renderers included) that
// match accepts.
func find(obj fyne.CanvasObject, match func(fyne.CanvasObject) bool) fyne.CanvasObject {
	if obj == nil {
		return nil
	}
	if match(obj) {
		return obj
	}
	var kids []fyne.CanvasObject
	switch o := obj.(type) {
	case *fyne.Container:
		kids = o.Objects
	case fyne.Widget:
		kids = test.WidgetRenderer(o).Objects()
	}
	for _, k := range kids {
		if f := find(k, match); f != nil {
			return f
		}
	}
	return nil
}

// TestSettingsSaveOnPracticeDesk is a desk started in practice mode
// (KEYDESK_PRACTICE=1) on the embedded registry with no settings file:
// saving a change on the Settings screen reconnects, the screen ends in
// "Connected to the embedded registry", and the file holds neither
// practice mode nor the practice desk's own helpdesk recipient, which
// belong to the session.
func TestSettingsSaveOnPracticeDesk(t *testing.T) {
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "disabled:")
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(home, "data"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	uitest.HoldUI(t)
	a := test.NewApp()
	defer a.Quit()
	d := newDesk(ctx, a, Options{Practice: "1", SimDir: uitest.SimDir()})
	defer d.close()
	w := a.NewWindow("keydesk")
	w.Resize(fyne.NewSize(1280, 800))
	defer w.Close()
	d.env.Window = w
	d.env.Keys = uitest.Fleet.Keys
	d.shell = NewShell(d.env, Screens())
	w.SetContent(d.shell.Root)
	d.openRegistry()
	if !d.currentSettings().Practice || len(d.currentSettings().HelpdeskRecipients) != 1 {
		t.Fatalf("the practice desk's settings: %+v", d.currentSettings())
	}
	if !d.shell.Show("settings") {
		t.Fatal("no Settings screen")
	}
	save, _ := find(d.shell.Content, func(o fyne.CanvasObject) bool {
		b, ok := o.(*widget.Button)
		return ok && b.Text == "Save settings"
	}).(*widget.Button)
	force, _ := find(d.shell.Content, func(o fyne.CanvasObject) bool {
		c, ok := o.(*widget.Check)
		return ok && strings.Contains(c.Text, "changes the FIDO2 PIN")
	}).(*widget.Check)
	if save == nil || force == nil {
		t.Fatal("no Save button or first-use PIN box on the Settings screen")
	}
	if !save.Disabled() {
		t.Fatal("Save is enabled with nothing changed")
	}
	test.Tap(force)
	test.Tap(save)
	if !uitest.Eventually(30*time.Second, func() bool {
		return uitest.HasText(d.shell.Content, "Connected to the embedded registry on this desk")
	}) {
		t.Fatalf("after Save the screen says %q", windowTexts(w))
	}
	b, err := os.ReadFile(filepath.Join(home, "config", "keydesk", "settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := settings.Load(filepath.Join(home, "config", "keydesk", "settings.json"))
	if err != nil || got.Practice || len(got.HelpdeskRecipients) != 0 || !got.ForcePINChange {
		t.Fatalf("settings.json holds the session's choices or lost the change (%v):\n%s", err, b)
	}
	// The session goes on in practice mode, with its own recipient.
	if s := d.currentSettings(); !s.Practice || len(s.HelpdeskRecipients) != 1 || d.env.Role != uikit.Admin {
		t.Fatalf("after the reconnect: practice %v, recipients %d, role %s", s.Practice, len(s.HelpdeskRecipients), d.env.Role)
	}
}
