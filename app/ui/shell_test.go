package ui_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/test"

	"github.com/keydesk/keydesk/app/ui"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/internal/buildinfo"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

func TestMain(m *testing.M) { uitest.Main(m, 1) }

const waitShort = 20 * time.Second

func press(w fyne.Window, k fyne.KeyName) {
	w.Canvas().(interface{ TypedShortcut(fyne.Shortcut) }).TypedShortcut(&desktop.CustomShortcut{KeyName: k, Modifier: fyne.KeyModifierShortcutDefault})
}

// TestNavigationFollowsTheRole: an admin sees every screen, built only
// when first shown; Ctrl+4 opens the fourth; an engineer (self) sees only
// Keys, Verify and Settings.
func TestNavigationFollowsTheRole(t *testing.T) {
	env := uitest.Env(t, uikit.Admin, "", uitest.Fleet.Admin)
	s := ui.NewShell(env, ui.Screens())
	env.Window.SetContent(s.Root)
	if got := s.Visible(); !slices.Equal(got, []string{"keys", "enrol", "batch", "verify", "helpdesk", "inventory", "activity", "migration", "settings"}) {
		t.Fatalf("admin sees %v", got)
	}
	if s.Current() != "keys" || !s.Made("keys") || s.Made("verify") || s.Made("helpdesk") || s.Made("enrol") || s.Made("inventory") {
		t.Fatal("screens other than the first were built before they were shown")
	}
	s.Shortcuts(env.Window)
	press(env.Window, fyne.Key4)
	if s.Current() != "verify" || !s.Made("verify") {
		t.Fatalf("Ctrl+4 shows %q", s.Current())
	}
	press(env.Window, fyne.Key5)
	if s.Current() != "helpdesk" {
		t.Fatalf("Ctrl+5 shows %q", s.Current())
	}
	press(env.Window, fyne.Key1)
	uitest.WaitFor(t, waitShort, "the practice key listed with its health", func() bool { return uitest.HasText(s.Content, "Not registered") })
	uitest.MatchImage(t, "shell.png", env.Window.Canvas().Capture())

	s.SetRole(uikit.Self, "u_someone")
	if got := s.Visible(); !slices.Equal(got, []string{"keys", "verify", "settings"}) {
		t.Fatalf("an engineer sees %v", got)
	}
	if s.Show("helpdesk") {
		t.Fatal("an engineer opened the Helpdesk screen")
	}
	if s.Made("verify") {
		t.Fatal("a screen built for the admin survived the change of role")
	}
	press(env.Window, fyne.Key3)
	if s.Current() != "settings" {
		t.Fatalf("Ctrl+3 for an engineer shows %q, want settings", s.Current())
	}
}

// TestThemeAndAbout: the theme switch flips light and dark; About shows
// the version and commit.
func TestThemeAndAbout(t *testing.T) {
	env := uitest.Env(t, uikit.Helpdesk, "", uitest.Fleet.Helpdesk)
	s := ui.NewShell(env, ui.Screens())
	env.Window.SetContent(s.Root)
	// Fyne's test driver runs fyne.Do on the calling goroutine: let the key
	// list settle before the theme change walks it.
	if !uitest.Eventually(waitShort, func() bool { return uitest.HasText(s.Content, "Not registered") }) {
		var shown []string
		fyne.DoAndWait(func() { shown = texts(s.Content) })
		t.Fatalf("after %v the practice key is not listed as not registered; the screen says %q", waitShort, shown)
	}
	s.SetDark(false)
	light := env.App.Settings().Theme().Color("background", 0)
	s.ToggleTheme()
	if !s.Dark() || env.App.Settings().Theme().Color("background", 0) == light {
		t.Fatal("the theme did not turn dark")
	}
	if want := buildinfo.String("keydesk"); !strings.Contains(ui.AboutText(), want) {
		t.Fatalf("About says %q, want %q", ui.AboutText(), want)
	}
}

// selfRuns counts TestRoleFromTheRegistry's runs.
var selfRuns int

