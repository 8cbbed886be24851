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

	// ErrPINAuthBlocked: three wrong FIDO2 PINs in a row; the key refuses
	// PINs until it is powered again (CTAP 2.1 §6.5.2 PIN_AUTH_BLOCKED).
	ErrPINAuthBlocked = errors.New("pin auth blocked until the key is reinserted")
	// ErrPINNotSet: the operation needs a FIDO2 PIN and none is set.
	ErrPINNotSet = errors.New("pin not set")
	// ErrPINPolicy: the key rejected a new PIN as too short, or requires
	// the PIN to be changed before use (CTAP 2.1 §6.5.5.5, §6.11.4).
	ErrPINPolicy = errors.New("pin does not meet the key's policy")
	// ErrResetWindow: a FIDO reset came later than the key allows after
	// power-up (10 s; 5 s before firmware 5.5.4), CTAP 2.1 §6.6.
	ErrResetWindow = errors.New("reset outside the power-up window")
	// ErrNoCredentials: the key holds no credential the request names.
	ErrNoCredentials = errors.New("no matching credential on the key")
	// ErrNoAnswer: the key is attached but did not answer a request in
	// time, or answered out of turn (a CTAPHID reply for another request).
	ErrNoAnswer = errors.New("the key did not answer")
	// ErrNeedsElevation: Windows 10 1903 and later let only an elevated
	// process open a FIDO key's HID device; the others reach it through
	// webauthn.dll, which makes credentials and assertions but cannot manage
	// the PIN, reset, credentials or settings (CTAP 2.1 §6.5–§6.11).
	ErrNeedsElevation = errors.New("windows lets only a program run as administrator manage fido2 keys")
	// ErrNoCardService: the system's PC/SC resource manager (pcscd, the
	// Windows Smart Card service) is not running or does not answer
	// (SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED; PC/SC part 5).
	ErrNoCardService = errors.New("the smart card service does not answer")
)

// ErrFIDO2PINBlocked is a blocked FIDO2 PIN (CTAP 2.1 §6.5.2 PIN_BLOCKED):
// only a FIDO2 reset, which erases every credential, recovers the key. It
// matches ErrPINBlocked.
var ErrFIDO2PINBlocked error = fido2PINBlocked{}

type fido2PINBlocked struct{}

func (fido2PINBlocked) Error() string        { return "fido2 pin blocked" }
func (fido2PINBlocked) Is(target error) bool { return target == ErrPINBlocked }

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
	case errors.Is(err, ErrNeedsElevation):
		return "Run keydesk as administrator (right-click it, Run as administrator) to change a FIDO2 PIN, reset, or manage passkeys and settings."
	case errors.Is(err, ErrFIDO2PINBlocked):
		return "The FIDO2 PIN is blocked. Only a FIDO2 reset, which erases every passkey on the key, makes it usable again."
	case errors.Is(err, ErrPINBlocked):
		return "The PIN is blocked. Unblock it with the PUK, or ask the helpdesk."
	case errors.Is(err, ErrPUKBlocked):
		return "The PUK is blocked. The key's PIV application must be reset; ask the helpdesk."
	case errors.Is(err, ErrPINAuthBlocked):
		return "Three wrong PINs in a row. Remove the key and insert it again, then retry with the right PIN."
	case errors.Is(err, ErrPINNotSet):
		return "This needs a FIDO2 PIN. Set one first."
	case errors.Is(err, ErrPINPolicy):
		return "The key rejected the PIN: it is shorter than the key's minimum, or the key requires a new PIN first."
	case errors.Is(err, ErrResetWindow):
		return "The key allows a reset only in the first seconds after it is plugged in. Remove it, insert it again and confirm the reset quickly."
	case errors.Is(err, ErrNoCredentials):
		return "This key holds no matching credential. It may be a different key."
	case errors.Is(err, ErrTouchTimeout):
		return "The key waited for a touch. Touch the gold contact when it blinks, then try again."
	case errors.Is(err, ErrKeyRemoved):
		return "The key was removed. Insert it again and retry; nothing was half-changed."
	case errors.Is(err, ErrNoAnswer):
		return "The key stopped answering. Remove it, insert it again and retry."
	case errors.Is(err, ErrAppDisabled):
		return "This application is switched off on the key. Enable it under Interfaces."
	case errors.As(err, &ve):
		return fmt.Sprintf("This needs a key with firmware %s or newer.", ve.Need)
	case errors.As(err, &sm):
		return fmt.Sprintf("This is not the key you chose. Insert the key with serial %d.", sm.Want)
	case errors.Is(err, ErrNotSupported):
		return "This key does not support that."
	case errors.Is(err, ErrNoCardService):
		return "Start the smart card service (on Linux: sudo systemctl start pcscd.socket; on Windows: the Smart Card service under Services), then try again."
	}
	return ""
}

// ErrLibraryLacks: the FIDO library on this computer (libfido2) is older
// than the operation needs, whatever the key supports; on Windows a newer
// fido2.dll beside keydesk.exe provides it. errors.Is with ErrNotSupported
// holds too.
var ErrLibraryLacks error = libraryLacks{}

type libraryLacks struct{}

func (libraryLacks) Error() string        { return "not supported by the libfido2 present" }
func (libraryLacks) Is(target error) bool { return target == ErrNotSupported }
