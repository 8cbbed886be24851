package helpdeskui_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/recover"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/helpdeskui"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

func TestMain(m *testing.M) {
	if blockPINChild() {
		return
	}
	uitest.Main(m, 2)
}

// blockPINChild is the other program of TestChangesFromElsewhere: run with
// KEYDESK_TEST_BLOCK_PIN=READER|SERIAL it types wrong PIV PINs on that key
// until the PIN is blocked, as "keydesk piv change-pin" with a mistyped
// current PIN does, and exits. It reaches the key through PC/SC as any
// program does (the practice keys' pcscd, named by PCSCLITE_CSOCK_NAME,
// inherited).
func blockPINChild() bool {
	arg := os.Getenv("KEYDESK_TEST_BLOCK_PIN")
	if arg == "" {
		return false
	}
	reader, serial, _ := strings.Cut(arg, "|")
	n, _ := strconv.ParseUint(serial, 10, 32)
	card := pivkey.Open(reader, uint32(n))
	for i := 0; i < 10; i++ {
		err := card.ChangePIN(context.Background(), "000000", "000000")
		var wrong *device.WrongPINError
		switch {
		case errors.Is(err, device.ErrPINBlocked), errors.As(err, &wrong) && wrong.Retries == 0:
			os.Exit(0)
		case errors.As(err, &wrong):
		default:
			fmt.Fprintln(os.Stderr, "a wrong PIN was not refused as one:", err)
			os.Exit(1)
		}
	}
	fmt.Fprintln(os.Stderr, "the PIN was not blocked after 10 wrong PINs")
	os.Exit(1)
	return true
}

// within is how long the test waits for a change made elsewhere to show
// on the Helpdesk screen, with nothing clicked. The promise is a second,
// as on Keys; the time is logged, and the Keys screen's
// BenchmarkChangeFromElsewhere measures the key-state model behind both
// (a pass/fail bound of a second fails on a loaded machine).
const within = 10 * time.Second

const wait = 30 * time.Second

const pivPIN = "246810"

// user is the person whose two keys the tests enrolled last; "" when the
// keys must be enrolled afresh (at the start, and after a test that marked
// one lost).
var user string

// runs counts the enrolments, so each gets its own person: the registry
// lives as long as the test binary, across -count runs.
var runs int

// enrol enrols both practice keys for a person, a primary and a backup,
// unless that was done and no test has changed them since; keys enrolled
// before are swapped for factory-fresh ones first, as a desk unpacks new
// keys. It returns the person's external id.
func enrol(t *testing.T) string {
	t.Helper()
	if user != "" {
		return user
	}
	ctx := context.Background()
	runs++
	ext := fmt.Sprintf("ada-%03d", runs)
	for i, role := range []registry.KeyRole{registry.RolePrimary, registry.RoleBackup} {
		if runs > 1 {
			if _, err := uitest.Fleet.Fleet.Replace(uitest.Fleet.Serial(i)); err != nil {
				t.Fatal(err)
			}
		}
		k, err := recover.WaitWhole(ctx, uitest.Fleet.Keys, uitest.Fleet.Serial(i), true, true, wait)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := enroltest.Enrol(ctx, uitest.Fleet.Keys, uitest.Fleet.Admin, k, enroltest.Options{User: ext, Role: role, PIVPIN: pivPIN, FIDOPIN: "fido-2468", Recipients: []string{uitest.Fleet.Recipient}}); err != nil {
			t.Fatal(err)
		}
	}
	user = ext
	return ext
}

func open(t *testing.T, reg *client.Client) (*uikit.Env, *helpdeskui.View) {
	t.Helper()
	env := uitest.Env(t, uikit.Helpdesk, "", reg)
	v := helpdeskui.New(env)
	v.Identity = func() (string, error) { return uitest.Fleet.Identity, nil }
	env.Window.SetContent(v.Root)
	uitest.WaitFor(t, wait, "the first key offered", func() bool { return v.Attached.SelectedIndex() == 0 && !v.Diagnose.Disabled() })
	return env, v
}

func result(t *testing.T, v *helpdeskui.View, want string) {
	t.Helper()
	uitest.WaitFor(t, wait, "result saying "+want, func() bool { return strings.Contains(v.Result.Text, want) && !v.Cancel.Visible() })
}

