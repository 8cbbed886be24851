// Package keys is the use-case layer over attached keys: it finds them
// (real ones, or keydesk-sim's practice keys), picks the one a person means
// by serial, and gathers each key's state from every application into one
// report. The CLI and the desktop app both stand on it.
package keys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/discover"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/device/virtual"
)

// Config says where keys come from.
type Config struct {
	// Practice uses keydesk-sim's virtual keys, with state in SimDir, and
	// trusts the virtual attestation roots. Nothing else does.
	Practice bool
	SimDir   string
	// FIDOInfo reads a FIDO device's serial so its interface merges with
	// the key's PC/SC entry; device/fidokey's Info when nil.
	FIDOInfo func(ctx context.Context, path string) (uint32, device.Version, bool, error)
}

// Service answers questions about attached keys. It holds no connection.
type Service struct {
	cfg  Config
	opts discover.Options
}

// ErrNoKey: no key is attached (or none with the serial asked for).
var ErrNoKey = errors.New("no key found")

// ChooseError: several keys are attached and the caller did not say which.
type ChooseError struct{ Serials []uint32 }

func (e *ChooseError) Error() string {
	s := make([]string, len(e.Serials))
	for i, n := range e.Serials {
		s[i] = fmt.Sprint(n)
	}
	return "several keys are attached (" + strings.Join(s, ", ") + "); choose one by serial"
}

// New returns a Service. In practice mode it points this process's PC/SC
// client at keydesk-sim's private pcscd, which must be running; call it
// before anything else in the process touches PC/SC.
func New(cfg Config) (*Service, error) {
	if cfg.FIDOInfo == nil {
		cfg.FIDOInfo = func(ctx context.Context, path string) (uint32, device.Version, bool, error) {
			return fidokey.Open(path).Info(ctx)
		}
	}
	s := &Service{cfg: cfg, opts: discover.Options{FIDOInfo: cfg.FIDOInfo}}
	if cfg.Practice {
		if err := virtual.PracticeSupported(); err != nil {
			return nil, err
		}
		sock := filepath.Join(cfg.SimDir, "pcscd", "run", "pcscd.comm")
		if _, err := os.Stat(sock); err != nil {
			return nil, fmt.Errorf("practice mode needs keydesk-sim running with state in %s (start it with 'keydesk-sim run' or 'make run'): %w", cfg.SimDir, err)
		}
		os.Setenv("PCSCLITE_CSOCK_NAME", sock)
		s.opts.FIDOGlobs = []string{filepath.Join(cfg.SimDir, "hid", "key-*")}
		s.opts.NoSystemHID = true
	}
	return s, nil
}

// Practice reports whether the service runs on virtual keys.
func (s *Service) Practice() bool { return s.cfg.Practice }

// List returns the attached keys.
func (s *Service) List(ctx context.Context) ([]device.Key, error) {
	return discover.List(ctx, s.opts)
}

// Watch sends the attached keys now and on every change.
func (s *Service) Watch(ctx context.Context) (<-chan []device.Key, error) {
	return discover.Watch(ctx, s.opts)
}

// WaitReturn waits until the key with serial is no longer listed, then until
// it is listed again, as after a person removes and reinserts it. It returns
// the key as listed again, or ctx's error.
func (s *Service) WaitReturn(ctx context.Context, serial uint32) (device.Key, error) {
	gone := false
	return s.WaitUntil(ctx, serial, func(k *device.Key) bool {
		if k == nil {
			gone = true
		}
		return gone && k != nil
	})
}

// CCIDApps are the applications reached over the smart-card (CCID)
// interface; the rest (OTP aside) over FIDO HID.
const CCIDApps = device.AppPIV | device.AppOATH | device.AppOpenPGP | device.AppHSMAuth

// AwaitRestart waits for the key with serial to restart after a change of
// its USB applications to usb (the YubiKey restarts to apply one): for
// the interface it keeps (its smart-card reader while a CCID application
// stays on, else its FIDO device) to go away and come back with usb
// enabled, for up to wait. A restart quicker than the first look counts
// too. It returns the key as it came back, ctx's error when ctx ends, or
// an error when wait runs out.
func (s *Service) AwaitRestart(ctx context.Context, serial uint32, usb device.Application, wait time.Duration) (device.Key, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	ccid := usb&CCIDApps != 0
	present := func(k *device.Key) bool {
		if k == nil {
			return false
		}
		if ccid {
			return k.Reader != ""
		}
		return k.FIDOPath != ""
	}
	gone := false
	k, err := s.WaitUntil(wctx, serial, func(k *device.Key) bool {
		if !present(k) {
			gone = true
			return false
		}
		return gone && k.EnabledUSB == usb
	})
	if err == nil {
		return k, nil
	}
	if ctx.Err() != nil {
		return device.Key{}, ctx.Err()
	}
	if k, ferr := s.Find(ctx, serial); ferr == nil && present(&k) && k.EnabledUSB == usb {
		return k, nil
	}
	return device.Key{}, err
}

