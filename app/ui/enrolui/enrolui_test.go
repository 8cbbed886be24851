package enrolui

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

var (
	bin    string
	base   string
	fxOnce sync.Once
	fx     *enroltest.Env
	fxErr  error
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "keydesk-enrolui-test-")
	if err != nil {
		panic(err)
	}
	base = d
	regtest.RunTests(m, &bin, func() {
		if fx != nil {
			fx.Stop()
		}
		os.RemoveAll(d)
	})
}

// fixture is the test binary's practice keys (two readers) and registry
// process, started by the first test that needs them.
func fixture(t *testing.T) *enroltest.Env {
	t.Helper()
	fxOnce.Do(func() { fx, fxErr = enroltest.Start(base, bin, 2) })
	if fxErr != nil {
		t.Fatal(fxErr)
	}
	return fx
}

const wait = 90 * time.Second

// fresh reports whether k is factory-fresh, as enrolment needs it.
func fresh(ctx context.Context, k device.Key) bool {
	r := fx.Keys.Inspect(ctx, k, nil)
	return r.PIV != nil && r.FIDO != nil && r.PIV.PINDefault && r.PIV.PUKDefault && r.PIV.MgmtKeyDefault && !r.FIDO.PINSet
}

// freshKeys swaps every practice key that is enrolled, half set up or
// pulled for a factory-fresh one, as an admin unpacks new keys, and waits
// until both interfaces of each are visible.
func freshKeys(t *testing.T) []uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var out []uint32
	for i := range fx.Fleet.Keys {
		serial := fx.Serial(i)
		y := fx.Fleet.Keys[i]
		if !y.Key.Inserted() {
			y.Key.Insert()
		}
		k, err := fx.Keys.WaitUntil(ctx, serial, whole)
		if err != nil || !fresh(ctx, k) {
			ny, err := fx.Fleet.Replace(serial)
			if err != nil {
				t.Fatal(err)
			}
			serial = ny.Serial()
			if _, err := fx.Keys.WaitUntil(ctx, serial, whole); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, serial)
	}
	return out
}

func whole(k *device.Key) bool { return k != nil && k.Reader != "" && k.FIDOPath != "" }

func (h *harness) fleetSerials() []uint32 {
	var out []uint32
	for i := range fx.Fleet.Keys {
		out = append(out, fx.Serial(i))
	}
	return out
}

// harness is a test window with a uikit.Env over the fixture.
type harness struct {
	t       *testing.T
	app     fyne.App
	win     fyne.Window
	env     *uikit.Env
	d       *desk
	set     settings.Settings
	journal string
	serials []uint32
	regErr  error
}

func newHarness(t *testing.T) *harness {
	fixture(t)
	h := &harness{t: t, serials: freshKeys(t)}
	uitest.HoldUI(t)
	h.app = test.NewApp()
	h.win = h.app.NewWindow("keydesk")
	h.win.Resize(fyne.NewSize(1280, 800))
	ctx, cancel := context.WithCancel(context.Background())
	feed := &uikit.KeyFeed{}
	ch, err := fx.Keys.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		for l := range ch {
			feed.Publish(l)
		}
	}()
	h.set = settings.Default()
	h.set.RPID = enroltest.RPID
	h.set.Practice = true
	h.set.HelpdeskRecipients = []string{fx.Recipient}
	h.journal = filepath.Join(t.TempDir(), "journal.db")
	h.env = &uikit.Env{App: h.app, Window: h.win, Ctx: ctx, Keys: fx.Keys, Feed: feed, Role: uikit.Admin,
		Settings: func() settings.Settings { return h.set },
		Registry: func(context.Context) (*client.Client, error) {
			if h.regErr != nil {
				return nil, h.regErr
			}
			return fx.Admin, nil
		}}
	h.d = &desk{cfg: Config{JournalPath: h.journal}}
	t.Cleanup(func() {
		cancel()
		// The watcher may be publishing, which takes the UI lock.
		uitest.Unlocked(func() { <-watching })
		h.app.Quit()
	})
	return h
}

// ui runs f as the UI goroutine would, one after the UI changes the
// enrolment makes. The test holds the UI lock anyway (uitest.HoldUI); ui
// marks what a person does on the window.
func (h *harness) ui(f func()) {
	unlock := uikit.LockUI()
	defer unlock()
	f()
}

// press sends a key to whatever has the keyboard focus, as a person
// pressing it would.
func (h *harness) press(name fyne.KeyName) {
	h.t.Helper()
	h.ui(func() {
		f := h.win.Canvas().Focused()
		if f == nil {
			h.t.Fatalf("nothing has the keyboard focus for %s", name)
		}
		f.TypedKey(&fyne.KeyEvent{Name: name})
	})
}

// typeText types into whatever has the keyboard focus.
func (h *harness) typeText(s string) {
	h.t.Helper()
	h.ui(func() {
		f := h.win.Canvas().Focused()
		if f == nil {
			h.t.Fatalf("nothing has the keyboard focus to type %q into", s)
		}
		test.Type(f, s)
	})
}

// follower reads a screen's trail from where it last stopped.
type follower struct {
	t   *testing.T
	tr  *trail
	pos int
}

func (f *follower) await(states ...string) string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var (
		i   int
		s   string
		err error
	)
	uitest.Unlocked(func() { i, s, err = f.tr.wait(ctx, f.pos, states...) })
	if err != nil {
		// What every goroutine was doing, to tell a hung key from a hung screen.
		buf := make([]byte, 1<<22)
		f.t.Logf("goroutines:\n%s", buf[:runtime.Stack(buf, true)])
		f.t.Fatalf("waiting for %v: %v; states since the last one awaited %v (all: %v)", states, err, f.tr.states()[f.pos:], f.tr.states())
	}
	f.pos = i + 1
	return s
}

// ids counts the users the tests add, so repeated runs (-count) against
// the binary's one registry never reuse an external id.
var ids int

