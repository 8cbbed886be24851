package keysui_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/keydesk/keydesk/app/ui/keysui"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/device"
)

func TestMain(m *testing.M) {
	if wrongPINChild() {
		return
	}
	uitest.Main(m, 2)
}

const wait = 20 * time.Second

func open(t *testing.T) (*uikit.Env, *keysui.View) {
	t.Helper()
	env := uitest.Env(t, uikit.Admin, "", uitest.Fleet.Admin)
	v := keysui.New(env)
	env.Window.SetContent(v.Root)
	s0, s1 := uitest.Fleet.Serial(0), uitest.Fleet.Serial(1)
	if !uitest.Eventually(wait, func() bool {
		return slices.Equal(v.Shown(), []uint32{s0, s1}) && v.HealthOf(s0) != nil && v.HealthOf(s1) != nil
	}) {
		t.Fatalf("after %v the list shows %v, the feed %+v", wait, v.Shown(), env.Feed.Current())
	}
	return env, v
}

// fill types values into the open PIN dialog and submits it.
func fill(t *testing.T, form func() *uikit.SecretForm, values ...string) {
	t.Helper()
	uitest.WaitFor(t, wait, "a PIN dialog", func() bool { f := form(); return f != nil && len(f.Entries) == len(values) })
	f := form()
	for i, v := range values {
		test.Type(f.Entries[i], v)
	}
	f.Submit()
}

func result(t *testing.T, v *keysui.View, want string) {
	t.Helper()
	// The text comes from the work; the buttons come back when it has ended.
	if !uitest.Eventually(wait, func() bool {
		return strings.Contains(v.Detail.Result.Text, want) && !v.Detail.Cancel.Visible()
	}) {
		var msg string
		fyne.DoAndWait(func() { msg = v.Detail.Result.Text })
		t.Fatalf("after %v the message is %q; want one saying %q", wait, msg, want)
	}
}

// TestListIsLiveAndVirtual: the practice keys are listed with identity and
// health and marked VIRTUAL; a key pulled out leaves the list and comes
// back when inserted; the screen matches its reference image. Keys an
// earlier test set up are swapped for new ones first (new serials: the
// image then differs in those digits, within MatchImage's tolerance).
func TestListIsLiveAndVirtual(t *testing.T) {
	uitest.FreshKeys(t)
	env, v := open(t)
	s0, s1 := uitest.Fleet.Serial(0), uitest.Fleet.Serial(1)
	h := keysui.HealthLine(mustKey(t, s0), v.HealthOf(s0))
	for _, want := range []string{"not registered", "PIV PIN default", "FIDO2 PIN not set"} {
		if !strings.Contains(h, want) {
			t.Errorf("health of a fresh key %q lacks %q", h, want)
		}
	}
	if !v.Select(s0) {
		t.Fatal("cannot select the first key")
	}
	if !v.Detail.Badge.Visible() || !strings.Contains(v.Detail.Badge.Text, "VIRTUAL") {
		t.Error("the detail of a practice key is not marked VIRTUAL")
	}
	if !strings.Contains(v.Detail.Heading.Text, fmt.Sprint(s0)) {
		t.Errorf("detail heading %q does not name the key", v.Detail.Heading.Text)
	}
	uitest.MatchImage(t, "keys.png", env.Window.Canvas().Capture())

	start := time.Now()
	uitest.Sim(t, fmt.Sprintf("remove %d", s1))
	uitest.WaitFor(t, wait, "the pulled key gone from the list", func() bool { return slices.Equal(v.Shown(), []uint32{s0}) })
	t.Logf("removal shown after %v", time.Since(start))
	uitest.Sim(t, fmt.Sprintf("insert %d", s1))
	uitest.WaitFor(t, wait, "the key back in the list", func() bool { return slices.Equal(v.Shown(), []uint32{s0, s1}) })
}