// blockFIDO uses up the FIDO2 PIN's tries on the first key, reinserting it
// after every third, as the key asks.
func blockFIDO(t *testing.T, env *uikit.Env) {
	t.Helper()
	defer env.HoldKeys()()
	ctx := context.Background()
	for i := 0; i < 8; i++ {
		k, err := recover.WaitWhole(ctx, uitest.Fleet.Keys, uitest.Fleet.Serial(0), false, true, wait)
		if err != nil {
			t.Fatal(err)
		}
		dev, _ := uitest.Fleet.Keys.FIDO(k)
		err = dev.ChangePIN(ctx, "wrong-pin", "fido-9999")
		switch {
		case errors.Is(err, device.ErrPINAuthBlocked):
			uitest.Fleet.Fleet.Keys[0].Key.PowerCycle()
			i--
		case err == nil:
			t.Fatal("a wrong FIDO2 PIN was accepted")
		}
	}
}

// blockPIV uses up the PIV PIN's tries on the first key.
func blockPIV(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	k, err := uitest.Fleet.Key(ctx, uitest.Fleet.Serial(0))
	if err != nil {
		t.Fatal(err)
	}
	card, _ := uitest.Fleet.Keys.PIV(k)
	for i := 0; i < 3; i++ {
		card.ChangePIN(ctx, "000000", "000000")
	}
	st, err := card.Status(ctx)
	if err != nil || st.PINRetries != 0 {
		t.Fatalf("PIN not blocked: %+v, %v", st, err)
	}
}

func diagnose(t *testing.T, v *helpdeskui.View) *recover.Diagnosis {
	t.Helper()
	v.Last = nil
	test.Tap(v.Diagnose)
	uitest.WaitFor(t, wait, "the diagnosis", func() bool { return v.Last != nil && !v.Cancel.Visible() })
	return v.Last
}

// newPIN types pin and its repeat into the new-PIN dialog open now and
// presses OK.
func newPIN(t *testing.T, v *helpdeskui.View, pin, again string) {
	t.Helper()
	if v.NewPIN == nil || !v.NewPIN.Open() {
		t.Fatal("no new-PIN dialog open")
	}
	test.Type(v.NewPIN.Entries[0], pin)
	test.Type(v.NewPIN.Entries[1], again)
	test.Tap(v.NewPIN.OK)
}

// auditCount is how many audit entries with action the registry holds.
func auditCount(t *testing.T, action string) int {
	t.Helper()
	var out struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := uitest.Fleet.AdminCall("GET", "/v1/audit?limit=1000&action="+action, nil, &out); err != nil {
		t.Fatal(err)
	}
	return len(out.Entries)
}

// noCommandLines fails when the window tells its user to run a keydesk
// command: the desktop app names its buttons and screens.
func noCommandLines(t *testing.T, env *uikit.Env) {
	t.Helper()
	if c := uitest.CLICommand(uitest.WindowText(env.Window)); c != "" {
		t.Errorf("the window shows a command line: %q", c)
	}
}

// redButtons counts the red (destructive) buttons shown.
func redButtons(env *uikit.Env) int {
	n := 0
	uitest.Visible(env.Window, func(o fyne.CanvasObject) {
		if b, ok := o.(*widget.Button); ok && b.Importance == widget.DangerImportance {
			n++
		}
	})
	return n
}

// TestUnblockWithoutIdentity: with no helpdesk identity in the keyring the
// escrowed PUK cannot be opened; the screen says so and the key is left
// as it was.
func TestUnblockWithoutIdentity(t *testing.T) {
	enrol(t)
	env, v := open(t, uitest.Fleet.Helpdesk)
	v.Identity = func() (string, error) { return "", errors.New("no such secret in the keyring") }
	diagnose(t, v)
	// A PIN that is not forgotten can still be set anew (the person forgot
	// it); the button says so.
	if v.UnblockPIV.Disabled() || v.UnblockPIV.Text != "Set a new PIV PIN" {
		t.Fatalf("unblock on a healthy key: %q, enabled %v", v.UnblockPIV.Text, !v.UnblockPIV.Disabled())
	}
	// Two different PINs: the dialog stays, says so, and nothing is done.
	test.Tap(v.UnblockPIV)
	newPIN(t, v, "135790", "135791")
	if !v.NewPIN.Open() || !strings.Contains(v.NewPIN.Check.Text, "differ") || v.Cancel.Visible() {
		t.Fatalf("mistyped PINs: open %v, %q", v.NewPIN.Open(), v.NewPIN.Check.Text)
	}
	newPIN(t, v, "135790", "135790")
	result(t, v, "failed")
	if !strings.Contains(v.Result.Text, "identity") {
		t.Fatalf("failure %q does not name the identity", v.Result.Text)
	}
	if v.Result.Importance != widget.DangerImportance {
		t.Errorf("the failure is not in the error colour (importance %v)", v.Result.Importance)
	}
	// Said once, on the screen: no dialog repeats it.
	if n := len(env.Window.Canvas().Overlays().List()); n != 0 {
		t.Errorf("%d dialogs open beside the failure line", n)
	}
}