// uniq returns a fresh external id starting with prefix.
func uniq(prefix string) string {
	ids++
	return fmt.Sprintf("%s-%d", prefix, ids)
}

func addUser(t *testing.T, ext, name string) {
	t.Helper()
	body := map[string]any{"external_id": ext, "display_name": name, "email": ext + "@example.org"}
	if err := fx.AdminCall("POST", "/v1/users", body, nil); err != nil {
		t.Fatal(err)
	}
}

func userKeys(t *testing.T, ext string) (registry.User, []registry.Key) {
	t.Helper()
	ctx := context.Background()
	us, _, err := fx.Admin.Users(ctx, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if u.ExternalID == ext {
			ks, err := fx.Admin.UserKeys(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			return u, ks
		}
	}
	return registry.User{}, nil
}

func activeKeys(ks []registry.Key) int {
	n := 0
	for _, k := range ks {
		if k.Status == registry.KeyActive {
			n++
		}
	}
	return n
}

// openWizard shows the Enrol screen and picks ext from the search.
func (h *harness) openWizard(search string) (*wizard, *follower) {
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
	h.press(fyne.KeyReturn)
	f.await(stepKey)
	return w, f
}

// chooseKey selects serial in the key step, as a click on its row does.
func (h *harness) chooseKey(w *wizard, serial uint32) {
	h.t.Helper()
	h.ui(func() {
		for i, k := range w.keys {
			if k.Serial == serial {
				w.keyList.Select(i)
				return
			}
		}
		h.t.Fatalf("key %d is not in the key step's list (%d keys)", serial, len(w.keys))
	})
}

// choosePIN types a PIN and its repeat, pressing Enter after each.
func (h *harness) choosePIN(pin, again string) {
	h.t.Helper()
	h.typeText(pin)
	h.press(fyne.KeyReturn)
	h.typeText(again)
	h.press(fyne.KeyReturn)
}

// waitKeyListed waits until the key step lists serial with both its
// interfaces.
func (h *harness) waitKeyListed(w *wizard, serial uint32) {
	h.t.Helper()
	keys := &follower{t: h.t, tr: &w.trail}
	for {
		found := false
		h.ui(func() {
			for _, k := range w.keys {
				found = found || (k.Serial == serial && whole(&k))
			}
		})
		if found {
			return
		}
		keys.await("keys")
	}
}

// TestWizardPrimaryThenBackup: one user, the primary key chosen from the
// feed, PINs typed, the backup prompt answered with Enter, the backup key
// taken from the keys attached; the registry then holds two active keys
// and the user is covered.
func TestWizardPrimaryThenBackup(t *testing.T) {
	h := newHarness(t)
	ada := uniq("u-ada")
	addUser(t, ada, "Ada Lovelace")
	w, f := h.openWizard(ada)
	h.ui(func() {
		if w.user.ExternalID != ada {
			t.Fatalf("chosen user %+v", w.user)
		}
	})
	h.waitKeyListed(w, h.serials[0])
	h.chooseKey(w, h.serials[0])
	h.press(fyne.KeyReturn)
	f.await("checks-passed")
	h.ui(func() {
		if !strings.Contains(w.checkReg.Text, "✓") || !strings.Contains(w.checkFresh.Text, "✓") {
			t.Fatalf("checks: %q %q", w.checkReg.Text, w.checkFresh.Text)
		}
	})
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.FIDO2PIN))
	h.ui(func() {
		if !strings.Contains(w.pin.rule.Text, "at least 8 characters") {
			t.Fatalf("policy not shown: %q", w.pin.rule.Text)
		}
	})
	h.choosePIN("correct horse", "correct horse")
	f.await("pin:" + string(enrol.PIVPIN))
	h.choosePIN("246810", "246810")
	f.await("key-done")
	f.await(stepBackup)
	h.ui(func() {
		if !strings.Contains(w.backupQ.Text, "Enrol the backup key now?") {
			t.Fatalf("backup prompt: %q", w.backupQ.Text)
		}
	})
	h.press(fyne.KeyReturn)
	f.await(stepChecks)
	f.await("checks-passed")
	h.ui(func() {
		if w.serial != h.serials[1] {
			t.Fatalf("backup key %d, want %d", w.serial, h.serials[1])
		}
	})
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.FIDO2PIN))
	h.choosePIN("battery staple", "battery staple")
	f.await("pin:" + string(enrol.PIVPIN))
	h.choosePIN("135790", "135790")
	f.await(stepResult)
	h.ui(func() {
		if len(w.results) != 2 || w.results[0].Role != registry.RolePrimary || w.results[1].Role != registry.RoleBackup {
			t.Fatalf("results %+v: %s", w.results, w.resultText.Text)
		}
		if !strings.Contains(w.resultText.Text, "is covered") || w.resultHead.Text != "Done" {
			t.Fatalf("result: %s / %s", w.resultHead.Text, w.resultText.Text)
		}
	})
	u, ks := userKeys(t, ada)
	if activeKeys(ks) != 2 {
		t.Fatalf("registry holds %+v for %s", ks, ada)
	}
	cv, err := fx.Admin.Coverage(context.Background(), u.ID)
	if err != nil || !cv.Covered {
		t.Fatalf("coverage %+v, %v", cv, err)
	}
	// No PIN is left in any entry.
	h.ui(func() {
		if w.pin.pin.Text != "" || w.pin.again.Text != "" {
			t.Fatal("a PIN stayed in the form")
		}
	})

	// Enrol another user: the wizard starts clean, with nothing of ada's.
	h.press(fyne.KeyReturn)
	f.await(stepUser)
	f.await("users-loaded")
	h.ui(func() {
		if w.search.Text != "" || w.user.ID != "" || !w.next.Disabled() || len(w.matches) != len(activeUsers(w.users)) {
			t.Fatalf("user step after Enrol another user: search %q, user %+v, Next enabled %v, %d of %d users listed",
				w.search.Text, w.user, !w.next.Disabled(), len(w.matches), len(w.users))
		}
		if w.pin.title.Text != "" || w.pin.rule.Text != "" || w.nuExt.Text != "" || w.nuName.Text != "" {
			t.Fatalf("the last enrolment's text stayed: %q %q %q %q", w.pin.title.Text, w.pin.rule.Text, w.nuExt.Text, w.nuName.Text)
		}
		if strings.Contains(w.summary.Text, ada) || strings.Contains(w.summary.Text, "Ada") {
			t.Fatalf("summary still names ada: %q", w.summary.Text)
		}
	})
	grace := uniq("u-grace")
	addUser(t, grace, "Grace Hopper")
	h.ui(func() { w.loadUsers() })
	f.await("users-loaded")
	h.ui(func() { h.win.Canvas().Focus(w.search) })
	h.typeText(grace)
	h.ui(func() {
		if want := fmt.Sprintf("1 of %d users matches.", len(w.users)); w.userNote.Text != want {
			t.Fatalf("user note %q, want %q", w.userNote.Text, want)
		}
	})
	h.press(fyne.KeyReturn)
	f.await(stepKey)
	h.ui(func() {
		if w.user.ExternalID != grace || w.chosen != 0 || !w.next.Disabled() || !strings.Contains(w.keyNote.Text, "Waiting for a factory-fresh key") {
			t.Fatalf("key step for the next person: user %q, chosen %d, Next enabled %v, note %q", w.user.ExternalID, w.chosen, !w.next.Disabled(), w.keyNote.Text)
		}
	})
}

