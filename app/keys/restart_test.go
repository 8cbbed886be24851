package keys_test

import (
	"context"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/pcscd"
	"github.com/keydesk/keydesk/device/virtual/sim"
)

var daemon *pcscd.Daemon

func TestMain(m *testing.M) { pcscd.RunTests(m, 1, &daemon) }

// TestKeysSurvivePcscdRestart: the use-case layer's watch (the one the CLI
// and the desktop app stand on) goes on after pcscd restarts under it:
// WaitReturn sees the key leave and come back, with its serial, and Find
// finds it by serial.
func TestKeysSurvivePcscdRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	y, svc := plug(t, ctx, sim.FirstSerial)
	if _, err := svc.Find(ctx, y.Serial()); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		// A watch running across the restart: it must see the key leave
		// and come back with its serial.
		watching := make(chan struct{})
		returned := make(chan error, 1)
		go func() {
			first, gone := true, false
			_, err := svc.WaitUntil(ctx, y.Serial(), func(k *device.Key) bool {
				if first {
					first = false
					close(watching)
				}
				if k == nil {
					gone = true
				}
				return gone && k != nil
			})
			returned <- err
		}()
		<-watching
		if err := daemon.Restart(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := daemon.WaitCard(ctx, 0, true); err != nil {
			t.Fatalf("round %d: card back: %v", round, err)
		}
		y.Key.Remove()
		if err := daemon.WaitCard(ctx, 0, false); err != nil {
			t.Fatalf("round %d: card gone: %v", round, err)
		}
		y.Key.Insert()
		if err := <-returned; err != nil {
			t.Fatalf("round %d: the key was not listed again: %v", round, err)
		}
		if k, err := svc.Find(ctx, y.Serial()); err != nil || k.SerialUnknown {
			t.Fatalf("round %d: find: %+v %v", round, k, err)
		}
	}
}

// plug runs a virtual key with serial in the test pcscd's reader until
// the test ends (the next test's card then arrives as a fresh insertion)
// and returns it with a key service that sees it over PC/SC only.
func plug(t *testing.T, ctx context.Context, serial uint32) (*sim.YubiKey, *keys.Service) {
	t.Helper()
	y, err := sim.New(sim.Options{Serial: serial, Firmware: virtual.Version{Major: 5, Minor: 7, Patch: 2}})
	if err != nil {
		t.Fatal(err)
	}
	kctx, stopKey := context.WithCancel(ctx)
	slot, err := y.Run(kctx, daemon.Addr(0), "")
	if err != nil {
		stopKey()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopKey()
		<-slot.Done()
		wctx, done := context.WithTimeout(context.Background(), 10*time.Second)
		daemon.WaitCard(wctx, 0, false)
		done()
	})
	if err := daemon.WaitCard(ctx, 0, true); err != nil {
		t.Fatal(err)
	}
	svc, err := keys.New(keys.Config{FIDOInfo: func(context.Context, string) (uint32, device.Version, bool, error) {
		return 0, device.Version{}, false, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return y, svc
}
