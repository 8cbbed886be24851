package ui

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/registry/regtest"
)

// rawOnScreen is the first piece of library text (uitest.RawFragments,
// plus extra) that any label, entry, button or dialog of w shows, with
// the text it is in; "" when there is none. Call it on the UI goroutine.
func rawOnScreen(w fyne.Window, extra ...string) (fragment, in string) {
	all := append(windowTexts(w), strings.Split(uitest.WindowText(w), "\n")...)
	for _, s := range all {
		if f := uitest.Raw(s); f != "" {
			return f, s
		}
		for _, e := range extra {
			if strings.Contains(strings.ToLower(s), e) {
				return e, s
			}
		}
	}
	return "", ""
}

// walkScreens shows every screen the person sees, in turn, and fails the
// test on any library text in the window, dialogs included. Call it with
// the UI lock held (the test holds it).
func walkScreens(t *testing.T, d *desk, w fyne.Window, when string, extra ...string) {
	t.Helper()
	for _, id := range d.shell.Visible() {
		d.shell.Show(id)
		if f, in := rawOnScreen(w, extra...); f != "" {
			t.Errorf("%s: screen %s shows %q: %q", when, id, f, in)
		}
	}
}

// tap taps the button on the screen shown whose text is text.
func tap(t *testing.T, d *desk, text string) {
	t.Helper()
	b, _ := find(d.shell.Content, func(o fyne.CanvasObject) bool {
		b, ok := o.(*widget.Button)
		return ok && b.Text == text && b.Visible()
	}).(*widget.Button)
	if b == nil {
		t.Fatalf("screen %s has no button %q", d.shell.Current(), text)
	}
	// A button is off while the screen's last read is still running (a
	// tap on it would do nothing).
	uitest.WaitFor(t, 20*time.Second, "screen "+d.shell.Current()+"'s "+text+" enabled", func() bool { return !b.Disabled() })
	test.Tap(b)
}

// deskOn is a practice desk whose settings name the registry at url, its
// token in kr, on a headless window of 1280×800 with every screen.
func deskOn(t *testing.T, ctx context.Context, url string, kr *secrets.Keyring) (*desk, fyne.Window) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(home, "data"))
	p, err := settings.DefaultPath()
	if err != nil {
		t.Fatal(err)
	}
	s := settings.Default()
	s.RegistryURL = url
	s.HelpdeskRecipients = []string{uitest.Fleet.Recipient}
	if err := settings.Save(p, s); err != nil {
		t.Fatal(err)
	}
	uitest.HoldUI(t)
	a := test.NewApp()
	t.Cleanup(a.Quit)
	d := newDesk(ctx, a, Options{Practice: "1", SimDir: uitest.SimDir()})
	d.keyring = kr
	t.Cleanup(d.close)
	w := a.NewWindow("keydesk")
	w.Resize(fyne.NewSize(1280, 800))
	t.Cleanup(w.Close)
	d.env.Window = w
	d.env.Keys = uitest.Fleet.Keys
	d.shell = NewShell(d.env, Screens())
	w.SetContent(d.shell.Root)
	return d, w
}

// testKeyring is a keyring under a service name of the test's own, in the
// session's Secret Service (packaging/with-services.sh starts one).
func testKeyring(t *testing.T) *secrets.Keyring {
	t.Helper()
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		t.Skip("no session bus; run through packaging/with-services.sh for a real Secret Service")
	}
	b := make([]byte, 6)
	rand.Read(b)
	return secrets.New("keydesk-test-" + hex.EncodeToString(b))
}