func activeUsers(us []registry.User) []registry.User {
	var out []registry.User
	for _, u := range us {
		if u.Status == "" || u.Status == registry.UserActive {
			out = append(out, u)
		}
	}
	return out
}

// TestWizardPINRetypedTooShortThenCancel: a mistyped repeat is caught on
// the form; PINs under the policy are caught as they are typed and on
// Enter, count as no try, and three of them do not end the enrolment; the
// factory PIV PIN is refused the same way; Escape cancels, and the key is
// left as it was.
func TestWizardPINRetypedTooShortThenCancel(t *testing.T) {
	h := newHarness(t)
	bob := uniq("u-bob")
	addUser(t, bob, "Bob Babbage")
	w, f := h.openWizard(bob)
	h.waitKeyListed(w, h.serials[0])
	h.chooseKey(w, h.serials[0])
	h.press(fyne.KeyReturn)
	f.await("checks-passed")
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.FIDO2PIN))
	h.choosePIN("12345678", "12345679")
	h.ui(func() {
		if !strings.Contains(w.pin.problem.Text, "differ") || w.pin.answer == nil {
			t.Fatalf("mismatch: %q (answered: %v)", w.pin.problem.Text, w.pin.answer == nil)
		}
	})
	// Too-short PINs are typos the form catches as they are typed: they
	// never reach the enrolment, count as no try, and three of them do not
	// end it.
	h.typeText("1234")
	h.ui(func() {
		if c := w.pin.check.Text; !strings.Contains(c, "at least 8 characters; this one has 4") {
			t.Fatalf("live check while typing: %q", c)
		}
	})
	h.press(fyne.KeyReturn)
	h.typeText("1234")
	h.press(fyne.KeyReturn)
	for range 2 {
		h.choosePIN("1234567", "1234567")
	}
	h.ui(func() {
		p := w.pin.problem.Text
		if !strings.Contains(p, "at least 8 characters") || !strings.Contains(p, "does not count as a try") || strings.Contains(p, "Try") {
			t.Fatalf("too short: %q", p)
		}
		if w.step != stepPIN || w.pin.answer == nil || w.pin.req.Kind != enrol.FIDO2PIN {
			t.Fatalf("after three short PINs the wizard is at %q (waiting: %v)", w.step, w.pin.answer != nil)
		}
	})
	h.typeText("12345678")
	h.ui(func() {
		if c := w.pin.check.Text; !strings.Contains(c, "Meets the rules") {
			t.Fatalf("live check for a long enough PIN: %q", c)
		}
	})
	h.press(fyne.KeyReturn)
	h.typeText("12345678")
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.PIVPIN))
	h.choosePIN("123456", "123456")
	h.ui(func() {
		if p := w.pin.problem.Text; !strings.Contains(p, "factory PIN") || w.pin.req.Kind != enrol.PIVPIN {
			t.Fatalf("the factory PIV PIN: %q", p)
		}
	})
	h.press(fyne.KeyEscape)
	f.await(stepResult)
	h.ui(func() {
		if w.resultHead.Text != "Cancelled" || !strings.Contains(w.resultText.Text, fmt.Sprintf("Cancelled before key %d was changed", h.serials[0])) {
			t.Fatalf("cancelled: %s / %s", w.resultHead.Text, w.resultText.Text)
		}
	})
	ctx := context.Background()
	k, err := fx.Keys.Find(ctx, h.serials[0])
	if err != nil || !fresh(ctx, k) {
		t.Fatalf("key after a cancel at the PIN step: fresh=%v, %v", err == nil && fresh(ctx, k), err)
	}
	if un := h.unfinished(); len(un) != 0 {
		t.Fatalf("journal: %+v", un)
	}
}