// TestUnblockPIVPIN: the person's primary key, picked from a search, is
// diagnosed at once: its blocked PIV PIN with the button to press as the
// next step, no command line anywhere, the unblock the highlighted action
// and "mark lost" neither the first nor the only one. A new PIN of five
// digits is refused in the dialog, with the rule shown before typing, and
// no escrow is opened; a good one unblocks the PIN with the PUK escrowed
// at enrolment.
func TestUnblockPIVPIN(t *testing.T) {
	ada := enrol(t)
	blockPIV(t)
	env, v := open(t, uitest.Fleet.Helpdesk)
	s0 := fmt.Sprint(uitest.Fleet.Serial(0))
	test.Type(v.Search, ada)
	test.Tap(v.Find)
	uitest.WaitFor(t, wait, "both keys found", func() bool { return len(v.FoundSerials()) == 2 && !v.Cancel.Visible() })
	v.Found.Select(slices.Index(v.FoundSerials(), s0))
	uitest.WaitFor(t, wait, "the picked key diagnosed", func() bool { return v.Last != nil && !v.Cancel.Visible() })
	d := v.Last
	if !d.Has(recover.PIVPINBlocked) || d.User.ExternalID != ada || fmt.Sprint(d.Serial) != s0 {
		t.Fatalf("diagnosis: problems %v, user %q, key %d", d.Problems, d.User.ExternalID, d.Serial)
	}
	if !strings.Contains(v.Steps.Text, "press Unblock PIV PIN") || !strings.Contains(v.Steps.Text, "the PIV PIN is blocked") {
		t.Fatalf("steps %q lack the next step", v.Steps.Text)
	}
	if !strings.Contains(v.Diagnosis.Text, "PIV PIN: 0 tries left; PUK: 3 tries left") {
		t.Errorf("diagnosis %q", v.Diagnosis.Text)
	}
	noCommandLines(t, env)
	// The actions follow the diagnosis: unblock, highlighted; no FIDO2
	// reset for a FIDO2 PIN that works; mark lost enabled but not alone.
	if v.UnblockPIV.Disabled() || v.UnblockPIV.Importance != widget.HighImportance || v.UnblockPIV.Text != "Unblock PIV PIN" {
		t.Errorf("unblock: enabled %v, importance %v, %q", !v.UnblockPIV.Disabled(), v.UnblockPIV.Importance, v.UnblockPIV.Text)
	}
	if !v.ResetFIDO.Disabled() {
		t.Error("FIDO2 reset offered for a FIDO2 PIN that is not blocked")
	}
	if v.MarkLost.Disabled() {
		t.Error("mark lost not offered for the key on screen")
	}
	if n := redButtons(env); n != 1 {
		t.Errorf("%d red buttons on the screen, want only Mark lost", n)
	}
	var order []*widget.Button
	uitest.Visible(env.Window, func(o fyne.CanvasObject) {
		if b, ok := o.(*widget.Button); ok && (b == v.UnblockPIV || b == v.ResetFIDO || b == v.Replace || b == v.MarkLost) {
			order = append(order, b)
		}
	})
	if len(order) != 4 || order[3] != v.MarkLost {
		t.Errorf("mark lost is not the last of the actions (%d actions)", len(order))
	}
	uitest.MatchImage(t, "helpdesk.png", env.Window.Canvas().Capture())

	// Five digits: refused in the dialog, which showed the rule before
	// anything was typed; nothing is opened.
	opened := auditCount(t, "recovery.escrow_opened")
	test.Tap(v.UnblockPIV)
	if !strings.Contains(v.NewPIN.Rule.Text, "6 to 8 characters") || v.NewPIN.Check.Visible() {
		t.Fatalf("rule before typing: %q (check shown %v)", v.NewPIN.Rule.Text, v.NewPIN.Check.Visible())
	}
	newPIN(t, v, "13579", "13579")
	if !v.NewPIN.Open() || v.Cancel.Visible() || !strings.Contains(v.NewPIN.Check.Text, "6 to 8 characters; this one has 5") || v.NewPIN.Check.Importance != widget.DangerImportance {
		t.Fatalf("five digits: open %v, %q, importance %v", v.NewPIN.Open(), v.NewPIN.Check.Text, v.NewPIN.Check.Importance)
	}
	if n := auditCount(t, "recovery.escrow_opened"); n != opened {
		t.Fatalf("a refused unblock opened the escrow (%d escrow_opened entries, %d before)", n, opened)
	}
	noCommandLines(t, env)
	newPIN(t, v, "135790", "135790")
	result(t, v, "with the escrowed PUK")
	if n := auditCount(t, "recovery.escrow_opened"); n != opened+1 {
		t.Errorf("the unblock left %d escrow_opened entries, %d before", n, opened)
	}
	// The diagnosis above is the key's state now, not the blocked PIN that
	// asked for the unblock.
	if v.Last == nil || v.Last.Has(recover.PIVPINBlocked) || !strings.Contains(v.Diagnosis.Text, "PIV PIN: 3 tries left") || !strings.HasPrefix(v.Steps.Text, "No problem found.") {
		t.Fatalf("after the unblock the screen says %q / %q", v.Diagnosis.Text, v.Steps.Text)
	}
	if v.Result.Importance == widget.DangerImportance {
		t.Error("a success shown in the error colour")
	}
	ctx := context.Background()
	k, _ := uitest.Fleet.Key(ctx, uitest.Fleet.Serial(0))
	card, _ := uitest.Fleet.Keys.PIV(k)
	if err := card.ChangePIN(ctx, "135790", pivPIN); err != nil {
		t.Fatalf("the new PIN does not work: %v", err)
	}
}

