package fidokey_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/virtual"
)

func TestTouchTimeout(t *testing.T) {
	tg := newTarget(t, 3100050)
	tg.virtualOnly()
	ctx := ctxT(t)
	reg := makeCred(t, tg, "a.example", "u", false, 0)
	// The key gives up by itself.
	tg.vk.Key.Presence.SetMode(virtual.TouchNever)
	tg.vk.Key.Presence.SetTimeout(150 * time.Millisecond)
	_, err := tg.dev.MakeCredential(ctx, fidokey.MakeOptions{RPID: "a.example", UserID: []byte("u"), UserName: "u", Challenge: []byte("c")}, tg.callbacks())
	if !errors.Is(err, device.ErrTouchTimeout) || device.Hint(err) == "" {
		t.Fatalf("no touch: %v, want ErrTouchTimeout", err)
	}
	// The caller gives up first: its deadline, not a touch timeout.
	tg.manualTouch()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = tg.dev.GetAssertion(short, fidokey.AssertOptions{RPID: "a.example", Challenge: []byte("c"), CredentialIDs: [][]byte{reg.CredentialID}}, tg.callbacks())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline while waiting for a touch: %v", err)
	}
	if tg.vk.Key.Presence.Pending() != 0 {
		t.Error("the key still waits for a touch after the caller gave up")
	}
}

func TestCancelWhileWaitingForTouch(t *testing.T) {
	tg := newTarget(t, 3100051)
	tg.virtualOnly()
	ctx := ctxT(t)
	if err := tg.dev.SetPIN(ctx, pin1); err != nil {
		t.Fatal(err)
	}
	tg.manualTouch()
	waiting := tg.vk.Key.Presence.Waiting()
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := tg.dev.MakeCredential(cctx, fidokey.MakeOptions{RPID: "a.example", UserID: []byte("u"), UserName: "u", Challenge: []byte("c"), Discoverable: true}, tg.callbacks())
		done <- err
	}()
	<-waiting
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v, want context.Canceled", err)
	}
	// Nothing was made, and the key serves the next request.
	creds, err := tg.dev.Credentials(ctx, tg.callbacks())
	if err != nil || len(creds) != 0 {
		t.Fatalf("after a cancelled registration: %+v, %v", creds, err)
	}
	// A context that is already done never reaches the key.
	if _, err := tg.dev.Status(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("status with a cancelled context: %v", err)
	}
}

// The key is pulled while it waits for a touch: the operation fails with
// ErrKeyRemoved and, reinserted, the key holds no half-made credential.
func TestKeyRemovedMidOperation(t *testing.T) {
	tg := newTarget(t, 3100052)
	tg.virtualOnly()
	ctx := ctxT(t)
	if err := tg.dev.SetPIN(ctx, pin1); err != nil {
		t.Fatal(err)
	}
	before, err := tg.dev.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tg.manualTouch()
	waiting := tg.vk.Key.Presence.Waiting()
	done := make(chan error, 1)
	go func() {
		_, err := tg.dev.MakeCredential(ctx, fidokey.MakeOptions{RPID: "a.example", UserID: []byte("u"), UserName: "u", Challenge: []byte("c"), Discoverable: true}, tg.callbacks())
		done <- err
	}()
	<-waiting
	tg.vk.Key.Remove()
	err = <-done
	if !errors.Is(err, device.ErrKeyRemoved) || device.Hint(err) == "" {
		t.Fatalf("removed while waiting for a touch: %v, want ErrKeyRemoved", err)
	}
	if _, err := tg.dev.Status(ctx); !errors.Is(err, device.ErrKeyRemoved) {
		t.Fatalf("status of a removed key: %v", err)
	}
	if _, _, _, err := tg.dev.Info(ctx); !errors.Is(err, device.ErrKeyRemoved) {
		t.Fatalf("info of a removed key: %v", err)
	}
	tg.vk.Key.Insert()
	tg.vk.Key.Presence.SetMode(virtual.TouchAuto)
	after, err := tg.dev.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.RemainingResident != before.RemainingResident || after.PINRetries != before.PINRetries || !after.PINSet {
		t.Fatalf("state changed by the interrupted operation: before %+v after %+v", before, after)
	}
	creds, err := tg.dev.Credentials(ctx, tg.callbacks())
	if err != nil || len(creds) != 0 {
		t.Fatalf("credentials after the interrupted registration: %+v, %v", creds, err)
	}
}

func TestEnterpriseAttestation(t *testing.T) {
	tg := newTarget(t, 3100053)
	ctx := ctxT(t)
	st, err := tg.dev.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tg.vk != nil && st.EnterpriseAttestation {
		t.Fatal("the virtual key claims enterprise attestation")
	}
	_, err = tg.dev.MakeCredential(ctx, fidokey.MakeOptions{RPID: "a.example", UserID: []byte("u"), UserName: "u", Challenge: []byte("c"), EnterpriseAttestation: true}, tg.callbacks())
	if !errors.Is(err, device.ErrNotSupported) || device.Hint(err) == "" {
		t.Fatalf("enterprise attestation: %v, want ErrNotSupported", err)
	}
}
