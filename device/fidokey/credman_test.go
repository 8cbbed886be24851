package fidokey_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/ctap"
	"github.com/keydesk/keydesk/device/virtual/fidotest"
	"github.com/keydesk/keydesk/device/virtual/ptyhid"
)

func makeCred(t *testing.T, tg *target, rpID, user string, discoverable bool, prot int) *fidokey.Registration {
	t.Helper()
	reg, err := tg.dev.MakeCredential(ctxT(t), fidokey.MakeOptions{RPID: rpID, RPName: rpID + " name", UserID: []byte(user), UserName: user,
		DisplayName: "Display " + user, Challenge: []byte("challenge"), Discoverable: discoverable, CredProtect: prot}, tg.callbacks())
	if err != nil {
		t.Fatalf("making a credential for %s/%s: %v", rpID, user, err)
	}
	return reg
}

func TestCredentialsListAndDelete(t *testing.T) {
	tg := newTarget(t, 3100030)
	ctx := ctxT(t)
	if _, err := tg.dev.Credentials(ctx, tg.callbacks()); !errors.Is(err, device.ErrPINNotSet) {
		t.Fatalf("listing without a pin: %v, want ErrPINNotSet", err)
	}
	if err := tg.dev.SetPIN(ctx, pin1); err != nil {
		t.Fatal(err)
	}
	if creds, err := tg.dev.Credentials(ctx, tg.callbacks()); err != nil || len(creds) != 0 {
		t.Fatalf("empty key: %v, %v", creds, err)
	}
	a := makeCred(t, tg, "a.example", "alice", true, 2)
	b := makeCred(t, tg, "b.example", "bob", true, 3)
	makeCred(t, tg, "c.example", "carol", false, 0) // not discoverable: not listed
	creds, err := tg.dev.Credentials(ctx, tg.callbacks())
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(creds, func(i, j int) bool { return creds[i].RPID < creds[j].RPID })
	if len(creds) != 2 {
		t.Fatalf("listed %d credentials: %+v", len(creds), creds)
	}
	for i, w := range []struct {
		rp, user string
		id       []byte
		prot     int
	}{{"a.example", "alice", a.CredentialID, 2}, {"b.example", "bob", b.CredentialID, 3}} {
		c := creds[i]
		if c.RPID != w.rp || c.UserName != w.user || string(c.UserID) != w.user || c.DisplayName != "Display "+w.user || !bytes.Equal(c.ID, w.id) || c.CredProtect != w.prot {
			t.Errorf("credential %d: %+v", i, c)
		}
		if tg.vk != nil && c.RPName != w.rp+" name" {
			t.Errorf("rp name %q", c.RPName)
		}
	}
	var wp *device.WrongPINError
	if _, err := tg.dev.Credentials(ctx, tg.callbacksWithPIN(wrong)); !errors.As(err, &wp) {
		t.Fatalf("listing with a wrong pin: %v", err)
	}
	if err := tg.dev.DeleteCredential(ctx, tg.callbacks(), a.CredentialID); err != nil {
		t.Fatal(err)
	}
	if err := tg.dev.DeleteCredential(ctx, tg.callbacks(), a.CredentialID); !errors.Is(err, device.ErrNoCredentials) {
		t.Fatalf("deleting twice: %v, want ErrNoCredentials", err)
	}
	creds, err = tg.dev.Credentials(ctx, tg.callbacks())
	if err != nil || len(creds) != 1 || creds[0].RPID != "b.example" {
		t.Fatalf("after delete: %+v, %v", creds, err)
	}
	if _, err := tg.dev.GetAssertion(ctx, fidokey.AssertOptions{RPID: "a.example", Challenge: []byte("c"), UserVerification: true}, tg.callbacks()); !errors.Is(err, device.ErrNoCredentials) {
		t.Fatalf("assertion with a deleted credential: %v", err)
	}
}

