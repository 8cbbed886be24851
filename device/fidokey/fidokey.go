// Package fidokey is keydesk's FIDO2 adapter: every CTAP 2.1 operation the
// admin workflows need, over libfido2 1.12, with WebAuthn L2 client data
// built the way a relying party expects it.
//
// Device calls go through keydesk's own thin cgo layer, package fidoc, and
// not through github.com/keys-pub/go-libfido2, which serves only to list
// devices (Reset's search for a key that came back under another path).
// go-libfido2 lacks what keydesk needs (authenticatorConfig, the full
// getInfo, raw authenticator data and attestation statement, credProtect in
// credential listings, a handle to cancel), maps no PIN_BLOCKED, and its
// calls fail now and then with FIDO_ERR_RX when a Go runtime signal
// interrupts libfido2's ppoll; fidoc blocks those signals around each call
// (fidoc.Guard).
//
// A Device holds no handle while idle: each call opens the key, does its
// work and closes it. Every call takes a context; cancelling it sends
// CTAPHID_CANCEL to a request that waits for a touch. Errors are the typed
// errors of package device (see mapErr for the contract).
package fidokey

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	libfido2 "github.com/keys-pub/go-libfido2"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey/fidoc"
)

// Device is one FIDO2 authenticator reached by its HID device path.
type Device struct {
	mu   sync.Mutex
	path string
}

// Open returns the device at path. Nothing is opened until a call needs it.
func Open(path string) *Device { return &Device{path: path} }

// Path is the device path calls open now (Reset may move it when the key
// comes back under another path).
func (d *Device) Path() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.path
}

func (d *Device) setPath(p string) {
	d.mu.Lock()
	d.path = p
	d.mu.Unlock()
}

// errNoCallback is returned when an operation needs a callback the caller
// left nil.
func errNoCallback(what string) error {
	return fmt.Errorf("%s needed but no callback was given", what)
}

// pinWhat is what the PIN callback is asked for.
const pinWhat = "FIDO2 PIN"

func askPIN(ctx context.Context, cb device.Callbacks) (string, error) {
	if cb.PIN == nil {
		return "", errNoCallback("fido2 pin")
	}
	pin, err := cb.PIN(ctx, pinWhat)
	if err != nil {
		return "", fmt.Errorf("asking for the fido2 pin: %w", err)
	}
	return pin, nil
}

func touch(ctx context.Context, cb device.Callbacks) {
	if cb.Touch != nil {
		cb.Touch(ctx)
	}
}