// TestSearchAndMarkLost: a search by name finds both of ada's keys; the
// backup, picked, is diagnosed, then marked lost after its serial is
// typed, with an access pass; its diagnosis is read again and shows it
// lost. A fresh key is then enrolled as the replacement and diagnosed.
func TestSearchAndMarkLost(t *testing.T) {
	ada := enrol(t)
	// The keys are changed for good: the next test enrols afresh.
	t.Cleanup(func() { user = "" })
	env, v := open(t, uitest.Fleet.Helpdesk)
	s0, s1 := fmt.Sprint(uitest.Fleet.Serial(0)), fmt.Sprint(uitest.Fleet.Serial(1))
	diagnose(t, v)
	if !strings.Contains(v.Diagnosis.Text, s1+" backup active") {
		t.Fatalf("the diagnosis does not list the backup as active: %q", v.Diagnosis.Text)
	}
	test.Type(v.Search, ada)
	test.Tap(v.Find)
	uitest.WaitFor(t, wait, "both keys found", func() bool {
		f := v.FoundSerials()
		return len(f) == 2 && slices.Contains(f, s0) && slices.Contains(f, s1)
	})
	v.Found.Select(slices.Index(v.FoundSerials(), s1))
	uitest.WaitFor(t, wait, "the backup diagnosed", func() bool { return v.Last != nil && fmt.Sprint(v.Last.Serial) == s1 && !v.Cancel.Visible() })
	if v.Attached.Selected == "" || !strings.Contains(v.Attached.Selected, s1) {
		t.Errorf("the picked key is not the one chosen above: %q", v.Attached.Selected)
	}
	test.Tap(v.MarkLost)
	entry, ok := env.Window.Canvas().Focused().(*uikit.Entry)
	if !ok {
		t.Fatal("no confirmation asking for the serial")
	}
	test.Type(entry, s1)
	entry.OnSubmitted(entry.Text)
	result(t, v, "marked lost")
	if !strings.Contains(v.Result.Text, "1 active key left") {
		t.Fatalf("result %q", v.Result.Text)
	}
	if !strings.Contains(v.Diagnosis.Text, s1+" backup lost") || v.Last == nil || fmt.Sprint(v.Last.Serial) != s1 || !v.MarkLost.Disabled() {
		t.Fatalf("the diagnosis was not read again after the key was marked lost: %q", v.Diagnosis.Text)
	}
	noCommandLines(t, env)
	if v.Pass == "" {
		t.Fatal("no temporary access pass shown")
	}
	k, _, _, err := recover.Find(context.Background(), uitest.Fleet.Admin, s1)
	if err != nil || k.Status != registry.KeyLost {
		t.Fatalf("registry has key %s as %s, %v", s1, k.Status, err)
	}

	// A fresh key takes the lost one's place in the reader and is enrolled
	// as ada's new backup.
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	st := env.Settings()
	st.HelpdeskRecipients = []string{uitest.Fleet.Recipient}
	env.Settings = func() settings.Settings { return st }
	reply, err := sim.Control(uitest.SimDir(), "replace "+s1)
	if err != nil {
		t.Fatal(err)
	}
	fresh := strings.Fields(reply)[len(strings.Fields(reply))-1]
	uitest.WaitFor(t, wait, "the fresh key offered", func() bool {
		for i, o := range v.Attached.Options {
			if strings.Contains(o, fresh) {
				v.Attached.SetSelectedIndex(i)
				return !v.Replace.Disabled()
			}
		}
		return false
	})
	if !v.UnblockPIV.Disabled() || !v.ResetFIDO.Disabled() {
		t.Fatal("recovery steps offered for the fresh key on the strength of another key's diagnosis")
	}
	v.Form = nil
	test.Tap(v.Replace)
	var answered *uikit.SecretForm
	uitest.WaitFor(t, 2*wait, "the replacement enrolled", func() bool {
		if f := v.Form; f != nil && f != answered {
			answered = f
			if v.Touch.Visible() {
				t.Error("a touch prompt beside a PIN dialog")
			}
			pin := "fido-97531"
			if strings.Contains(f.Labels[0], "PIV") {
				pin = "975310"
			}
			for _, e := range f.Entries {
				e.SetText(pin)
			}
			go f.Submit()
		}
		return v.Replaced != nil || strings.Contains(v.Result.Text, "failed")
	})
	if v.Replaced == nil {
		t.Fatalf("replacement: %s", v.Result.Text)
	}
	if fmt.Sprint(v.Replaced.Serial) != fresh || v.Replaced.Role != registry.RoleBackup || v.Replaced.ExternalID != ada {
		t.Fatalf("replacement %+v", v.Replaced)
	}
	// The screen shows the replacement's own diagnosis.
	result(t, v, "enrolled for "+ada)
	if v.Last == nil || fmt.Sprint(v.Last.Serial) != fresh || !strings.HasPrefix(v.Steps.Text, "No problem found.") || !strings.Contains(v.Diagnosis.Text, fresh+" backup active") {
		t.Fatalf("after the replacement the screen says %q / %q", v.Diagnosis.Text, v.Steps.Text)
	}
}

