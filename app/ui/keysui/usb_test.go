package keysui_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"

	"github.com/keydesk/keydesk/app/ui/keysui"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/mgmt"
)

// refuseEveryUSBOff unticks every USB application and taps Apply, which
// refuses without touching the key and says so about the shown key, then
// ticks the boxes back as they were.
func refuseEveryUSBOff(t *testing.T, f *keysui.Interfaces) {
	t.Helper()
	was := map[device.Application]bool{}
	for a, c := range f.USB {
		was[a] = c.Checked
		c.SetChecked(false)
	}
	if f.Apply.Disabled() {
		t.Fatal("Apply stays disabled with every USB application unticked")
	}
	test.Tap(f.Apply)
	for a, c := range f.USB {
		c.SetChecked(was[a])
	}
}

// usbApps reads which applications the key enables over USB, from the key.
func usbApps(t *testing.T, env *uikit.Env, serial uint32) device.Application {
	t.Helper()
	release := env.HoldKeys()
	defer release()
	ctx := context.Background()
	k, err := env.Keys.Find(ctx, serial)
	if err != nil {
		t.Fatal(err)
	}
	got, err := mgmt.Read(ctx, k.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return got.EnabledUSB
}

// TestInterfaces: switching OATH off over USB reaches the key behind a
// confirmation naming its serial, and the key comes back with it off;
// switching every USB application off is refused; switching FIDO2 off
// warns that keydesk can no longer manage it.
func TestInterfaces(t *testing.T) {
	env, v := open(t)
	s1 := uitest.Fleet.Serial(1)
	v.Select(s1)
	v.Detail.Tabs.Select(v.Detail.IfacesTab)
	f := v.Detail.Ifaces
	before := usbApps(t, env, s1)
	if before&device.AppOATH == 0 || !f.USB[device.AppOATH].Checked || !f.USB[device.AppPIV].Checked {
		t.Fatalf("the key enables %s over USB and the checkboxes show OATH %v; want OATH on", before, f.USB[device.AppOATH].Checked)
	}

	// Nothing changed yet: Apply is disabled and says why.
	if !f.Apply.Disabled() || !f.ApplyNote.Visible() || !strings.Contains(f.ApplyNote.Text, "no interface has changed") {
		t.Fatalf("with no box changed Apply is disabled %v, note shown %v: %q", f.Apply.Disabled(), f.ApplyNote.Visible(), f.ApplyNote.Text)
	}
	f.USB[device.AppOATH].SetChecked(false)
	if f.Apply.Disabled() || f.ApplyNote.Visible() {
		t.Fatalf("with OATH unticked Apply is disabled %v, note shown %v", f.Apply.Disabled(), f.ApplyNote.Visible())
	}
	f.USB[device.AppOATH].SetChecked(true)
	if !f.Apply.Disabled() || !f.ApplyNote.Visible() {
		t.Fatalf("with OATH ticked again Apply is disabled %v, note shown %v", f.Apply.Disabled(), f.ApplyNote.Visible())
	}

	// Every USB application off: refused before any confirmation.
	for _, c := range f.USB {
		c.SetChecked(false)
	}
	test.Tap(f.Apply)
	if !strings.Contains(v.Detail.Result.Text, "refusing to switch every USB application off") {
		t.Errorf("switching everything off reported as %q", v.Detail.Result.Text)
	}
	if env.Window.Canvas().Overlays().Top() != nil {
		t.Error("a confirmation opened for switching every USB application off")
	}
	if got := usbApps(t, env, s1); got != before {
		t.Fatalf("after a refusal the key enables %s, was %s", got, before)
	}
	for a, c := range f.USB {
		c.SetChecked(before&a != 0)
	}

	// FIDO2 off: the confirmation warns; cancel it.
	f.USB[device.AppFIDO2].SetChecked(false)
	test.Tap(f.Apply)
	dlg := env.Window.Canvas().Overlays().Top()
	if dlg == nil || !uitest.HasText(dlg, "keydesk cannot manage FIDO2") {
		t.Error("switching FIDO2 off over USB does not warn that keydesk cannot manage it")
	}
	if dlg != nil {
		dlg.Hide()
	}
	f.USB[device.AppFIDO2].SetChecked(true)

	// OATH off over USB.
	f.USB[device.AppOATH].SetChecked(false)
	test.Tap(f.Apply)
	confirm(t, env, s1)
	result(t, v, "It has restarted")
	if got := usbApps(t, env, s1); got != before&^device.AppOATH {
		t.Fatalf("the key enables %s over USB; want %s", got, before&^device.AppOATH)
	}
	uitest.WaitFor(t, wait, "the detail showing OATH off", func() bool {
		return strings.Contains(v.Detail.Info.Text, "over USB: OTP, U2F, FIDO2, PIV") && !f.USB[device.AppOATH].Checked
	})

	// And on again.
	f.USB[device.AppOATH].SetChecked(true)
	test.Tap(f.Apply)
	confirm(t, env, s1)
	result(t, v, "It has restarted")
	if got := usbApps(t, env, s1); got != before {
		t.Fatalf("the key enables %s over USB; want %s again", got, before)
	}
}

// TestMessageFollowsTheSelectedKey: a message about one key is gone once
// another key is selected, and does not come back with the first.
func TestMessageFollowsTheSelectedKey(t *testing.T) {
	_, v := open(t)
	s0, s1 := uitest.Fleet.Serial(0), uitest.Fleet.Serial(1)
	v.Select(s1)
	v.Detail.Tabs.Select(v.Detail.IfacesTab)
	refuseEveryUSBOff(t, v.Detail.Ifaces) // a message about s1
	if !strings.Contains(v.Detail.Result.Text, fmt.Sprint(s1)) {
		t.Fatalf("message %q is not about key %d", v.Detail.Result.Text, s1)
	}
	v.Select(s0)
	if v.Detail.Result.Text != "" {
		t.Fatalf("with key %d selected the pane still says %q", s0, v.Detail.Result.Text)
	}
	v.Select(s1)
	if v.Detail.Result.Text != "" {
		t.Fatalf("the old message came back: %q", v.Detail.Result.Text)
	}
}