func (h *harness) unfinished() []*enrol.Record {
	h.t.Helper()
	en, err := enrol.New(enrol.Config{Settings: h.set, Keys: fx.Keys, Registry: fx.Admin, JournalPath: h.journal})
	if err != nil {
		h.t.Fatal(err)
	}
	defer en.Close()
	un, err := en.Unfinished(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return un
}

// TestWizardKeyPulled: the key leaves while its PIV side is set up. The
// result says it is half set up and nothing was registered; the registry
// has no such key; the journal keeps the sealed escrow.
func TestWizardKeyPulled(t *testing.T) {
	h := newHarness(t)
	cy := uniq("u-cy")
	addUser(t, cy, "Cy Pulled")
	serial := h.serials[0]
	y := fx.Fleet.Find(serial)
	h.d.hook = func(ev enrol.Event) {
		if ev.Step == enrol.StepCert && ev.Serial == serial {
			y.Key.Remove()
		}
	}
	w, f := h.openWizard(cy)
	h.waitKeyListed(w, serial)
	h.chooseKey(w, serial)
	h.press(fyne.KeyReturn)
	f.await("checks-passed")
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.FIDO2PIN))
	h.choosePIN("pulled-key-pin", "pulled-key-pin")
	f.await("pin:" + string(enrol.PIVPIN))
	h.choosePIN("112233", "112233")
	f.await(stepResult)
	h.ui(func() {
		if w.resultHead.Text != "Enrolment stopped" || !strings.Contains(w.resultText.Text, "half set up and nothing was registered") {
			t.Fatalf("key pulled: %s / %s", w.resultHead.Text, w.resultText.Text)
		}
		// Said once, on the result: no dialog repeats it, and it names the
		// app's screens, not a command line.
		if n := len(h.win.Canvas().Overlays().List()); n != 0 {
			t.Errorf("%d dialogs open beside the result", n)
		}
		if namesCommand.MatchString(w.resultText.Text) {
			t.Errorf("the result names a command: %q", w.resultText.Text)
		}
	})
	if _, err := fx.Admin.KeyBySerial(context.Background(), strconv.FormatUint(uint64(serial), 10)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("registry after a pulled key: %v", err)
	}
	un := h.unfinished()
	if len(un) != 1 || un[0].Serial != serial || un[0].Stage != enrol.StageSealed || len(un[0].Escrow) == 0 {
		t.Fatalf("journal: %+v", un)
	}
}

// namesCommand matches a keydesk command line in text meant for the
// desktop app. The practice reader's name, "… (keydesk virtual) 00 00",
// which a pulled key's error may quote, is not one.
var namesCommand = regexp.MustCompile(`keydesk (enrol|sync|piv|fido|recover|verify|idp|keys|settings|login)\b`)

// killAt has the desk's hook SIGKILL the registry process once, the first
// time key serial (0: any) reaches step.
func (h *harness) killAt(step enrol.Step, serial uint32) {
	var once sync.Once
	reg := fx.Registry // the process running now; restartRegistry replaces fx.Registry
	h.d.hook = func(ev enrol.Event) {
		if ev.Step == step && (serial == 0 || ev.Serial == serial) {
			once.Do(reg.Kill)
		}
	}
	h.t.Cleanup(func() { h.d.hook = nil })
}

// restartRegistry starts the registry process again on the same state and
// address.
func restartRegistry(t *testing.T) {
	t.Helper()
	u, _ := url.Parse(fx.Registry.URL)
	p, err := regtest.Start(bin, fx.State, "--practice", "--listen", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	fx.Registry = p
}

// enrolToRegister takes key serial for the user searched for through the
// checks and both PINs, up to where it is registered.
func (h *harness) enrolToRegister(w *wizard, f *follower, serial uint32, fidoPIN, pivPIN string) {
	h.t.Helper()
	h.waitKeyListed(w, serial)
	h.chooseKey(w, serial)
	h.press(fyne.KeyReturn)
	f.await("checks-passed")
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.FIDO2PIN))
	h.choosePIN(fidoPIN, fidoPIN)
	f.await("pin:" + string(enrol.PIVPIN))
	h.choosePIN(pivPIN, pivPIN)
}

// awaitWait waits until the wizard shows that it waits for the registry
// and checks the notice as a person sees it: what happens, how long is
// left, and what Cancel does (key serial set up; 0: nothing written yet).
func (h *harness) awaitWait(w *wizard, f *follower, serial uint32) {
	h.t.Helper()
	if s := f.await("registry-wait", stepResult); s != "registry-wait" {
		h.ui(func() {
			h.t.Fatalf("the enrolment stopped without waiting for the registry: %s / %s", w.resultHead.Text, w.resultText.Text)
		})
	}
	h.checkWaitNotice(w, serial)
}

// checkWaitNotice checks the registry-wait notice on screen.
func (h *harness) checkWaitNotice(w *wizard, serial uint32) {
	h.t.Helper()
	h.ui(func() {
		if !w.waitBox.Visible() || !w.cancel.Visible() || w.cancel.Disabled() {
			h.t.Fatalf("registry wait: notice shown %v, Cancel shown %v and enabled %v", w.waitBox.Visible(), w.cancel.Visible(), !w.cancel.Disabled())
		}
		label := w.waitLabel.Text
		if !regexp.MustCompile(`^The registry does not answer; keydesk (keeps trying \(\d+ s left\)|tries one last time)\. Keep the key inserted\.$`).MatchString(label) {
			h.t.Fatalf("registry wait notice: %q", label)
		}
		next := w.waitNext.Text
		if serial == 0 && next != "Cancel stops waiting. Nothing has been written to the key yet." ||
			serial != 0 && (!strings.Contains(next, fmt.Sprintf("key %d then stays set up", serial)) || !strings.Contains(next, "Unfinished enrolments")) {
			h.t.Fatalf("what Cancel does: %q", next)
		}
	})
}

// resumeFromStep1 goes back to the first step and presses Resume on the
// unfinished enrolment of key serial.
func (h *harness) resumeFromStep1(w *wizard, f *follower, serial uint32) {
	h.t.Helper()
	h.press(fyne.KeyReturn)
	f.await("unfinished-loaded")
	var resume *widget.Button
	h.ui(func() {
		for _, o := range w.unfinished.Objects {
			if c, ok := o.(*fyne.Container); ok {
				for _, oo := range c.Objects {
					if b, ok := oo.(*widget.Button); ok && strings.Contains(b.Text, strconv.FormatUint(uint64(serial), 10)) {
						resume = b
					}
				}
			}
		}
	})
	if resume == nil {
		h.t.Fatalf("no Resume button for key %d", serial)
	}
	h.ui(func() { test.Tap(resume) })
}

