package fidokey_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/virtual/ctap"
)

func TestStatusAndPIN(t *testing.T) {
	tg := newTarget(t, 3100001)
	ctx := ctxT(t)
	st, err := tg.dev.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PINSet || st.PINRetries != 0 || st.MinPINLength < 4 || st.RemainingResident <= 0 {
		t.Errorf("fresh key status %+v", st)
	}
	if !slices.Contains(st.Versions, "FIDO_2_0") || !st.Options["rk"] || st.Options["clientPin"] {
		t.Errorf("versions %v options %v", st.Versions, st.Options)
	}
	if tg.vk != nil {
		if !bytes.Equal(st.AAGUID[:], ctap.AAGUID[:]) || st.Firmware != (device.Version{Major: 5, Minor: 7, Patch: 2}) || st.RemainingResident != 100 {
			t.Errorf("virtual key status %+v", st)
		}
	}
	if err := tg.dev.SetPIN(ctx, "123"); !errors.Is(err, device.ErrPINPolicy) {
		t.Fatalf("3-digit pin: %v, want ErrPINPolicy", err)
	}
	if err := tg.dev.SetPIN(ctx, pin1); err != nil {
		t.Fatal(err)
	}
	if st, err = tg.dev.Status(ctx); err != nil || !st.PINSet || st.PINRetries != 8 {
		t.Fatalf("after set pin: %+v, %v", st, err)
	}
	if err := tg.dev.SetPIN(ctx, pin2); err == nil {
		t.Fatal("set pin over an existing pin succeeded")
	}
	var wp *device.WrongPINError
	if err := tg.dev.ChangePIN(ctx, wrong, pin2); !errors.As(err, &wp) || wp.Retries != 7 {
		t.Fatalf("change with a wrong pin: %v, want WrongPINError with 7 left", err)
	}
	if err := tg.dev.ChangePIN(ctx, pin1, pin2); err != nil {
		t.Fatal(err)
	}
	if st, err = tg.dev.Status(ctx); err != nil || st.PINRetries != 8 {
		t.Fatalf("a right pin refills the retries: %+v, %v", st, err)
	}
	if err := tg.dev.ChangePIN(ctx, pin1, pin2); !errors.As(err, &wp) {
		t.Fatalf("old pin after change: %v", err)
	}
}

func TestInfoSerial(t *testing.T) {
	tg := newTarget(t, 3100002)
	serial, fw, ok, err := tg.dev.Info(ctxT(t))
	if err != nil || !ok {
		t.Fatalf("info: ok %v, %v", ok, err)
	}
	if serial != tg.serial {
		t.Errorf("serial %d, want %d", serial, tg.serial)
	}
	if tg.vk != nil && fw != (device.Version{Major: 5, Minor: 7, Patch: 2}) {
		t.Errorf("firmware %s", fw)
	}
}