// TestRoleFromTheRegistry: the registry names each token's role; a self
// token comes with its user; an unreachable registry is an error.
func TestRoleFromTheRegistry(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		cl   *client.Client
		want uikit.Role
	}{{uitest.Fleet.Admin, uikit.Admin}, {uitest.Fleet.Helpdesk, uikit.Helpdesk}} {
		r, _, err := ui.RoleOf(ctx, c.cl, false)
		if err != nil || r != c.want {
			t.Fatalf("role %q, %v; want %s", r, err, c.want)
		}
	}
	// The registry lives as long as the test binary: each run adds a person
	// of its own (-count).
	selfRuns++
	var u struct {
		ID string `json:"id"`
	}
	if err := uitest.Fleet.AdminCall("POST", "/v1/users", map[string]string{"external_id": fmt.Sprintf("grace-%d", selfRuns)}, &u); err != nil {
		t.Fatal(err)
	}
	tok, err := regtest.Token(uitest.Fleet.Bin, uitest.Fleet.State, "self", fmt.Sprintf("grace-%d-laptop", selfRuns), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	self, err := client.New(uitest.Fleet.Registry.URL, tok, client.Options{OutboxPath: t.TempDir() + "/outbox.db"})
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	r, user, err := ui.RoleOf(ctx, self, false)
	if err != nil || r != uikit.Self || user != u.ID {
		t.Fatalf("self token: role %q user %q, %v; want self %s", r, user, err, u.ID)
	}
	if r, _, err := ui.RoleOf(ctx, nil, true); r != uikit.Admin || err != nil {
		t.Fatalf("embedded registry: %q, %v", r, err)
	}
	if _, _, err := ui.RoleOf(ctx, uitest.Down(t), false); err == nil {
		t.Fatal("no error from an unreachable registry")
	}
}

// firstEntry is the first entry under obj.
func firstEntry(obj fyne.CanvasObject) *uikit.Entry {
	switch o := obj.(type) {
	case *uikit.Entry:
		return o
	case *fyne.Container:
		for _, c := range o.Objects {
			if e := firstEntry(c); e != nil {
				return e
			}
		}
		return nil
	}
	if w, ok := obj.(fyne.Widget); ok {
		for _, c := range test.WidgetRenderer(w).Objects() {
			if e := firstEntry(c); e != nil {
				return e
			}
		}
	}
	return nil
}

// TestShortcutsWhateverHasFocus: with the keyboard focus in the Inventory
// search field, Ctrl+1 still opens Keys and Ctrl+6 Inventory again (Fyne
// gives a focused entry every shortcut); About closes on Enter and on
// Escape.
func TestShortcutsWhateverHasFocus(t *testing.T) {
	env := uitest.Env(t, uikit.Admin, "", uitest.Fleet.Admin)
	s := ui.NewShell(env, ui.Screens())
	env.Window.SetContent(s.Root)
	s.Shortcuts(env.Window)
	if !s.Show("inventory") {
		t.Fatal("no Inventory screen")
	}
	search := firstEntry(s.Content)
	if search == nil {
		t.Fatal("no entry on the Inventory screen")
	}
	env.Window.Canvas().Focus(search)
	// What the window does with a shortcut while a widget has the focus.
	typed := func(k fyne.KeyName) {
		env.Window.Canvas().Focused().(fyne.Shortcutable).TypedShortcut(&desktop.CustomShortcut{KeyName: k, Modifier: fyne.KeyModifierShortcutDefault})
	}
	typed(fyne.Key1)
	if s.Current() != "keys" {
		t.Fatalf("Ctrl+1 in the Inventory search shows %q, want keys", s.Current())
	}
	s.Show("inventory")
	env.Window.Canvas().Focus(search)
	test.Type(search, "ada")
	typed(fyne.Key4)
	if s.Current() != "verify" {
		t.Fatalf("Ctrl+4 in the Inventory search shows %q, want verify", s.Current())
	}
	// The search is no longer on screen: keys typed now must not reach it.
	if f := env.Window.Canvas().Focused(); f == search {
		t.Fatal("the Inventory search keeps the focus on the Verify screen")
	}
	for _, k := range []fyne.KeyName{fyne.KeyReturn, fyne.KeyEscape} {
		s.ShowAbout()
		if n := len(env.Window.Canvas().Overlays().List()); n != 1 {
			t.Fatalf("%d dialogs after About", n)
		}
		env.Window.Canvas().Focused().TypedKey(&fyne.KeyEvent{Name: k})
		if n := len(env.Window.Canvas().Overlays().List()); n != 0 {
			t.Fatalf("%s left About open", k)
		}
	}
}