// TestWizardRegistryDownThenResume: the registry dies as the key is about
// to be registered and stays down longer than the wizard waits (a short
// wait, Config.RegistryWait). The wait is shown; when it runs out the
// result says the key is set up but not registered and waits in the
// outbox; the registry holds nothing of it. With the registry back, Resume
// on the Enrol screen finishes it.
func TestWizardRegistryDownThenResume(t *testing.T) {
	h := newHarness(t)
	h.d.cfg.RegistryWait = 2 * time.Second
	di := uniq("u-di")
	addUser(t, di, "Di Down")
	serial := h.serials[0]
	h.killAt(enrol.StepRegister, serial)
	w, f := h.openWizard(di)
	h.enrolToRegister(w, f, serial, "registry-down", "445566")
	h.awaitWait(w, f, serial)
	f.await(stepResult)
	h.ui(func() {
		txt := w.resultText.Text
		if w.resultHead.Text != "Enrolment stopped" || !strings.Contains(txt, "the registry could not be reached") ||
			!strings.Contains(txt, "not registered: the registration waits in this desk's outbox") || w.waitBox.Visible() {
			t.Fatalf("registry down: %s / %s (wait notice shown: %v)", w.resultHead.Text, txt, w.waitBox.Visible())
		}
	})
	ctx := context.Background()
	un := h.unfinished()
	if len(un) != 1 || un[0].Stage != enrol.StageQueued || len(un[0].Escrow) == 0 {
		t.Fatalf("journal: %+v", un)
	}
	pending, err := fx.Admin.Entries(ctx, client.Pending)
	if err != nil || len(pending) == 0 {
		t.Fatalf("outbox: %d pending, %v", len(pending), err)
	}
	restartRegistry(t)
	if _, err := fx.Admin.KeyBySerial(ctx, strconv.FormatUint(uint64(serial), 10)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("the registry holds a key that was never sent: %v", err)
	}
	// Back to the first step: the unfinished enrolment is offered.
	h.resumeFromStep1(w, f, serial)
	// The person types the key's PINs again: the PIV proof needs the PIV
	// PIN, as in a fresh enrolment.
	f.await("pin:" + string(enrol.FIDO2PIN))
	h.typeText("registry-down")
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.PIVPIN))
	h.typeText("445566")
	h.press(fyne.KeyReturn)
	f.await(stepResult)
	h.ui(func() {
		if len(w.results) != 1 || w.results[0].Status != registry.KeyActive || !w.results[0].PIVProof || !w.results[0].FIDO2Proof ||
			!strings.Contains(w.resultText.Text, "Proved to the registry: a PIV signature") {
			t.Fatalf("resumed: %+v: %s", w.results, w.resultText.Text)
		}
	})
	_, ks := userKeys(t, di)
	if len(ks) != 1 || activeKeys(ks) != 1 {
		t.Fatalf("registry after resume: %+v", ks)
	}
}

// TestWizardRegistryKilledWaitsThenFinishes: the registry process is
// SIGKILLed as the primary key is about to be registered, and started
// again on the same state once the wizard shows that it waits. The
// enrolment finishes in place — not resumed, no PIN asked again, with the
// PIV proof — the backup key follows, and the user is covered: two active
// keys, nothing left in the journal or the outbox.
func TestWizardRegistryKilledWaitsThenFinishes(t *testing.T) {
	h := newHarness(t)
	h.d.cfg.RegistryWait = wait // longer than the restart takes, however loaded the machine
	ev := uniq("u-ev")
	addUser(t, ev, "Ev Outage")
	primary := h.serials[0]
	h.killAt(enrol.StepRegister, primary)
	w, f := h.openWizard(ev)
	h.enrolToRegister(w, f, primary, "outage-pin", "112233")
	h.awaitWait(w, f, primary)
	restartRegistry(t)
	f.await("registry-back")
	if s := f.await("key-done", "pin:"+string(enrol.FIDO2PIN), stepResult); s != "key-done" {
		t.Fatalf("after the registry came back the wizard went to %s, want the key finished in place", s)
	}
	f.await(stepBackup)
	h.ui(func() {
		if w.waitBox.Visible() {
			t.Fatal("the wait notice is still shown with the registry back")
		}
	})
	h.press(fyne.KeyReturn)
	f.await("checks-passed")
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.FIDO2PIN))
	h.choosePIN("outage-backup", "outage-backup")
	f.await("pin:" + string(enrol.PIVPIN))
	h.choosePIN("332211", "332211")
	f.await(stepResult)
	h.ui(func() {
		if w.resultHead.Text != "Done" || len(w.results) != 2 || !strings.Contains(w.resultText.Text, "is covered") {
			t.Fatalf("result: %s / %s", w.resultHead.Text, w.resultText.Text)
		}
		for _, r := range w.results {
			if r.Status != registry.KeyActive || r.Resumed || !r.PIVProof || !r.FIDO2Proof {
				t.Fatalf("key %d: %s, resumed %v, proofs PIV %v FIDO2 %v", r.Serial, r.Status, r.Resumed, r.PIVProof, r.FIDO2Proof)
			}
		}
		if w.results[0].Serial != primary {
			t.Fatalf("primary %d, want %d", w.results[0].Serial, primary)
		}
	})
	_, ks := userKeys(t, ev)
	if activeKeys(ks) != 2 {
		t.Fatalf("registry holds %+v for %s", ks, ev)
	}
	if un := h.unfinished(); len(un) != 0 {
		t.Fatalf("unfinished: %+v", un[0])
	}
	if pend, err := fx.Admin.Entries(context.Background(), client.Pending); err != nil || len(pend) != 0 {
		t.Fatalf("outbox: %d pending, %v", len(pend), err)
	}
}