// TestResetFIDO2: a FIDO2 reset is offered only for a blocked FIDO2 PIN;
// it asks for the key's serial and a new PIN (a short one refused in the
// dialog), power-cycles the practice key, and the diagnosis shown
// afterwards is read from the reset key.
func TestResetFIDO2(t *testing.T) {
	enrol(t)
	// The key's FIDO2 PIN and credential change: the next test enrols afresh.
	t.Cleanup(func() { user = "" })
	env, v := open(t, uitest.Fleet.Helpdesk)
	diagnose(t, v)
	if !v.ResetFIDO.Disabled() {
		t.Fatal("FIDO2 reset offered for a key whose FIDO2 PIN works")
	}
	blockFIDO(t, env)
	before := diagnose(t, v)
	if !before.Has(recover.FIDO2PINBlocked) || v.ResetFIDO.Disabled() || v.ResetFIDO.Importance != widget.HighImportance || !strings.Contains(v.Steps.Text, "press Reset FIDO2") {
		t.Fatalf("blocked FIDO2 PIN: %v, reset enabled %v, steps %q", before.Problems, !v.ResetFIDO.Disabled(), v.Steps.Text)
	}
	noCommandLines(t, env)
	test.Tap(v.ResetFIDO)
	entry, ok := env.Window.Canvas().Focused().(*uikit.Entry)
	if !ok {
		t.Fatal("no confirmation asking for the serial")
	}
	test.Type(entry, fmt.Sprint(uitest.Fleet.Serial(0)))
	entry.OnSubmitted(entry.Text)
	newPIN(t, v, "fido", "fido")
	if !v.NewPIN.Open() || !strings.Contains(v.NewPIN.Check.Text, "at least") {
		t.Fatalf("a short FIDO2 PIN: open %v, %q", v.NewPIN.Open(), v.NewPIN.Check.Text)
	}
	newPIN(t, v, "fido-86420", "fido-86420")
	if !uitest.Eventually(2*wait, func() bool {
		return !v.Cancel.Visible() && strings.Contains(v.Result.Text, "FIDO2") && !strings.HasSuffix(v.Result.Text, "…")
	}) {
		t.Fatalf("after %v the reset is not done: %q (key chosen %q, diagnosis %q)", 2*wait, v.Result.Text, v.Attached.Selected, v.Diagnosis.Text)
	}
	if !strings.Contains(v.Result.Text, "reset; new credential") {
		t.Fatalf("result %q", v.Result.Text)
	}
	if v.Last == nil || v.Last == before || v.Last.Serial != uitest.Fleet.Serial(0) || v.Last.FIDO == nil || !v.Last.FIDO.PINSet {
		t.Fatalf("the diagnosis was not read again after the reset: %q", v.Diagnosis.Text)
	}
}