// WaitUntil watches the attached keys until done, called with the key with
// serial (nil while it is not listed), returns true. It returns that key,
// or ctx's error.
func (s *Service) WaitUntil(ctx context.Context, serial uint32, done func(*device.Key) bool) (device.Key, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx)
	if err != nil {
		return device.Key{}, err
	}
	for keys := range ch {
		var found *device.Key
		for i := range keys {
			if !keys[i].SerialUnknown && keys[i].Serial == serial {
				found = &keys[i]
			}
		}
		if done(found) {
			return *found, nil
		}
	}
	return device.Key{}, fmt.Errorf("key %d: %w", serial, ctx.Err())
}

// Find returns the key with serial, or the only key attached when serial is
// 0. Several keys and no serial gives *ChooseError.
func (s *Service) Find(ctx context.Context, serial uint32) (device.Key, error) {
	return s.FindVia(ctx, serial, 0)
}

// FindVia is Find looking only through one kind of interface (discover.PCSC
// for PIV, discover.FIDO for FIDO2), which saves a command the round trips
// to interfaces it will not use. Zero looks through both.
func (s *Service) FindVia(ctx context.Context, serial uint32, only discover.Interface) (device.Key, error) {
	opts := s.opts
	opts.Only = only
	list, err := discover.List(ctx, opts)
	if err != nil {
		return device.Key{}, err
	}
	var known []device.Key
	for _, k := range list {
		if !k.SerialUnknown {
			known = append(known, k)
		}
	}
	if serial != 0 {
		for _, k := range known {
			if k.Serial == serial {
				return k, nil
			}
		}
		return device.Key{}, fmt.Errorf("%w with serial %d", ErrNoKey, serial)
	}
	switch len(known) {
	case 0:
		if len(list) == 1 {
			return list[0], nil
		}
		return device.Key{}, fmt.Errorf("%w: insert a YubiKey", ErrNoKey)
	case 1:
		return known[0], nil
	}
	ce := &ChooseError{}
	for _, k := range known {
		ce.Serials = append(ce.Serials, k.Serial)
	}
	sort.Slice(ce.Serials, func(i, j int) bool { return ce.Serials[i] < ce.Serials[j] })
	return device.Key{}, ce
}

// PIV returns the PIV application of k, bound to its serial so that a key
// swapped in the reader is refused.
func (s *Service) PIV(k device.Key) (*pivkey.Card, error) {
	if k.Reader == "" {
		return nil, fmt.Errorf("key %d has no smart-card interface: %w", k.Serial, device.ErrAppDisabled)
	}
	if k.EnabledUSB != 0 && k.EnabledUSB&device.AppPIV == 0 {
		return nil, fmt.Errorf("PIV on key %d: %w", k.Serial, device.ErrAppDisabled)
	}
	return pivkey.Open(k.Reader, k.Serial), nil
}

// FIDO returns the FIDO2 application of k. Destructive calls on it take the
// serial to check that the key is still the one meant.
func (s *Service) FIDO(k device.Key) (*fidokey.Device, error) {
	if k.FIDOPath == "" {
		return nil, fmt.Errorf("key %d has no FIDO interface: %w", k.Serial, device.ErrAppDisabled)
	}
	if k.EnabledUSB != 0 && k.EnabledUSB&device.AppFIDO2 == 0 {
		return nil, fmt.Errorf("FIDO2 on key %d: %w", k.Serial, device.ErrAppDisabled)
	}
	return fidokey.Open(k.FIDOPath), nil
}

// FIDOStatus reads the FIDO2 status of the device at path.
func FIDOStatus(ctx context.Context, path string) (*device.FIDOStatus, error) {
	st, err := fidokey.Open(path).Status(ctx)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// Report is everything keydesk can read from a key without a PIN.
type Report struct {
	Key       device.Key
	PIV       *device.PIVStatus  `json:",omitempty"`
	PIVError  string             `json:",omitempty"`
	FIDO      *device.FIDOStatus `json:",omitempty"`
	FIDOError string             `json:",omitempty"`
}

// Inspect reads the key's state from each application it has enabled.
// One application failing does not hide the others. fido reads the FIDO2
// status; FIDOStatus when nil.
func (s *Service) Inspect(ctx context.Context, k device.Key, fido func(ctx context.Context, path string) (*device.FIDOStatus, error)) *Report {
	if fido == nil {
		fido = FIDOStatus
	}
	r := &Report{Key: k}
	if card, err := s.PIV(k); err == nil {
		st, err := card.Status(ctx)
		if err != nil {
			r.PIVError = err.Error()
		} else {
			r.PIV = st
		}
	} else if k.Reader != "" {
		r.PIVError = err.Error()
	}
	if k.FIDOPath != "" && (k.EnabledUSB == 0 || k.EnabledUSB&device.AppFIDO2 != 0) {
		st, err := fido(ctx, k.FIDOPath)
		if err != nil {
			r.FIDOError = err.Error()
		} else {
			r.FIDO = st
		}
	}
	return r
}
