package keysui_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/recover"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/pivkey"
)

// navWidth is room the shell's navigation takes beside a screen (the
// widest screen title with its icon, and padding), so that the screen is
// tested with the width it gets in the window.
const navWidth = 240

// shownWhole says whether label shows its whole text: it is given the
// width the text needs (what a label that may not truncate asks for) and
// lies wholly inside within, the part of the window that shows it.
func shownWhole(t *testing.T, what string, label *widget.Label, within fyne.CanvasObject) {
	t.Helper()
	need := fyne.MeasureText(label.Text, theme.TextSize(), label.TextStyle).Width + 2*theme.InnerPadding()
	d := fyne.CurrentApp().Driver()
	lx, wx := d.AbsolutePositionForObject(label).X, d.AbsolutePositionForObject(within).X
	if label.Size().Width+0.5 < need || lx+need > wx+within.Size().Width+0.5 {
		t.Errorf("%s %q: %.0f px given at x=%.0f, its text needs %.0f; the list ends at x=%.0f", what, label.Text, label.Size().Width, lx, need, wx+within.Size().Width)
	}
}

// TestSmallWindow: at 1024×700, with the navigation beside it, each card
// shows its serial, its owner and role and a PIN BLOCKED chip untruncated,
// and the divider between cards and detail can be dragged.
func TestSmallWindow(t *testing.T) {
	env, v := open(t)
	ctx := context.Background()
	s0, s1 := uitest.Fleet.Serial(0), uitest.Fleet.Serial(1)
	nav := canvas.NewRectangle(theme.Color(theme.ColorNameBackground))
	nav.SetMinSize(fyne.NewSize(navWidth, 1))
	fyne.DoAndWait(func() {
		env.Window.SetContent(container.NewBorder(nil, nil, nav, nil, v.Root))
		env.Window.Resize(fyne.NewSize(1024, 700))
	})

	// s0 registered (an earlier test enrolled it, or enrol it now), for
	// its owner and role.
	if _, _, _, err := recover.Find(ctx, uitest.Fleet.Admin, fmt.Sprint(s0)); errors.Is(err, recover.ErrNotRegistered) {
		enrolS0(t, env)
	} else if err != nil {
		t.Fatal(err)
	}
	fyne.DoAndWait(v.Reread)

	// s1's PIV PIN blocked, by a program other than the app.
	k1, err := uitest.Fleet.Key(ctx, s1)
	if err != nil {
		t.Fatal(err)
	}
	card := pivkey.Open(k1.Reader, s1)
	st, err := card.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.PUKDefault || st.PUKRetries < 1 {
		t.Fatalf("key %d's PUK is not the default (%d tries): this test unblocks the PIN with it afterwards", s1, st.PUKRetries)
	}
	for range st.PINRetries {
		var wp *device.WrongPINError
		if err := card.ChangePIN(ctx, "999999", "13572468"); !errors.As(err, &wp) && !errors.Is(err, device.ErrPINBlocked) {
			t.Fatalf("a wrong PIN: %v", err)
		}
	}
	t.Cleanup(func() {
		if err := card.UnblockPIN(ctx, "12345678", "123456"); err != nil {
			t.Errorf("unblocking key %d's PIN again: %v", s1, err)
		}
	})
	uitest.WaitFor(t, wait, "both cards, key 1 BLOCKED and key 0 with its owner", func() bool {
		c0, c1 := v.CardOf(s0), v.CardOf(s1)
		return c0 != nil && c1 != nil && slices.Contains(c1.ChipTexts(), "PIV PIN BLOCKED") && c0.Owner.Text != "Not registered" && c0.Owner.Text != "Checking…"
	})
	fyne.DoAndWait(func() {
		for _, s := range []uint32{s0, s1} {
			c := v.CardOf(s)
			shownWhole(t, "serial", c.Serial, v.List)
			shownWhole(t, "model", c.Model, v.List)
		}
		shownWhole(t, "owner and role", v.CardOf(s0).Owner, v.List)
		d := fyne.CurrentApp().Driver()
		for _, ch := range v.CardOf(s1).Chips {
			if !ch.Visible() {
				continue
			}
			x := d.AbsolutePositionForObject(ch).X
			if !ch.Fits() || x+ch.MinSize().Width > d.AbsolutePositionForObject(v.List).X+v.List.Size().Width+0.5 {
				t.Errorf("chip %q is cut: %v given, %v needed, at x=%.0f", ch.Text, ch.Size(), ch.MinSize(), x)
			}
		}
	})

	// Buttons that cannot help are disabled, saying why: Change PIN on
	// the blocked key; Unblock with PUK on a registered key (its PUK is
	// sealed for the helpdesk) and Reset PIV on a key whose PIN works.
	fyne.DoAndWait(func() {
		v.Select(s1)
		d := v.Detail
		if !d.PIVChangePIN.Disabled() || !strings.Contains(d.PIVWhy.Text, "Change PIN: the PIN is blocked") {
			t.Errorf("on a blocked PIN Change PIN is enabled %v; the reasons say %q", !d.PIVChangePIN.Disabled(), d.PIVWhy.Text)
		}
		if d.PIVUnblock.Disabled() {
			t.Errorf("Unblock PIN with PUK is disabled on an unregistered key with a blocked PIN: %q", d.PIVWhy.Text)
		}
		v.Select(s0)
		if !d.PIVUnblock.Disabled() || !strings.Contains(d.PIVWhy.Text, "Helpdesk screen") {
			t.Errorf("on a registered key Unblock with PUK is enabled %v; the reasons say %q", !d.PIVUnblock.Disabled(), d.PIVWhy.Text)
		}
		if !d.PIVReset.Disabled() || !strings.Contains(d.PIVWhy.Text, "Reset PIV…: a reset is for a key whose PIN and PUK are both blocked") {
			t.Errorf("on a key whose PIN works Reset PIV is enabled %v; the reasons say %q", !d.PIVReset.Disabled(), d.PIVWhy.Text)
		}
		if d.PIVChangePIN.Disabled() {
			t.Error("Change PIN is disabled on a key whose PIN works")
		}
	})

	// The divider moves when dragged to the right (towards the detail).
	var before float64
	var at fyne.Position
	fyne.DoAndWait(func() {
		before = v.Split.Offset
		d := fyne.CurrentApp().Driver()
		at = d.AbsolutePositionForObject(v.Detail.Root)
		at.X -= theme.Padding() // on the divider, left of the detail
		at.Y += 200
	})
	fyne.DoAndWait(func() { test.Drag(env.Window.Canvas(), at, 80, 0) })
	var after float64
	fyne.DoAndWait(func() { after = v.Split.Offset })
	if after <= before {
		t.Errorf("dragging the divider 80 px right left its offset at %.3f (was %.3f)", after, before)
	}
}
