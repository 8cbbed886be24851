package device

import (
	"errors"
	"fmt"
)

// Sentinel errors; use errors.Is.
var (
	ErrPINBlocked   = errors.New("pin blocked")
	ErrPUKBlocked   = errors.New("puk blocked")
	ErrTouchTimeout = errors.New("touch timed out")
	ErrKeyRemoved   = errors.New("key removed")
	ErrAppDisabled  = errors.New("application disabled")
	ErrNotSupported = errors.New("not supported")
)

// WrongPINError is a wrong PIN or PUK with tries left (SP 800-73-4 §3.2.1,
// SW 63Cx; CTAP 2.1 §6.5 PIN_INVALID).
type WrongPINError struct {
	PUK     bool
	Retries int
}

func (e *WrongPINError) Error() string {
	what := "pin"
	if e.PUK {
		what = "puk"
	}
	return fmt.Sprintf("wrong %s, %d tries left", what, e.Retries)
}

// VersionError says a feature needs newer firmware. It matches ErrNotSupported.
type VersionError struct {
	Feature string
	Need    Version
	Have    Version
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("%s needs firmware %s, key has %s", e.Feature, e.Need, e.Have)
}

func (e *VersionError) Is(target error) bool { return target == ErrNotSupported }

// SerialMismatchError is returned when the key present is not the one the
// person chose.
type SerialMismatchError struct{ Want, Got uint32 }

func (e *SerialMismatchError) Error() string {
	return fmt.Sprintf("not the expected key: want serial %d, got %d", e.Want, e.Got)
}

// RequireVersion returns a *VersionError when have is older than need.
func RequireVersion(feature string, have, need Version) error {
	if have.AtLeast(need) {
		return nil
	}
	return &VersionError{Feature: feature, Need: need, Have: have}
}

// Hint returns a plain-language next step for err, or "" when there is none.
// Hints are kept apart from error text so a UI chooses whether to show them.
func Hint(err error) string {
	var wp *WrongPINError
	var ve *VersionError
	var sm *SerialMismatchError
	switch {
	case errors.As(err, &wp):
		if wp.PUK {
			return fmt.Sprintf("The PUK was wrong. %d more wrong tries will block it.", wp.Retries)
		}
		return fmt.Sprintf("The PIN was wrong. %d more wrong tries will block it.", wp.Retries)
	case errors.Is(err, ErrPINBlocked):
		return "The PIN is blocked. Unblock it with the PUK, or ask the helpdesk."
	case errors.Is(err, ErrPUKBlocked):
		return "The PUK is blocked. The key's PIV application must be reset; ask the helpdesk."
	case errors.Is(err, ErrTouchTimeout):
		return "The key waited for a touch. Touch the gold contact when it blinks, then try again."
	case errors.Is(err, ErrKeyRemoved):
		return "The key was removed. Insert it again and retry; nothing was half-changed."
	case errors.Is(err, ErrAppDisabled):
		return "This application is switched off on the key. Enable it under Interfaces."
	case errors.As(err, &ve):
		return fmt.Sprintf("This needs a key with firmware %s or newer.", ve.Need)
	case errors.As(err, &sm):
		return fmt.Sprintf("This is not the key you chose. Insert the key with serial %d.", sm.Want)
	case errors.Is(err, ErrNotSupported):
		return "This key does not support that."
	}
	return ""
}
