package keysui_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/keysui"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/device"
)

// params fills the open values dialog (tries, subject, file) and submits it.
func params(t *testing.T, v *keysui.View, values ...string) *keysui.ParamForm {
	t.Helper()
	uitest.WaitFor(t, wait, "a dialog asking for values", func() bool { return v.Detail.Params != nil })
	f := v.Detail.Params
	if len(f.Entries) != len(values) {
		t.Fatalf("the dialog asks for %q, the test gives %d values", f.Labels, len(values))
	}
	for i, s := range values {
		f.Entries[i].SetText("")
		test.Type(f.Entries[i], s)
	}
	f.Submit()
	return f
}

// confirm types the serial into the open confirmation and confirms.
func confirm(t *testing.T, env *uikit.Env, serial uint32) {
	t.Helper()
	entry, ok := env.Window.Canvas().Focused().(*widget.Entry)
	if !ok || !strings.Contains(entry.PlaceHolder, "serial") {
		t.Fatal("no confirmation asking for the serial")
	}
	test.Type(entry, fmt.Sprint(serial))
	entry.OnSubmitted(entry.Text)
}

// pivStatus reads the key's PIV state straight from the key.
func pivStatus(t *testing.T, env *uikit.Env, serial uint32) *device.PIVStatus {
	t.Helper()
	release := env.HoldKeys()
	defer release()
	ctx := context.Background()
	k, err := env.Keys.Find(ctx, serial)
	if err != nil {
		t.Fatal(err)
	}
	card, err := env.Keys.PIV(k)
	if err != nil {
		t.Fatal(err)
	}
	st, err := card.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPIVSetRetries: the tries chosen in the dialog reach the key, behind a
// confirmation that names its serial and says PIN and PUK go back to their
// defaults; out-of-range tries are refused in the dialog; a wrong PIN
// changes nothing.
func TestPIVSetRetries(t *testing.T) {
	env, v := open(t)
	s1 := uitest.Fleet.Serial(1)
	v.Select(s1)
	form := func() *uikit.SecretForm { return v.Detail.Form }

	v.Detail.Params = nil
	test.Tap(v.Detail.PIVRetries)
	f := params(t, v, "0", "300")
	if !f.Problem.Visible() || !strings.Contains(f.Problem.Text, "1 to 255") {
		t.Fatalf("0 PIN tries accepted; the dialog says %q", f.Problem.Text)
	}
	f.Cancel()

	// A wrong PIN: refused with the tries left, nothing changed.
	v.Detail.Params, v.Detail.Form = nil, nil
	test.Tap(v.Detail.PIVRetries)
	params(t, v, "5", "7")
	confirm(t, env, s1)
	fill(t, form, "999999")
	result(t, v, "failed")
	if msg := v.Detail.Result.Text; !strings.Contains(msg, "tries left") {
		t.Errorf("wrong PIN reported as %q; want the tries left", msg)
	}
	if st := pivStatus(t, env, s1); st.PINRetries != 2 || st.PUKRetries != 3 {
		t.Fatalf("after a refused change the key has PIN %d, PUK %d tries left; want 2 and 3", st.PINRetries, st.PUKRetries)
	}

	v.Detail.Params, v.Detail.Form = nil, nil
	test.Tap(v.Detail.PIVRetries)
	params(t, v, "5", "7")
	dlg := env.Window.Canvas().Overlays().Top()
	if dlg == nil || !uitest.HasText(dlg, "123456") || !uitest.HasText(dlg, fmt.Sprint(s1)) {
		t.Error("the confirmation does not name the serial and the default PIN")
	}
	confirm(t, env, s1)
	fill(t, form, "123456")
	result(t, v, "allows 5 PIN and 7 PUK tries")
	if st := pivStatus(t, env, s1); st.PINRetries != 5 || st.PUKRetries != 7 || !st.PINDefault || !st.PUKDefault {
		t.Fatalf("the key has PIN %d, PUK %d tries (defaults %v, %v); want 5 and 7, both default", st.PINRetries, st.PUKRetries, st.PINDefault, st.PUKDefault)
	}
	uitest.WaitFor(t, wait, "the detail showing 5 PIN tries", func() bool {
		h := v.HealthOf(s1)
		return h != nil && h.Report != nil && h.Report.PIV != nil && h.Report.PIV.PINRetries == 5 &&
			strings.Contains(v.Detail.Info.Text, "PIN 5 tries left, PUK 7 tries left")
	})

	// Back to 3 and 3 for the tests that follow.
	v.Detail.Params, v.Detail.Form = nil, nil
	test.Tap(v.Detail.PIVRetries)
	params(t, v, "3", "3")
	confirm(t, env, s1)
	fill(t, form, "123456")
	result(t, v, "allows 3 PIN and 3 PUK tries")
}