// TestDiagnoseUnregisteredKey: a key the registry does not know is
// diagnosed as such, with what to do instead.
func TestDiagnoseUnregisteredKey(t *testing.T) {
	enrol(t)
	// A factory-fresh key takes the first one's place: the next test enrols
	// afresh.
	t.Cleanup(func() { user = "" })
	y, err := uitest.Fleet.Fleet.Replace(uitest.Fleet.Serial(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recover.WaitWhole(context.Background(), uitest.Fleet.Keys, y.Serial(), true, true, wait); err != nil {
		t.Fatal(err)
	}
	_, v := open(t, uitest.Fleet.Helpdesk)
	uitest.WaitFor(t, wait, "the fresh key offered", func() bool {
		for i, o := range v.Attached.Options {
			if strings.Contains(o, fmt.Sprint(y.Serial())) {
				v.Attached.SetSelectedIndex(i)
				return !v.Diagnose.Disabled()
			}
		}
		return false
	})
	test.Tap(v.Diagnose)
	result(t, v, "failed")
	if !strings.Contains(v.Result.Text, "not registered to anyone") || !strings.Contains(v.Result.Text, "Enrol screen") {
		t.Fatalf("failure %q does not say what to do", v.Result.Text)
	}
	if !v.UnblockPIV.Disabled() || !v.ResetFIDO.Disabled() {
		t.Fatal("recovery steps offered for a key nobody owns")
	}
}

// TestRegistryDown: with the registry unreachable, diagnosis and search
// fail saying so.
func TestRegistryDown(t *testing.T) {
	_, v := open(t, uitest.Down(t))
	test.Tap(v.Diagnose)
	result(t, v, "failed")
	if !strings.Contains(v.Result.Text, "reach") {
		t.Fatalf("failure %q does not say the registry cannot be reached", v.Result.Text)
	}
	if v.Last != nil {
		t.Fatal("a diagnosis without a registry")
	}
}

// TestChangesFromElsewhere: while a key is diagnosed on the Helpdesk
// screen, its PIV PIN blocked by another process shows as a new diagnosis
// within a second with nothing clicked, and the unblock is offered; the
// screen's own unblock afterwards is not taken for a change made
// elsewhere; the key marked lost through the registry by another client
// shows as lost within a second, and Mark lost is no longer offered.
func TestChangesFromElsewhere(t *testing.T) {
	enrol(t)
	// The key ends up marked lost: the next test enrols afresh.
	t.Cleanup(func() { user = "" })
	env, v := open(t, uitest.Fleet.Helpdesk)
	ctx := context.Background()
	s0 := uitest.Fleet.Serial(0)
	d := diagnose(t, v)
	if d.Serial != s0 || d.PIV == nil || d.PIV.PINRetries == 0 {
		t.Fatalf("diagnosis of key %d: %+v", d.Serial, d.PIV)
	}
	diagnosed := auditCount(t, "recovery.diagnosed")

	// Wrong PINs from another process until the PIN is blocked.
	k, err := uitest.Fleet.Key(ctx, s0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KEYDESK_TEST_BLOCK_PIN="+k.Reader+"|"+fmt.Sprint(s0))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the other process: %v: %s", err, out)
	}
	start := time.Now()
	shown := uitest.Eventually(within, func() bool {
		return v.Last != nil && v.Last.Serial == s0 && v.Last.Has(recover.PIVPINBlocked) && !v.Cancel.Visible() &&
			strings.Contains(v.Diagnosis.Text, "PIV PIN: 0 tries left") && strings.Contains(v.Steps.Text, "press Unblock PIV PIN") &&
			!v.UnblockPIV.Disabled() && v.UnblockPIV.Text == "Unblock PIV PIN" && v.UnblockPIV.Importance == widget.HighImportance
	})
	took := time.Since(start)
	if !shown {
		t.Fatalf("%v after the PIN was blocked in another process the screen says %q / %q (unblock %q, enabled %v)", within, v.Diagnosis.Text, v.Steps.Text, v.UnblockPIV.Text, !v.UnblockPIV.Disabled())
	}
	t.Logf("a PIN blocked in another process showed on Helpdesk after %v", took.Round(time.Millisecond))
	if !strings.Contains(v.Result.Text, "Diagnosed again because its PIV PIN or PUK changed outside this screen") {
		t.Errorf("the result line does not say why the key was diagnosed again: %q", v.Result.Text)
	}
	if n := auditCount(t, "recovery.diagnosed"); n != diagnosed+1 {
		t.Errorf("%d diagnoses audited after the change, want one more than %d", n, diagnosed)
	}

	// The screen's own unblock: its diagnosis afterwards is the key's state
	// now, and the model's reading of the unblocked PIN that follows is
	// not a change made elsewhere. The model calls the screen before this
	// test's subscriber, so once the test sees it the screen has too.
	var seen keys.State
	env.SubscribeStates(func(changed []keys.State) {
		for _, st := range changed {
			if st.Key.Serial == s0 {
				seen = st
			}
		}
	})
	test.Tap(v.UnblockPIV)
	newPIN(t, v, pivPIN, pivPIN)
	result(t, v, "with the escrowed PUK")
	diagnosed = auditCount(t, "recovery.diagnosed")
	uitest.WaitFor(t, wait, "the model's reading of the unblocked PIN", func() bool {
		return seen.Report != nil && seen.Report.PIV != nil && seen.Report.PIV.PINRetries == 3
	})
	if !strings.Contains(v.Result.Text, "with the escrowed PUK") || v.Cancel.Visible() || v.Last == nil || v.Last.Has(recover.PIVPINBlocked) {
		t.Fatalf("the screen's own unblock was taken for a change made elsewhere: %q / %q", v.Result.Text, v.Diagnosis.Text)
	}
	if n := auditCount(t, "recovery.diagnosed"); n != diagnosed {
		t.Errorf("the key was diagnosed again after the screen's own unblock (%d diagnoses audited, %d before)", n, diagnosed)
	}

	// Marked lost by another desk.
	kd, _, _, err := recover.Find(ctx, uitest.Fleet.Admin, fmt.Sprint(s0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uitest.Fleet.Admin.SetKeyStatus(ctx, kd.Key.ID, kd.Key.Version, registry.KeyLost, ""); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	shown = uitest.Eventually(within, func() bool {
		return v.Last != nil && v.Last.Key.Status == registry.KeyLost && !v.Cancel.Visible() &&
			strings.Contains(v.Diagnosis.Text, fmt.Sprintf("Key %d (primary, lost)", s0)) && strings.Contains(v.Steps.Text, "marks the key lost") && v.MarkLost.Disabled()
	})
	took = time.Since(start)
	if !shown {
		t.Fatalf("%v after another desk marked key %d lost the screen says %q / %q (mark lost enabled %v)", within, s0, v.Diagnosis.Text, v.Steps.Text, !v.MarkLost.Disabled())
	}
	t.Logf("a key marked lost through the registry showed on Helpdesk after %v", took.Round(time.Millisecond))
	if strings.Contains(v.Result.Text, "with the escrowed PUK") {
		t.Errorf("the unblock's message stays after the key changed: %q", v.Result.Text)
	}
	noCommandLines(t, env)
}

// TestMessageFollowsTheKey: a diagnosis and a message about one key go
// when another key is chosen; a diagnosed key that is pulled keeps only
// what the registry says of it, with no action on the key offered, and is
// diagnosed from the key again once it is back.
func TestMessageFollowsTheKey(t *testing.T) {
	enrol(t)
	_, v := open(t, uitest.Fleet.Helpdesk)
	s0, s1 := uitest.Fleet.Serial(0), uitest.Fleet.Serial(1)
	diagnose(t, v)
	if v.Last.Serial != s0 || !strings.Contains(v.Result.Text, "Diagnosis done") || v.MarkLost.Disabled() || v.UnblockPIV.Disabled() {
		t.Fatalf("diagnosis of key %d: %q", v.Last.Serial, v.Result.Text)
	}
	i := slices.IndexFunc(v.Attached.Options, func(o string) bool { return strings.Contains(o, fmt.Sprint(s1)) })
	v.Attached.SetSelectedIndex(i)
	if v.Last != nil || strings.Contains(v.Diagnosis.Text, fmt.Sprint(s0)) || !strings.Contains(v.Diagnosis.Text, fmt.Sprintf("Key %d is chosen", s1)) || v.Result.Text != "" {
		t.Fatalf("after key %d was chosen the screen still says %q / %q", s1, v.Diagnosis.Text, v.Result.Text)
	}
	if !v.MarkLost.Disabled() || !v.UnblockPIV.Disabled() {
		t.Fatal("actions offered on the strength of another key's diagnosis")
	}

	d := diagnose(t, v)
	if d.Serial != s1 || d.PIV == nil {
		t.Fatalf("diagnosis of key %d: %+v", d.Serial, d.PIV)
	}
	// A new PIN given for key s1 after another key was chosen under the
	// dialog: nothing is done, and no escrow opened.
	opened := auditCount(t, "recovery.escrow_opened")
	test.Tap(v.UnblockPIV)
	v.Attached.SetSelectedIndex(slices.IndexFunc(v.Attached.Options, func(o string) bool { return strings.Contains(o, fmt.Sprint(s0)) }))
	newPIN(t, v, "135790", "135790")
	if v.Cancel.Visible() || !strings.Contains(v.Result.Text, "Nothing was done") || v.Result.Importance != widget.DangerImportance {
		t.Fatalf("an unblock for key %d went ahead after key %d was chosen: %q", s1, s0, v.Result.Text)
	}
	if n := auditCount(t, "recovery.escrow_opened"); n != opened {
		t.Fatalf("the escrow was opened (%d escrow_opened entries, %d before)", n, opened)
	}
	v.Attached.SetSelectedIndex(slices.IndexFunc(v.Attached.Options, func(o string) bool { return strings.Contains(o, fmt.Sprint(s1)) }))
	d = diagnose(t, v)
	uitest.Sim(t, fmt.Sprintf("remove %d", s1))
	t.Cleanup(func() {
		if k, err := uitest.Fleet.Key(context.Background(), s1); err != nil || k.Serial != s1 {
			uitest.Sim(t, fmt.Sprintf("insert %d", s1))
		}
	})
	uitest.WaitFor(t, wait, "the pulled key shown from the registry", func() bool {
		return v.Last != nil && v.Last.Serial == s1 && v.Last.PIV == nil && strings.Contains(v.Diagnosis.Text, "is not attached") &&
			strings.Contains(v.Result.Text, fmt.Sprintf("Key %d was removed", s1))
	})
	if !v.UnblockPIV.Disabled() || !v.ResetFIDO.Disabled() || strings.Contains(v.Diagnosis.Text, "PIV PIN:") {
		t.Fatalf("the pulled key's PINs are still shown or acted on: %q", v.Diagnosis.Text)
	}
	uitest.Sim(t, fmt.Sprintf("insert %d", s1))
	if !uitest.Eventually(wait, func() bool {
		return v.Last != nil && v.Last.Serial == s1 && v.Last.PIV != nil && !v.Cancel.Visible() && strings.Contains(v.Result.Text, "Diagnosed again because")
	}) {
		t.Fatalf("the key back is not diagnosed from itself: %q / %q (chosen %q)", v.Diagnosis.Text, v.Result.Text, v.Attached.Selected)
	}
	if !strings.Contains(v.Attached.Selected, fmt.Sprint(s1)) || v.UnblockPIV.Disabled() {
		t.Fatalf("the key back is not the one chosen (%q) or not acted on", v.Attached.Selected)
	}
}