// TestWizardRegistryDownBeforeKeyTouched: the registry process is
// SIGKILLed as the enrolment looks the user up, before anything is written
// to the key. The checks step shows the wait, saying nothing was written;
// with the registry restarted the enrolment runs from the start and
// finishes: the key active, nothing unfinished.
func TestWizardRegistryDownBeforeKeyTouched(t *testing.T) {
	h := newHarness(t)
	h.d.cfg.RegistryWait = wait
	fy := uniq("u-fy")
	addUser(t, fy, "Fy Early")
	serial := h.serials[0]
	h.killAt(enrol.StepUser, 0)
	w, f := h.openWizard(fy)
	h.waitKeyListed(w, serial)
	h.chooseKey(w, serial)
	h.press(fyne.KeyReturn)
	h.awaitWait(w, f, 0)
	h.ui(func() {
		if w.step != stepChecks || !strings.HasPrefix(w.checkReg.Text, "…") {
			t.Fatalf("waiting on step %s, registry check %q", w.step, w.checkReg.Text)
		}
	})
	restartRegistry(t)
	f.await("registry-back")
	f.await("checks-passed")
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.FIDO2PIN))
	h.choosePIN("early-outage", "early-outage")
	f.await("pin:" + string(enrol.PIVPIN))
	h.choosePIN("445577", "445577")
	f.await(stepBackup)
	h.press(fyne.KeyEscape)
	f.await(stepResult)
	h.ui(func() {
		if w.resultHead.Text != "Done" || len(w.results) != 1 || w.results[0].Status != registry.KeyActive || w.results[0].Resumed {
			t.Fatalf("result: %s / %s", w.resultHead.Text, w.resultText.Text)
		}
	})
	if un := h.unfinished(); len(un) != 0 {
		t.Fatalf("unfinished: %+v", un[0])
	}
}

// TestWizardCancelRegistryWait: Cancel while the wizard waits for a
// registry that was SIGKILLed stops waiting at once; the result says so and
// the key is kept under "Unfinished enrolments". Resumed from there with
// the registry still down, it waits again (the notice naming the key as
// set up) and finishes once the registry is restarted, with the PIV proof.
func TestWizardCancelRegistryWait(t *testing.T) {
	h := newHarness(t)
	h.d.cfg.RegistryWait = wait
	cy := uniq("u-cy")
	addUser(t, cy, "Cy Cancel")
	serial := h.serials[0]
	h.killAt(enrol.StepRegister, serial)
	w, f := h.openWizard(cy)
	h.enrolToRegister(w, f, serial, "cancel-wait", "778899")
	h.awaitWait(w, f, serial)
	h.ui(func() { test.Tap(w.cancel) })
	f.await("wait-cancelled")
	f.await(stepResult)
	h.ui(func() {
		txt := w.resultText.Text
		if w.resultHead.Text != "Stopped waiting for the registry" || !strings.Contains(txt, "Unfinished enrolments") || w.waitBox.Visible() {
			t.Fatalf("cancelled wait: %s / %s", w.resultHead.Text, txt)
		}
	})
	if un := h.unfinished(); len(un) != 1 || un[0].Serial != serial || un[0].Stage != enrol.StageQueued {
		t.Fatalf("journal: %+v", un)
	}
	// Resume with the registry still down: the resume waits for it as
	// an enrolment does, and finishes once it is back.
	h.resumeFromStep1(w, f, serial)
	waited := false
	for done := false; !done; {
		switch f.await("pin:"+string(enrol.FIDO2PIN), "pin:"+string(enrol.PIVPIN), "registry-wait", stepResult) {
		case "pin:" + string(enrol.FIDO2PIN):
			h.typeText("cancel-wait")
			h.press(fyne.KeyReturn)
		case "pin:" + string(enrol.PIVPIN):
			h.typeText("778899")
			h.press(fyne.KeyReturn)
		case "registry-wait":
			if waited {
				t.Fatal("the resume waited again with the registry back")
			}
			waited = true
			h.checkWaitNotice(w, serial)
			restartRegistry(t)
		case stepResult:
			done = true
		}
	}
	h.ui(func() {
		if !waited || len(w.results) != 1 || w.results[0].Status != registry.KeyActive || !w.results[0].PIVProof {
			t.Fatalf("resumed (waited %v): %+v: %s", waited, w.results, w.resultText.Text)
		}
	})
}

// openBatch shows the Batch screen and checks the roster at path, typed.
func (h *harness) openBatch(path string) (*batch, *follower) {
	h.t.Helper()
	var b *batch
	h.ui(func() {
		b = newBatch(h.env, h.d)
		h.win.SetContent(b.root)
		h.win.Canvas().Focus(b.path)
	})
	f := &follower{t: h.t, tr: &b.trail}
	h.typeText(path)
	h.press(fyne.KeyReturn)
	return b, f
}

// waitBatchKeys waits until the Batch screen's key list (the feed's) shows
// the fresh keys: the desk's watcher has read them, as on a desk where the
// keys were plugged in before the roster was opened.
func (h *harness) waitBatchKeys(b *batch) {
	h.t.Helper()
	keys := &follower{t: h.t, tr: &b.trail}
	for seen := 0; seen < len(h.serials); {
		seen = 0
		h.ui(func() {
			for _, k := range b.keys {
				for _, s := range h.serials {
					if k.Serial == s && whole(&k) {
						seen++
					}
				}
			}
		})
		if seen < len(h.serials) {
			keys.await("keys")
		}
	}
}