// TestRegistryGoneWords is a desk at an organisation's registry, a real
// keydesk-registry process, that is killed in the middle of the session:
// the status line says in plain words that the registry cannot be reached
// and what to do, the screens say what they could not do, and no screen
// or dialog shows the network library's text (connection refused, the
// request's URL, context deadline); when the registry is back the status
// line says so.
func TestRegistryGoneWords(t *testing.T) {
	kr := testKeyring(t)
	state := filepath.Join(t.TempDir(), "registry")
	tok, err := regtest.Token(uitest.Fleet.Bin, state, "admin", "desk-gone", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.Start(uitest.Fleet.Bin, state, "--practice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	// Named as a person would type it; the loopback address in a Go
	// error's text is then the library's, never the settings'.
	url := strings.Replace(p.URL, "127.0.0.1", "localhost", 1)
	if err := kr.Put(secrets.RegistryTokenAccount(url), tok); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kr.Delete(secrets.RegistryTokenAccount(url)) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, w := deskOn(t, ctx, url, kr)

	d.openRegistry()
	list, err := uitest.Fleet.Keys.List(ctx)
	if err != nil || len(list) == 0 {
		t.Fatalf("practice keys: %v, %v", list, err)
	}
	d.env.Feed.Publish(list)
	uitest.WaitFor(t, 20*time.Second, "the desk connected as an admin", func() bool {
		return strings.Contains(d.shell.Status.Text, "Registry: "+url) && d.env.Role == uikit.Admin
	})
	walkScreens(t, d, w, "registry up")

	p.Kill()
	// The key-state model asks the change feed every half second.
	d.shell.Show("keys")
	gone := "Registry at " + url + ": the registry could not be reached (nothing answers at its address); keydesk keeps trying"
	if !uitest.Eventually(20*time.Second, func() bool { return strings.Contains(d.shell.Status.Text, gone) }) {
		t.Fatalf("status %q after the registry was killed; want %q", d.shell.Status.Text, gone)
	}
	// Every screen asks the registry again when shown; the first visit
	// starts the asking, the second sees what came of it.
	walkScreens(t, d, w, "registry gone")
	d.rescan()
	d.shell.Show("inventory")
	tap(t, d, "Refresh")
	if !uitest.Eventually(20*time.Second, func() bool {
		return uitest.HasText(d.shell.Content, "The registry cannot be reached") && uitest.HasText(d.shell.Content, "press Retry")
	}) {
		t.Fatalf("after 20s Inventory does not say the registry cannot be reached; the window shows:\n%s", uitest.WindowText(w))
	}
	d.shell.Show("activity")
	tap(t, d, "Verify audit chain")
	uitest.WaitFor(t, 20*time.Second, "Activity says the registry cannot be reached", func() bool {
		return uitest.HasText(d.shell.Content, "cannot be reached") || uitest.HasText(d.shell.Content, "could not be reached")
	})
	// What a person does next: verify the key, look a person up.
	for _, step := range []struct{ screen, button string }{{"verify", "Verify"}, {"helpdesk", "Diagnose"}} {
		d.shell.Show(step.screen)
		tap(t, d, step.button)
		if !uitest.Eventually(60*time.Second, func() bool {
			d.shell.Show(step.screen)
			return uitest.HasText(d.shell.Content, "could not be reached")
		}) {
			t.Errorf("%s after %s does not say the registry could not be reached: %q", step.screen, step.button, windowTexts(w))
		}
		if f, in := rawOnScreen(w); f != "" {
			t.Errorf("%s after %s shows %q: %q", step.screen, step.button, f, in)
		}
	}
	uitest.WaitFor(t, 20*time.Second, "Keys says the registry could not say", func() bool {
		d.shell.Show("keys")
		return uitest.HasText(d.shell.Content, "The registry could not say whose it is")
	})
	walkScreens(t, d, w, "registry gone, screens visited again")

	// Back on the same port: the status line says where it is again.
	addr := strings.TrimPrefix(p.URL, "http://")
	back, err := regtest.StartArgs(uitest.Fleet.Bin, state, "serve", "--dev-plain-http", "--listen", addr, "--state", state, "--practice")
	if err != nil {
		t.Skipf("the registry could not listen on %s again: %v", addr, err)
	}
	t.Cleanup(back.Stop)
	if !uitest.Eventually(20*time.Second, func() bool { return strings.HasPrefix(d.shell.Status.Text, "Registry: "+url+" ·") }) {
		t.Fatalf("the registry is back; the status line says %q", d.shell.Status.Text)
	}
}

// TestRegistryDownFromTheStart is a desk whose registry is not running
// when it starts (a closed port): the status line and every screen say so
// in plain words, with what to do, and nothing of the network library's;
// nor does a Save of the settings that the disk refuses.
func TestRegistryDownFromTheStart(t *testing.T) {
	kr := testKeyring(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	url := "http://localhost:" + port
	if err := kr.Put(secrets.RegistryTokenAccount(url), "kdr_down-down-down-down-down"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kr.Delete(secrets.RegistryTokenAccount(url)) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, w := deskOn(t, ctx, url, kr)
	// An admin's desk, so every screen is there to look at.
	d.shell.SetRole(uikit.Admin, "")

	d.openRegistry()
	list, err := uitest.Fleet.Keys.List(ctx)
	if err != nil || len(list) == 0 {
		t.Fatalf("practice keys: %v, %v", list, err)
	}
	d.env.Feed.Publish(list)
	want := "Registry: not connected (the registry could not be reached (nothing answers at its address); check that it is running and its address in Settings)"
	uitest.WaitFor(t, 20*time.Second, "the status line says the registry cannot be reached", func() bool {
		return strings.Contains(d.shell.Status.Text, want) && uitest.HasText(d.shell.Content, "Registry not connected")
	})
	walkScreens(t, d, w, "registry down")
	for _, id := range []string{"inventory", "enrol"} {
		if !uitest.Eventually(20*time.Second, func() bool {
			d.shell.Show(id)
			return uitest.HasText(d.shell.Content, "could not be reached") || uitest.HasText(d.shell.Content, "cannot be reached")
		}) {
			t.Errorf("%s does not say the registry cannot be reached: %q", id, windowTexts(w))
		}
	}
	walkScreens(t, d, w, "registry down, screens visited again")

	// Settings that cannot be saved: a file stands where keydesk's
	// settings folder belongs.
	cfg := filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "keydesk")
	if err := os.RemoveAll(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d.shell.Show("settings")
	force, _ := find(d.shell.Content, func(o fyne.CanvasObject) bool {
		c, ok := o.(*widget.Check)
		return ok && strings.Contains(c.Text, "changes the FIDO2 PIN")
	}).(*widget.Check)
	if force == nil {
		t.Fatal("no first-use PIN box on the Settings screen")
	}
	test.Tap(force)
	tap(t, d, "Save settings")
	if !uitest.Eventually(20*time.Second, func() bool {
		return uitest.HasText(d.shell.Content, "Saving failed: saving settings: "+cfg+" could not be used: a file stands where a folder belongs") &&
			uitest.HasText(d.shell.Content, "Move that file out of the way")
	}) {
		t.Errorf("a save that failed reads %q", windowTexts(w))
	}
	if f, in := rawOnScreen(w); f != "" {
		t.Errorf("a save that failed shows %q: %q", f, in)
	}
}
