package helpdeskui_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/recover"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/helpdeskui"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

func TestMain(m *testing.M) { uitest.Main(m, 2) }

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
	uitest.WaitFor(t, wait, "the diagnosis", func() bool { return v.Last != nil && !v.UnblockPIV.Disabled() })
	return v.Last
}

// TestUnblockWithoutIdentity: with no helpdesk identity in the keyring the
// escrowed PUK cannot be opened; the screen says so and the key is left
// as it was.
func TestUnblockWithoutIdentity(t *testing.T) {
	enrol(t)
	_, v := open(t, uitest.Fleet.Helpdesk)
	v.Identity = func() (string, error) { return "", errors.New("no such secret in the keyring") }
	diagnose(t, v)
	// Two different PINs: nothing is done, and the screen says what to do.
	test.Tap(v.UnblockPIV)
	test.Type(v.Form.Entries[0], "135790")
	test.Type(v.Form.Entries[1], "135791")
	v.Form.Submit()
	if !strings.Contains(v.Result.Text, "nothing was changed") || !strings.Contains(v.Result.Text, "again") {
		t.Fatalf("mistyped PINs: %q", v.Result.Text)
	}
	test.Tap(v.UnblockPIV)
	test.Type(v.Form.Entries[0], "135790")
	test.Type(v.Form.Entries[1], "135790")
	v.Form.Submit()
	result(t, v, "failed")
	if !strings.Contains(v.Result.Text, "identity") {
		t.Fatalf("failure %q does not name the identity", v.Result.Text)
	}
}

// TestUnblockPIVPIN: a blocked PIV PIN is diagnosed with the next step,
// and unblocked with the PUK escrowed at enrolment.
func TestUnblockPIVPIN(t *testing.T) {
	ada := enrol(t)
	blockPIV(t)
	env, v := open(t, uitest.Fleet.Helpdesk)
	d := diagnose(t, v)
	if !d.Has(recover.PIVPINBlocked) || d.User.ExternalID != ada {
		t.Fatalf("diagnosis: problems %v, user %q", d.Problems, d.User.ExternalID)
	}
	if !strings.Contains(v.Steps.Text, "unblock the PIV PIN") || !strings.Contains(v.Steps.Text, "the PIV PIN is blocked") {
		t.Fatalf("steps %q lack the next step", v.Steps.Text)
	}
	uitest.MatchImage(t, "helpdesk.png", env.Window.Canvas().Capture())
	test.Tap(v.UnblockPIV)
	test.Type(v.Form.Entries[0], "135790")
	test.Type(v.Form.Entries[1], "135790")
	v.Form.Submit()
	result(t, v, "unblocked with the escrowed PUK")
	// The diagnosis above is the key's state now, not the blocked PIN that
	// asked for the unblock.
	if v.Last == nil || v.Last.Has(recover.PIVPINBlocked) || !strings.Contains(v.Diagnosis.Text, "PIV PIN tries left: 3") || v.Steps.Text != "No problem found." {
		t.Fatalf("after the unblock the screen says %q / %q", v.Diagnosis.Text, v.Steps.Text)
	}
	ctx := context.Background()
	k, _ := uitest.Fleet.Key(ctx, uitest.Fleet.Serial(0))
	card, _ := uitest.Fleet.Keys.PIV(k)
	if err := card.ChangePIN(ctx, "135790", pivPIN); err != nil {
		t.Fatalf("the new PIN does not work: %v", err)
	}
}

// TestSearchAndMarkLost: a search by name finds both of ada's keys; the
// backup is marked lost after its serial is typed, with an access pass;
// the diagnosis of her primary, on screen, is read again and shows it.
// A fresh key is then enrolled as the replacement and diagnosed.
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
	if !strings.Contains(v.Diagnosis.Text, s1+" backup lost") || v.Last == nil || v.Last.Serial != uitest.Fleet.Serial(0) {
		t.Fatalf("the diagnosis was not read again after the key was marked lost: %q", v.Diagnosis.Text)
	}
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
	if v.Last == nil || fmt.Sprint(v.Last.Serial) != fresh || v.Steps.Text != "No problem found." || !strings.Contains(v.Diagnosis.Text, fresh+" backup active") {
		t.Fatalf("after the replacement the screen says %q / %q", v.Diagnosis.Text, v.Steps.Text)
	}
}

// TestResetFIDO2: the FIDO2 reset asks for the key's serial and a new PIN,
// power-cycles the practice key, and the diagnosis shown afterwards is
// read from the reset key.
func TestResetFIDO2(t *testing.T) {
	enrol(t)
	// The key's FIDO2 PIN and credential change: the next test enrols afresh.
	t.Cleanup(func() { user = "" })
	env, v := open(t, uitest.Fleet.Helpdesk)
	before := diagnose(t, v)
	test.Tap(v.ResetFIDO)
	entry, ok := env.Window.Canvas().Focused().(*uikit.Entry)
	if !ok {
		t.Fatal("no confirmation asking for the serial")
	}
	test.Type(entry, fmt.Sprint(uitest.Fleet.Serial(0)))
	entry.OnSubmitted(entry.Text)
	test.Type(v.Form.Entries[0], "fido-86420")
	test.Type(v.Form.Entries[1], "fido-86420")
	v.Form.Submit()
	uitest.WaitFor(t, 2*wait, "the reset done", func() bool {
		return !v.Cancel.Visible() && strings.Contains(v.Result.Text, "FIDO2") && !strings.HasSuffix(v.Result.Text, "…")
	})
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