// TestFIDOPIN: set a FIDO2 PIN from the pane; a wrong current PIN is
// refused with the tries left; the right one changes it.
func TestFIDOPIN(t *testing.T) {
	_, v := open(t)
	s1 := uitest.Fleet.Serial(1)
	v.Select(s1)
	test.Tap(v.Detail.FIDOSetPIN)
	fill(t, func() *uikit.SecretForm { return v.Detail.Form }, "fido-1234", "fido-1234")
	result(t, v, "FIDO2 PIN set on key")

	v.Detail.Form = nil
	test.Tap(v.Detail.FIDOChangePIN)
	fill(t, func() *uikit.SecretForm { return v.Detail.Form }, "wrong-pin", "fido-5678", "fido-5678")
	result(t, v, "failed")
	if msg := v.Detail.Result.Text; !strings.Contains(msg, "tries left") || !strings.Contains(msg, "PIN was wrong") {
		t.Fatalf("wrong PIN reported as %q; want the tries left and what to do", msg)
	}
	v.Detail.Form = nil
	test.Tap(v.Detail.FIDOChangePIN)
	fill(t, func() *uikit.SecretForm { return v.Detail.Form }, "fido-1234", "fido-5678", "fido-5678")
	result(t, v, "FIDO2 PIN changed")

	v.Detail.Form = nil
	test.Tap(v.Detail.FIDOMinLength)
	fill(t, func() *uikit.SecretForm { return v.Detail.Form }, "fido-5678")
	result(t, v, "at least 8 characters")
	uitest.WaitFor(t, wait, "the key's new minimum", func() bool {
		h := v.HealthOf(s1)
		return h != nil && h.Report != nil && h.Report.FIDO != nil && h.Report.FIDO.MinPINLength == 8
	})
}

// TestKeyPulledMidOperation: the key is pulled while the credential list
// waits for its PIN; the action fails saying the key went, and the pane
// empties.
func TestKeyPulledMidOperation(t *testing.T) {
	_, v := open(t)
	s1 := uitest.Fleet.Serial(1)
	v.Select(s1)
	v.Detail.Form = nil
	test.Tap(v.Detail.FIDOCredentials)
	uitest.WaitFor(t, wait, "the PIN dialog", func() bool { return v.Detail.Form != nil })
	uitest.Sim(t, fmt.Sprintf("remove %d", s1))
	defer uitest.Sim(t, fmt.Sprintf("insert %d", s1))
	uitest.WaitFor(t, wait, "the pulled key gone", func() bool { return !slices.Contains(v.Shown(), s1) })
	fill(t, func() *uikit.SecretForm { return v.Detail.Form }, "fido-5678")
	result(t, v, "failed")
	if v.Detail.Heading.Text != "Choose a key" {
		t.Errorf("the pane still shows %q after the key left", v.Detail.Heading.Text)
	}
}

// TestFIDOResetNeedsTheSerial: Reset FIDO2 waits for the key's serial to
// be typed, then resets it through a reinsertion and a touch.
func TestFIDOResetNeedsTheSerial(t *testing.T) {
	env, v := open(t)
	s1 := uitest.Fleet.Serial(1)
	uitest.WaitFor(t, wait, "the key with its PIN set", func() bool {
		return strings.Contains(keysui.HealthLine(mustKey(t, s1), v.HealthOf(s1)), "FIDO2 PIN 8 tries")
	})
	v.Select(s1)
	test.Tap(v.Detail.FIDOReset)
	entry, ok := env.Window.Canvas().Focused().(*uikit.Entry)
	if !ok {
		t.Fatal("no confirmation asking for the serial")
	}
	test.Type(entry, fmt.Sprint(s1+100)) // not this key's serial
	entry.OnSubmitted(entry.Text)
	if strings.Contains(v.Detail.Result.Text, "Resetting") {
		t.Fatal("the reset started with a wrong serial")
	}
	entry.SetText("")
	test.Type(entry, fmt.Sprint(s1))
	entry.OnSubmitted(entry.Text)
	result(t, v, "is reset")
	uitest.WaitFor(t, wait, "the reset key without a FIDO2 PIN", func() bool {
		return strings.Contains(keysui.HealthLine(mustKey(t, s1), v.HealthOf(s1)), "FIDO2 PIN not set")
	})
}

func mustKey(_ *testing.T, serial uint32) device.Key { return device.Key{Serial: serial} }
