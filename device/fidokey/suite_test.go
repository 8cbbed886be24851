package fidokey_test

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/fidotest"
)

// The shared suite runs against a fresh virtual key for every test, or,
// with -yubikey-fido-path=PATH -wipe-yubikey, against a real YubiKey, which
// it resets (erasing every FIDO2 credential) before each test. Tests that
// need to simulate removal or a stuck touch run on the virtual key only.
var (
	yubikeyPath = flag.String("yubikey-fido-path", "", "run the suite against the real YubiKey at this FIDO HID path (destructive; needs -wipe-yubikey)")
	wipeYubikey = flag.Bool("wipe-yubikey", false, "allow the suite to reset the FIDO2 application of the key at -yubikey-fido-path")
)

const (
	pin1  = "246810"
	pin2  = "13579ab"
	wrong = "000000"
)

// target is the key one test runs against.
type target struct {
	t      *testing.T
	dev    *fidokey.Device
	path   string
	serial uint32
	vk     *fidotest.Key // nil on hardware
	clock  *fidotest.Clock
}

func newTarget(t *testing.T, serial uint32) *target {
	t.Helper()
	if *yubikeyPath != "" {
		if !*wipeYubikey {
			t.Skip("-yubikey-fido-path given without -wipe-yubikey: refusing to reset a real key")
		}
		tg := &target{t: t, dev: fidokey.Open(*yubikeyPath), path: *yubikeyPath}
		s, _, ok, err := tg.dev.Info(context.Background())
		if err != nil || !ok {
			t.Fatalf("reading the yubikey's serial: ok %v, %v", ok, err)
		}
		tg.serial = s
		if err := tg.dev.Reset(context.Background(), tg.callbacks(), s); err != nil {
			t.Fatalf("resetting yubikey %d before the test: %v", s, err)
		}
		return tg
	}
	k := fidotest.Start(t, serial)
	clock := fidotest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	k.Key.SetClock(clock.Now)
	return &target{t: t, dev: fidokey.Open(k.Path), path: k.Path, serial: serial, vk: k, clock: clock}
}

// virtualOnly skips a test that needs control over the key's body.
func (tg *target) virtualOnly() {
	if tg.vk == nil {
		tg.t.Skip("needs the virtual key (simulated removal, touch or clock)")
	}
}

// reinsert power-cycles the virtual key, or asks the person at the desk to
// remove and reinsert the real one and waits until they have.
func (tg *target) reinsert(ctx context.Context) error {
	if tg.vk != nil {
		tg.vk.Key.PowerCycle()
		return nil
	}
	tg.t.Logf("remove YubiKey %d and insert it again", tg.serial)
	// Hardware only: no event source for a hidraw node here, so poll.
	for _, wantGone := range []bool{true, false} {
		for {
			_, err := os.Stat(tg.path)
			if os.IsNotExist(err) == wantGone {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func (tg *target) callbacks() device.Callbacks {
	return tg.callbacksWithPIN(pin1)
}

func (tg *target) callbacksWithPIN(pin string) device.Callbacks {
	return device.Callbacks{
		PIN: func(context.Context, string) (string, error) { return pin, nil },
		Touch: func(context.Context) {
			if tg.vk == nil {
				tg.t.Log("touch the key")
			}
		},
		Reinsert: tg.reinsert,
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// manualTouch makes the virtual key wait for Presence.Touch.
func (tg *target) manualTouch() {
	tg.vk.Key.Presence.SetMode(virtual.TouchManual)
	tg.vk.Key.Presence.SetTimeout(30 * time.Second)
}