func writeRoster(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "roster.csv")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBatchTwoUsersTwoKeys: a roster of two users with two keys each. The
// two attached keys are taken first; for the third and fourth the screen
// asks for a key and the admin swaps an enrolled one for a fresh one.
func TestBatchTwoUsersTwoKeys(t *testing.T) {
	h := newHarness(t)
	b1, b2 := uniq("u-b1"), uniq("u-b2")
	path := writeRoster(t, "external_id,display_name,email,keys\n"+b1+",Bea One,b1@example.org,2\n"+b2+",Ben Two,b2@example.org,2\n")
	b, f := h.openBatch(path)
	f.await(batchChecked)
	h.waitBatchKeys(b)
	h.press(fyne.KeyReturn)
	f.await(batchRunning)
	pins := 0
	for done := false; !done; {
		switch s := f.await("pin:"+string(enrol.FIDO2PIN), "pin:"+string(enrol.PIVPIN), batchInsert, batchDone); s {
		case "pin:" + string(enrol.FIDO2PIN):
			h.choosePIN("batch-pin-1", "batch-pin-1")
			pins++
		case "pin:" + string(enrol.PIVPIN):
			h.choosePIN("97531", "975310")
			h.ui(func() {
				if !strings.Contains(b.pin.problem.Text, "differ") {
					t.Fatalf("mismatch in a batch: %q", b.pin.problem.Text)
				}
			})
			h.choosePIN("975310", "975310")
		case batchInsert:
			// The admin's hands: an enrolled key out, a fresh one in.
			swapped := false
			for i := range fx.Fleet.Keys {
				s := fx.Serial(i)
				if kd, err := fx.Admin.KeyBySerial(context.Background(), strconv.FormatUint(uint64(s), 10)); err == nil && kd.Status == registry.KeyActive {
					if _, err := fx.Fleet.Replace(s); err != nil {
						t.Fatal(err)
					}
					swapped = true
					break
				}
			}
			if !swapped {
				t.Fatalf("asked for a key with no enrolled key to swap (fleet %v, states %v)", h.fleetSerials(), b.trail.states())
			}
		case batchDone:
			done = true
		}
	}
	if pins != 4 {
		t.Fatalf("%d FIDO2 PINs chosen, want 4", pins)
	}
	h.ui(func() {
		if !strings.Contains(b.report.Text, "4 keys enrolled in this run, 0 users incomplete") {
			t.Fatalf("report: %s", b.report.Text)
		}
		for _, id := range []string{b1, b2} {
			r := b.users[id].label.Text
			if !strings.Contains(r, "done, covered") || !strings.Contains(r, "primary key") || !strings.Contains(r, "backup key") {
				t.Fatalf("row %s: %s", id, r)
			}
		}
		if b.overall.Value != b.overall.Max {
			t.Fatalf("overall progress %v of %v", b.overall.Value, b.overall.Max)
		}
	})
	for _, id := range []string{b1, b2} {
		if _, ks := userKeys(t, id); activeKeys(ks) != 2 {
			t.Fatalf("%s holds %+v", id, ks)
		}
	}
}

// TestBatchMalformedRefused: a roster with a bad row names it and starts
// nothing, not even the good rows; a file whose header is wrong is refused
// whole.
func TestBatchMalformedRefused(t *testing.T) {
	h := newHarness(t)
	m1 := uniq("u-m1")
	path := writeRoster(t, "external_id,display_name,email\n"+m1+",Good Row,m1@example.org\nu-m2,Bad Row,not-an-address\n")
	b, f := h.openBatch(path)
	f.await(batchRefused)
	h.ui(func() {
		if len(b.rows.Objects) != 1 || !strings.Contains(b.rows.Objects[0].(*widget.Label).Text, "line 3, column email") {
			t.Fatalf("rows: %d", len(b.rows.Objects))
		}
		if !strings.Contains(b.status.Text, "Nothing was started") || !b.start.Disabled() {
			t.Fatalf("status %q, start disabled %v", b.status.Text, b.start.Disabled())
		}
	})
	h.press(fyne.KeyReturn) // Enter in the path field checks again; nothing starts
	f.await(batchRefused)
	if u, _ := userKeys(t, m1); u.ID != "" {
		t.Fatal("a row of a refused roster reached the registry")
	}
	bad := writeRoster(t, "id,name\nx,y\n")
	h.ui(func() { b.path.SetText(bad); h.win.Canvas().Focus(b.path) })
	h.press(fyne.KeyReturn)
	f.await(batchRefused)
	h.ui(func() {
		if !strings.Contains(b.status.Text, "roster header: unknown column") || !b.start.Disabled() {
			t.Fatalf("header: %q", b.status.Text)
		}
	})
}

// TestScreensByRole: the wizard is for admins and the helpdesk, the batch
// for admins; the ids are the ones the shell and its shortcuts use.
func TestScreensByRole(t *testing.T) {
	s := Screens()
	if len(s) != 2 || s[0].ID != "enrol" || s[1].ID != "batch" || s[0].Make == nil || s[1].Make == nil {
		t.Fatalf("screens %+v", s)
	}
	for _, c := range []struct {
		role         uikit.Role
		enrol, batch bool
	}{{uikit.Admin, true, true}, {uikit.Helpdesk, true, false}, {uikit.Self, false, false}} {
		env := &uikit.Env{Role: c.role}
		if s[0].Visible(env) != c.enrol || s[1].Visible(env) != c.batch {
			t.Errorf("%s sees enrol %v, batch %v", c.role, s[0].Visible(env), s[1].Visible(env))
		}
	}
}

// TestWizardCancelMidEnrolment: Escape while the key is being set up stops
// the enrolment; the result names the stage and says the key is half set
// up, and the journal holds it.
func TestWizardCancelMidEnrolment(t *testing.T) {
	h := newHarness(t)
	eve := uniq("u-eve")
	addUser(t, eve, "Eve Escape")
	serial := h.serials[0]
	reached, release := make(chan struct{}), make(chan struct{})
	h.d.hook = func(ev enrol.Event) {
		if ev.Step == enrol.StepFIDO2 && ev.Serial == serial {
			close(reached)
			<-release
		}
	}
	w, f := h.openWizard(eve)
	h.waitKeyListed(w, serial)
	h.chooseKey(w, serial)
	h.press(fyne.KeyReturn)
	f.await("checks-passed")
	h.press(fyne.KeyReturn)
	f.await("pin:" + string(enrol.FIDO2PIN))
	h.choosePIN("escape-pin-1", "escape-pin-1")
	f.await("pin:" + string(enrol.PIVPIN))
	h.choosePIN("778899", "778899")
	ok := false
	uitest.Unlocked(func() {
		select {
		case <-reached:
			ok = true
		case <-time.After(wait):
		}
	})
	if !ok {
		t.Fatal("enrolment never reached the FIDO2 credential")
	}
	f.await(stepProgress)
	h.press(fyne.KeyEscape)
	close(release)
	f.await(stepResult)
	h.ui(func() {
		if w.resultHead.Text != "Cancelled" || !strings.Contains(w.resultText.Text, "was cancelled at stage") ||
			!strings.Contains(w.resultText.Text, "half set up and nothing was registered") {
			t.Fatalf("cancelled mid-enrolment: %s / %s", w.resultHead.Text, w.resultText.Text)
		}
	})
	if un := h.unfinished(); len(un) != 1 || un[0].Serial != serial {
		t.Fatalf("journal: %+v", un)
	}
	if _, err := fx.Admin.KeyBySerial(context.Background(), strconv.FormatUint(uint64(serial), 10)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("registry after a cancel: %v", err)
	}
}