func TestReset(t *testing.T) {
	tg := newTarget(t, 3100040)
	tg.virtualOnly() // the clock and a second key are virtual
	ctx := ctxT(t)
	if err := tg.dev.SetPIN(ctx, pin1); err != nil {
		t.Fatal(err)
	}
	makeCred(t, tg, "a.example", "alice", true, 2)

	// Not the key the person chose: nothing is reset.
	err := tg.dev.Reset(ctx, tg.callbacks(), tg.serial+1)
	var sm *device.SerialMismatchError
	if !errors.As(err, &sm) || sm.Want != tg.serial+1 || sm.Got != tg.serial {
		t.Fatalf("reset of the wrong key: %v", err)
	}
	if st, _ := tg.dev.Status(ctx); !st.PINSet {
		t.Fatal("the wrong key was reset")
	}

	// Too late after power-up: a typed error whose hint says what to do.
	late := tg.callbacks()
	late.Reinsert = func(context.Context) error {
		tg.vk.Key.PowerCycle()
		tg.clock.Advance(11 * time.Second)
		return nil
	}
	err = tg.dev.Reset(ctx, late, tg.serial)
	if !errors.Is(err, device.ErrResetWindow) || device.Hint(err) == "" {
		t.Fatalf("reset outside the window: %v (hint %q)", err, device.Hint(err))
	}
	if st, _ := tg.dev.Status(ctx); !st.PINSet {
		t.Fatal("a refused reset changed the key")
	}

	// Without a reinsert callback nothing happens.
	if err := tg.dev.Reset(ctx, device.Callbacks{}, tg.serial); err == nil {
		t.Fatal("reset without a reinsert callback")
	}

	// The person pulls the key and never puts it back.
	gone := tg.callbacks()
	gone.Reinsert = func(context.Context) error { tg.vk.Key.Remove(); return nil }
	if err := tg.dev.Reset(ctx, gone, tg.serial); !errors.Is(err, device.ErrKeyRemoved) {
		t.Fatalf("reset of a key that was not put back: %v", err)
	}

	// Inside the window, with a touch, after a real remove and insert.
	touched := false
	cb := tg.callbacks()
	cb.Touch = func(context.Context) { touched = true }
	cb.Reinsert = func(context.Context) error { tg.vk.Key.Remove(); tg.vk.Key.Insert(); return nil }
	if err := tg.dev.Reset(ctx, cb, tg.serial); err != nil {
		t.Fatal(err)
	}
	st, err := tg.dev.Status(ctx)
	if err != nil || st.PINSet || st.RemainingResident != 100 || !touched {
		t.Fatalf("after reset: %+v, %v, touched %v", st, err, touched)
	}

	// Nobody touches: touch timeout.
	tg.vk.Key.Presence.SetMode(virtual.TouchNever)
	tg.vk.Key.Presence.SetTimeout(100 * time.Millisecond)
	if err := tg.dev.Reset(ctx, tg.callbacks(), tg.serial); !errors.Is(err, device.ErrTouchTimeout) {
		t.Fatalf("reset nobody confirmed: %v", err)
	}
}

// Firmware before 5.5.4 allows 5 s after power-up, later firmware 10 s.
func TestResetWindowOldFirmware(t *testing.T) {
	if fidokey.ResetWindow(device.Version{Major: 5, Minor: 5, Patch: 3}) != 5 || fidokey.ResetWindow(device.Version{Major: 5, Minor: 5, Patch: 4}) != 10 {
		t.Fatal("reset windows")
	}
	id := virtual.DefaultIdentity(3100041)
	id.Firmware = virtual.Version{Major: 5, Minor: 4, Patch: 3}
	vk := virtual.NewKey(id)
	clock := fidotest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	vk.SetClock(clock.Now)
	auth, err := ctap.New(vk)
	if err != nil {
		t.Fatal(err)
	}
	defer auth.Close()
	link := filepath.Join(t.TempDir(), "fido")
	pd, err := ptyhid.Open(vk, auth, link)
	if err != nil {
		t.Fatal(err)
	}
	defer pd.Close()
	dev := fidokey.Open(link)
	after := func(d time.Duration) device.Callbacks {
		return device.Callbacks{Reinsert: func(context.Context) error { vk.PowerCycle(); clock.Advance(d); return nil }}
	}
	if err := dev.Reset(ctxT(t), after(6*time.Second), 3100041); !errors.Is(err, device.ErrResetWindow) {
		t.Fatalf("reset 6 s after power-up on 5.4.3: %v, want ErrResetWindow", err)
	}
	if err := dev.Reset(ctxT(t), after(4*time.Second), 3100041); err != nil {
		t.Fatalf("reset 4 s after power-up on 5.4.3: %v", err)
	}
}