// open opens the key, mapping a missing device to device.ErrKeyRemoved.
func (d *Device) open(ctx context.Context) (*fidoc.Dev, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path := d.Path()
	dev, err := fidoc.Open(path)
	if err != nil {
		if gone(path) {
			return nil, fmt.Errorf("opening %s: %w (%w)", path, device.ErrKeyRemoved, err)
		}
		if needsElevation() {
			return nil, fmt.Errorf("opening %s: %w (%w)", path, device.ErrNeedsElevation, err)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return dev, nil
}

// gone reports whether the device node has disappeared.
func gone(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// cancelEvery is how often a cancelled context re-sends CTAPHID_CANCEL until
// the request in flight ends: a CANCEL that arrives between two requests of
// one operation is ignored by the key (CTAP 2.1 §11.2.9.1.5).
const cancelEvery = 50 * time.Millisecond

// run calls f with dev while watching ctx: when ctx ends, the request in
// flight is cancelled. A cancelled request reports ctx's error.
func run(ctx context.Context, dev *fidoc.Dev, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	stopWatch := context.AfterFunc(ctx, func() {
		defer close(done)
		t := time.NewTicker(cancelEvery)
		defer t.Stop()
		for {
			dev.Cancel()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	err := f()
	if !stopWatch() {
		// The watcher started: stop it before the caller closes dev.
		close(stop)
		<-done
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// do opens the key, runs f under run, and closes the key.
func (d *Device) do(ctx context.Context, f func(*fidoc.Dev) error) error {
	dev, err := d.open(ctx)
	if err != nil {
		return err
	}
	defer dev.Close()
	return run(ctx, dev, func() error { return f(dev) })
}

// mapErr turns a libfido2 failure of op into keydesk's typed errors:
//
//   - PIN_INVALID: *device.WrongPINError with the retries the key reports
//     afterwards (-1 when they can't be read)
//   - PIN_AUTH_BLOCKED: device.ErrPINAuthBlocked (remove and reinsert)
//   - PIN_BLOCKED: device.ErrFIDO2PINBlocked (matches device.ErrPINBlocked)
//   - PIN_NOT_SET, PIN_REQUIRED: device.ErrPINNotSet
//   - PIN_POLICY_VIOLATION: device.ErrPINPolicy
//   - USER_ACTION_TIMEOUT, ACTION_TIMEOUT: device.ErrTouchTimeout
//   - NO_CREDENTIALS: device.ErrNoCredentials
//   - INVALID_COMMAND, UNSUPPORTED_OPTION, UNAUTHORIZED_PERMISSION:
//     device.ErrNotSupported
//   - TX, RX or any failure once the device node is gone: device.ErrKeyRemoved
//   - RX with the device still there (no answer within
//     fidoc's response limit, or a reply out of turn): device.ErrNoAnswer
//   - a cancelled or expired ctx: ctx.Err()
//
// The libfido2 code stays in the chain (errors.As with fidoc.Code, or the
// go-libfido2 sentinel).
func (d *Device) mapErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if errors.Is(err, device.ErrKeyRemoved) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if errors.Is(err, fidoc.ErrMissing) {
		return fmt.Errorf("%s: %w", op, device.ErrLibraryLacks)
	}
	code, ok := codeOf(err)
	if !ok {
		return fmt.Errorf("%s: %w", op, err)
	}
	var typed error
	switch code {
	case fidoc.ErrPINInvalid:
		retries := -1
		if n, rerr := d.retries(ctx); rerr == nil {
			retries = n
		}
		typed = &device.WrongPINError{Retries: retries}
	case fidoc.ErrPINAuthBlocked:
		typed = device.ErrPINAuthBlocked
	case fidoc.ErrPINBlocked:
		typed = device.ErrFIDO2PINBlocked
	case fidoc.ErrPINNotSet, fidoc.ErrPINRequired:
		typed = device.ErrPINNotSet
	case fidoc.ErrPINPolicy:
		typed = device.ErrPINPolicy
	case fidoc.ErrUserActionTimeout, fidoc.ErrActionTimeout:
		typed = device.ErrTouchTimeout
	case fidoc.ErrNoCredentials:
		typed = device.ErrNoCredentials
	case fidoc.ErrInvalidCommand, fidoc.ErrUnsupportedOption, fidoc.ErrUnauthorizedPerm:
		typed = device.ErrNotSupported
	case fidoc.ErrTX, fidoc.ErrRX, fidoc.ErrInternal:
		if gone(d.Path()) {
			typed = device.ErrKeyRemoved
		} else if code == fidoc.ErrRX {
			typed = device.ErrNoAnswer
		}
	}
	if typed == nil && gone(d.Path()) {
		typed = device.ErrKeyRemoved
	}
	if typed == nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w (%w)", op, typed, err)
}

// codeOf finds the libfido2 result in err, from fidoc or go-libfido2.
func codeOf(err error) (fidoc.Code, bool) {
	var c fidoc.Code
	if errors.As(err, &c) {
		return c, true
	}
	var le libfido2.Error
	if errors.As(err, &le) {
		return fidoc.Code(le.Code), true
	}
	for s, c := range libfidoCodes {
		if errors.Is(err, s) {
			return c, true
		}
	}
	return 0, false
}

// libfidoCodes maps go-libfido2's sentinels back to libfido2 codes.
var libfidoCodes = map[error]fidoc.Code{
	libfido2.ErrTX:                 fidoc.ErrTX,
	libfido2.ErrRX:                 fidoc.ErrRX,
	libfido2.ErrInternal:           fidoc.ErrInternal,
	libfido2.ErrPinInvalid:         fidoc.ErrPINInvalid,
	libfido2.ErrPinAuthBlocked:     fidoc.ErrPINAuthBlocked,
	libfido2.ErrPinNotSet:          fidoc.ErrPINNotSet,
	libfido2.ErrPinRequired:        fidoc.ErrPINRequired,
	libfido2.ErrPinPolicyViolation: fidoc.ErrPINPolicy,
	libfido2.ErrActionTimeout:      fidoc.ErrActionTimeout,
	libfido2.ErrNoCredentials:      fidoc.ErrNoCredentials,
	libfido2.ErrInvalidCommand:     fidoc.ErrInvalidCommand,
	libfido2.ErrUnsupportedOption:  fidoc.ErrUnsupportedOption,
	libfido2.ErrNotAllowed:         fidoc.ErrNotAllowed,
	libfido2.ErrKeepaliveCancel:    fidoc.ErrKeepaliveCancel,
}

// retries reads the PIN retry counter (CTAP 2.1 §6.5.5.2).
func (d *Device) retries(ctx context.Context) (int, error) {
	var n int
	err := d.do(ctx, func(dev *fidoc.Dev) error {
		var err error
		n, err = dev.Retries()
		return err
	})
	return n, err
}