// TestBatchUserFailsOthersGoOn: the first user's key is pulled mid-way; that
// user's row says FAILED with the cause and the next step, and the batch
// goes on to enrol the next user.
func TestBatchUserFailsOthersGoOn(t *testing.T) {
	h := newHarness(t)
	p1, p2 := uniq("u-p1"), uniq("u-p2")
	h.d.hook = func(ev enrol.Event) {
		if ev.Step == enrol.StepCert && ev.User == p1 {
			fx.Fleet.Find(ev.Serial).Key.Remove()
		}
	}
	path := writeRoster(t, "external_id,display_name,email,keys\n"+p1+",Pat Pulled,p1@example.org,1\n"+p2+",Pam Fine,p2@example.org,1\n")
	b, f := h.openBatch(path)
	f.await(batchChecked)
	h.waitBatchKeys(b)
	h.press(fyne.KeyReturn)
	for done := false; !done; {
		switch f.await("pin:"+string(enrol.FIDO2PIN), "pin:"+string(enrol.PIVPIN), batchInsert, batchDone) {
		case "pin:" + string(enrol.FIDO2PIN):
			h.choosePIN("batch-pin-2", "batch-pin-2")
		case "pin:" + string(enrol.PIVPIN):
			h.choosePIN("864200", "864200")
		case batchInsert:
			t.Fatalf("asked for a key with a fresh one attached (states %v)", b.trail.states())
		case batchDone:
			done = true
		}
	}
	h.ui(func() {
		r1, r2 := b.users[p1].label.Text, b.users[p2].label.Text
		if !strings.Contains(r1, "FAILED after 0 of 1 key:") || !strings.Contains(r1, "Next step:") || !strings.Contains(r1, "half set up") || namesCommand.MatchString(r1) {
			t.Fatalf("failed user's row: %s", r1)
		}
		if !strings.Contains(r2, "done") || !strings.Contains(r2, "primary key") {
			t.Fatalf("next user's row: %s", r2)
		}
		if !strings.Contains(b.report.Text, "1 key enrolled in this run, 1 user incomplete") {
			t.Fatalf("report: %s", b.report.Text)
		}
	})
	if _, ks := userKeys(t, p2); activeKeys(ks) != 1 {
		t.Fatalf("%s holds %+v", p2, ks)
	}
}

// TestUserLine: a user without an email is listed without an empty part.
func TestUserLine(t *testing.T) {
	for _, c := range []struct {
		u    registry.User
		want string
	}{
		{registry.User{DisplayName: "Ada Lovelace", ExternalID: "ada", Email: "ada@example.org"}, "Ada Lovelace · ada · ada@example.org"},
		{registry.User{DisplayName: "Ada Lovelace", ExternalID: "ada"}, "Ada Lovelace · ada"},
		{registry.User{ExternalID: "ada"}, "ada"},
	} {
		if got := userLine(c.u); got != c.want {
			t.Errorf("userLine(%+v) = %q, want %q", c.u, got, c.want)
		}
	}
}

// click does what a click on row i of l does in Fyne: the list takes the
// keyboard focus, then the row is selected.
func (h *harness) click(l *enterList, i int) {
	h.t.Helper()
	h.ui(func() {
		h.win.Canvas().Focus(l)
		l.Select(i)
	})
}

// TestWizardEnterAfterAClick: a user and then a key chosen with the mouse
// (which gives the list the keyboard focus); "press Enter" then goes on,
// as the step says, and Escape cancels.
func TestWizardEnterAfterAClick(t *testing.T) {
	h := newHarness(t)
	eve := uniq("u-eve")
	addUser(t, eve, "Eve Clicker")
	var w *wizard
	h.ui(func() {
		w = newWizard(h.env, h.d)
		h.win.SetContent(w.root)
	})
	f := &follower{t: h.t, tr: &w.trail}
	f.await("users-loaded")
	h.ui(func() { h.win.Canvas().Focus(w.search) })
	h.typeText(eve)
	h.click(w.userList, 0)
	h.ui(func() {
		if w.user.ExternalID != eve {
			t.Fatalf("clicked user %+v", w.user)
		}
	})
	h.press(fyne.KeyReturn)
	f.await(stepKey)
	h.waitKeyListed(w, h.serials[0])
	var row int
	h.ui(func() {
		for i, k := range w.keys {
			if k.Serial == h.serials[0] {
				row = i
			}
		}
	})
	h.click(w.keyList, row)
	h.ui(func() {
		if want := fmt.Sprintf("Key %d chosen. Press Enter to check it.", h.serials[0]); w.keyNote.Text != want {
			t.Fatalf("key note %q, want %q", w.keyNote.Text, want)
		}
	})
	h.press(fyne.KeyReturn)
	f.await("checks-passed")
	h.press(fyne.KeyEscape)
	f.await(stepResult)
	h.ui(func() {
		if w.resultHead.Text != "Cancelled" {
			t.Fatalf("after Escape: %s", w.resultHead.Text)
		}
	})
}
