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
	"fyne.io/fyne/v2/widget"

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

var enrolled bool

// enrol enrols both practice keys for ada once: a primary and a backup.
func enrol(t *testing.T) {
	t.Helper()
	if enrolled {
		return
	}
	ctx := context.Background()
	for i, role := range []registry.KeyRole{registry.RolePrimary, registry.RoleBackup} {
		k, err := uitest.Fleet.Key(ctx, uitest.Fleet.Serial(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := enroltest.Enrol(ctx, uitest.Fleet.Keys, uitest.Fleet.Admin, k, enroltest.Options{User: "ada", Role: role, PIVPIN: pivPIN, FIDOPIN: "fido-2468", Recipients: []string{uitest.Fleet.Recipient}}); err != nil {
			t.Fatal(err)
		}
	}
	enrolled = true
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
	enrol(t)
	blockPIV(t)
	env, v := open(t, uitest.Fleet.Helpdesk)
	d := diagnose(t, v)
	if !d.Has(recover.PIVPINBlocked) || d.User.ExternalID != "ada" {
		t.Fatalf("diagnosis: problems %v, user %q", d.Problems, d.User.ExternalID)
	}
	if !strings.Contains(v.Steps.Text, "unblock the PIV PIN") {
		t.Fatalf("steps %q lack the next step", v.Steps.Text)
	}
	uitest.MatchImage(t, "helpdesk.png", env.Window.Canvas().Capture())
	test.Tap(v.UnblockPIV)
	test.Type(v.Form.Entries[0], "135790")
	test.Type(v.Form.Entries[1], "135790")
	v.Form.Submit()
	result(t, v, "unblocked with the escrowed PUK")
	ctx := context.Background()
	k, _ := uitest.Fleet.Key(ctx, uitest.Fleet.Serial(0))
	card, _ := uitest.Fleet.Keys.PIV(k)
	if err := card.ChangePIN(ctx, "135790", pivPIN); err != nil {
		t.Fatalf("the new PIN does not work: %v", err)
	}
}

// TestSearchAndMarkLost: a search by name finds both of ada's keys; the
// backup is marked lost after its serial is typed, with an access pass.
func TestSearchAndMarkLost(t *testing.T) {
	enrol(t)
	env, v := open(t, uitest.Fleet.Helpdesk)
	test.Type(v.Search, "ad")
	test.Tap(v.Find)
	s0, s1 := fmt.Sprint(uitest.Fleet.Serial(0)), fmt.Sprint(uitest.Fleet.Serial(1))
	uitest.WaitFor(t, wait, "both keys found", func() bool {
		f := v.FoundSerials()
		return len(f) == 2 && slices.Contains(f, s0) && slices.Contains(f, s1)
	})
	v.Found.Select(slices.Index(v.FoundSerials(), s1))
	test.Tap(v.MarkLost)
	entry, ok := env.Window.Canvas().Focused().(*widget.Entry)
	if !ok {
		t.Fatal("no confirmation asking for the serial")
	}
	test.Type(entry, s1)
	entry.OnSubmitted(entry.Text)
	result(t, v, "marked lost")
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
	if fmt.Sprint(v.Replaced.Serial) != fresh || v.Replaced.Role != registry.RoleBackup || v.Replaced.ExternalID != "ada" {
		t.Fatalf("replacement %+v", v.Replaced)
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
