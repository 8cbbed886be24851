package fidokey

import (
	"context"
	"fmt"
	"time"

	libfido2 "github.com/keys-pub/go-libfido2"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey/fidoc"
)

// ResetWindow is how long after power-up a YubiKey accepts authenticatorReset:
// 10 s from firmware 5.5.4, 5 s before.
func ResetWindow(fw device.Version) int {
	if fw.AtLeast(device.Version{Major: 5, Minor: 5, Patch: 4}) {
		return 10
	}
	return 5
}

// Reset erases every FIDO2 credential and the PIN (authenticatorReset, CTAP
// 2.1 §6.6). A YubiKey accepts it only in the first seconds after power-up
// (ResetWindow), so Reset first asks the person to remove and reinsert the
// key (cb.Reinsert, required), finds the key again and, when wantSerial is
// not zero, checks over the FIDO interface that it is the key with that
// serial (*device.SerialMismatchError otherwise, and nothing is reset). It
// then calls cb.Touch and sends the reset, which the key confirms with a
// touch.
//
// A reset the key refuses because the window has passed is
// device.ErrResetWindow; a key nobody touched, device.ErrTouchTimeout.
func (d *Device) Reset(ctx context.Context, cb device.Callbacks, wantSerial uint32) error {
	const op = "resetting fido2"
	if cb.Reinsert == nil {
		return fmt.Errorf("%s: %w", op, errNoCallback("remove and reinsert"))
	}
	if err := cb.Reinsert(ctx); err != nil {
		return fmt.Errorf("%s: waiting for the key to be reinserted: %w", op, err)
	}
	if !d.waitPresent(ctx, wantSerial) {
		return fmt.Errorf("%s: %s: %w", op, d.Path(), device.ErrKeyRemoved)
	}
	if wantSerial != 0 {
		serial, _, ok, err := d.Info(ctx)
		if err != nil {
			return d.mapErr(ctx, op, err)
		}
		if !ok || serial != wantSerial {
			return fmt.Errorf("%s: %w", op, &device.SerialMismatchError{Want: wantSerial, Got: serial})
		}
	}
	err := d.do(ctx, func(dev *fidoc.Dev) error {
		touch(ctx, cb)
		return dev.Reset()
	})
	if c, ok := codeOf(err); ok && c == fidoc.ErrNotAllowed {
		return fmt.Errorf("%s: %w (%w)", op, device.ErrResetWindow, err)
	}
	return d.mapErr(ctx, op, err)
}

// enumerateWait is how long Reset waits for a reinserted key to appear: USB
// enumeration takes a moment after the person says the key is back, and the
// reset window is running meanwhile.
const enumerateWait = 2 * time.Second

// waitPresent waits up to enumerateWait for the key's device node, or for
// the key with wantSerial under another path.
func (d *Device) waitPresent(ctx context.Context, wantSerial uint32) bool {
	deadline := time.Now().Add(enumerateWait)
	for {
		if !gone(d.Path()) || d.refind(ctx, wantSerial) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// refind looks for the key with wantSerial among the FIDO devices libfido2
// lists, for a key that came back under another path. It reports whether
// it moved d there.
func (d *Device) refind(ctx context.Context, wantSerial uint32) bool {
	if wantSerial == 0 {
		return false
	}
	locs, err := libfido2.DeviceLocations()
	if err != nil {
		return false
	}
	for _, l := range locs {
		if device.IsPlatformFIDOPath(l.Path) {
			continue
		}
		if serial, _, ok, err := Open(l.Path).Info(ctx); err == nil && ok && serial == wantSerial {
			d.setPath(l.Path)
			return true
		}
	}
	return false
}
