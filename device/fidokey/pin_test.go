package fidokey_test

import (
	"errors"
	"testing"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
)

// Eight wrong PINs block the PIN; three in a row block PIN entry until the
// key is powered again (CTAP 2.1 §6.5.2).
func TestWrongPINDownToBlocked(t *testing.T) {
	tg := newTarget(t, 3100020)
	ctx := ctxT(t)
	if err := tg.dev.SetPIN(ctx, pin1); err != nil {
		t.Fatal(err)
	}
	want := [][]any{{7, 6, device.ErrPINAuthBlocked}, {4, 3, device.ErrPINAuthBlocked}, {1, device.ErrFIDO2PINBlocked}}
	for round, steps := range want {
		for i, w := range steps {
			err := tg.dev.ChangePIN(ctx, wrong, pin2)
			switch w := w.(type) {
			case int:
				var wp *device.WrongPINError
				if !errors.As(err, &wp) || wp.Retries != w {
					t.Fatalf("round %d try %d: %v, want WrongPINError with %d left", round, i, err, w)
				}
			case error:
				if !errors.Is(err, w) {
					t.Fatalf("round %d try %d: %v, want %v", round, i, err, w)
				}
				if device.Hint(err) == "" {
					t.Errorf("no hint for %v", err)
				}
			}
		}
		if round < 2 {
			// While auth-blocked even the right PIN is refused.
			if err := tg.dev.ChangePIN(ctx, pin1, pin2); !errors.Is(err, device.ErrPINAuthBlocked) {
				t.Fatalf("right pin while auth-blocked: %v", err)
			}
			if err := tg.reinsert(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, err := tg.dev.Status(ctx)
	if err != nil || st.PINRetries != 0 {
		t.Fatalf("blocked status %+v, %v", st, err)
	}
	err = tg.dev.ChangePIN(ctx, pin1, pin2)
	if !errors.Is(err, device.ErrPINBlocked) || !errors.Is(err, device.ErrFIDO2PINBlocked) {
		t.Fatalf("right pin when blocked: %v", err)
	}
	if _, err := tg.dev.Credentials(ctx, tg.callbacks()); !errors.Is(err, device.ErrPINBlocked) {
		t.Fatalf("credential management when blocked: %v", err)
	}
	// Only a reset recovers the key.
	if err := tg.dev.Reset(ctx, tg.callbacks(), tg.serial); err != nil {
		t.Fatal(err)
	}
	if st, err := tg.dev.Status(ctx); err != nil || st.PINSet {
		t.Fatalf("after reset: %+v, %v", st, err)
	}
}

func TestMinPINLengthAndForceChange(t *testing.T) {
	tg := newTarget(t, 3100021)
	ctx := ctxT(t)
	if err := tg.dev.SetPIN(ctx, pin1); err != nil { // 6 digits
		t.Fatal(err)
	}
	var wp *device.WrongPINError
	if err := tg.dev.SetMinPINLength(ctx, wrong, 8); !errors.As(err, &wp) || wp.Retries != 7 {
		t.Fatalf("set min pin length with a wrong pin: %v", err)
	}
	if err := tg.dev.SetMinPINLength(ctx, pin1, 8); err != nil {
		t.Fatal(err)
	}
	st, err := tg.dev.Status(ctx)
	if err != nil || st.MinPINLength != 8 || !st.ForcePINChange {
		t.Fatalf("after raising the minimum above the pin: %+v, %v", st, err)
	}
	// The PIN must be changed before it is used.
	if _, err := tg.dev.Credentials(ctx, tg.callbacks()); !errors.Is(err, device.ErrPINPolicy) {
		t.Fatalf("using the pin while a change is forced: %v, want ErrPINPolicy", err)
	}
	if err := tg.dev.ChangePIN(ctx, pin1, "1234567"); !errors.Is(err, device.ErrPINPolicy) {
		t.Fatalf("7-character pin under minimum 8: %v", err)
	}
	if err := tg.dev.ChangePIN(ctx, pin1, "12345678"); err != nil {
		t.Fatal(err)
	}
	if st, err = tg.dev.Status(ctx); err != nil || st.ForcePINChange {
		t.Fatalf("after the change: %+v, %v", st, err)
	}
	if err := tg.dev.SetMinPINLength(ctx, "12345678", 6); !errors.Is(err, device.ErrPINPolicy) {
		t.Fatalf("lowering the minimum: %v, want ErrPINPolicy", err)
	}
	if err := tg.dev.ForcePINChange(ctx, "12345678"); err != nil {
		t.Fatal(err)
	}
	if st, err = tg.dev.Status(ctx); err != nil || !st.ForcePINChange || st.MinPINLength != 8 {
		t.Fatalf("after forcing a change: %+v, %v", st, err)
	}
	if _, err := tg.dev.GetAssertion(ctx, fidokey.AssertOptions{RPID: "x.example", Challenge: []byte("c"), UserVerification: true}, tg.callbacksWithPIN("12345678")); !errors.Is(err, device.ErrPINPolicy) {
		t.Fatalf("assertion while a change is forced: %v", err)
	}
	if err := tg.dev.ChangePIN(ctx, "12345678", "87654321"); err != nil {
		t.Fatal(err)
	}
	if st, err = tg.dev.Status(ctx); err != nil || st.ForcePINChange {
		t.Fatalf("after the second change: %+v, %v", st, err)
	}
}
