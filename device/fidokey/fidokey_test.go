package fidokey_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/ctap"
	"github.com/keydesk/keydesk/device/virtual/ctaphid"
	"github.com/keydesk/keydesk/device/virtual/ptyhid"
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

// plainHandler hides the authenticator's vendor commands, as a FIDO key
// that is not a YubiKey has none.
type plainHandler struct{ ctaphid.Handler }

func TestInfoWithoutVendorCommand(t *testing.T) {
	vk := virtual.NewKey(virtual.DefaultIdentity(3100003))
	auth, err := ctap.New(vk)
	if err != nil {
		t.Fatal(err)
	}
	defer auth.Close()
	link := filepath.Join(t.TempDir(), "fido")
	pd, err := ptyhid.Open(vk, plainHandler{auth}, link)
	if err != nil {
		t.Fatal(err)
	}
	defer pd.Close()
	dev := fidokey.Open(link)
	serial, fw, ok, err := dev.Info(ctxT(t))
	if err != nil || ok || serial != 0 {
		t.Fatalf("info from a key without READ_CONFIG: serial %d ok %v, %v", serial, ok, err)
	}
	if fw != (device.Version{Major: 5, Minor: 7, Patch: 2}) {
		t.Errorf("firmware from CTAPHID INIT: %s", fw)
	}
	// Everything else still works through libfido2.
	if _, err := dev.Status(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}
