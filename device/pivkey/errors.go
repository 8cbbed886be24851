// Package pivkey carries out keydesk's PIV operations on a YubiKey over
// piv-go and PC/SC (NIST SP 800-73-4 with the YubiKey extensions).
package pivkey

import (
	"errors"
	"fmt"

	"github.com/go-piv/piv-go/v2/piv"
	"github.com/keydesk/keydesk/device"
)

// mapAuth turns piv-go's AuthErr (SW 63Cx, 6983; SP 800-73-4 §3.2.1) into
// keydesk's typed errors: a wrong PIN or PUK with tries left, or blocked.
func mapAuth(err error, puk bool) error {
	var ae piv.AuthErr
	if !errors.As(err, &ae) {
		return err
	}
	if ae.Retries > 0 {
		return fmt.Errorf("%w", &device.WrongPINError{PUK: puk, Retries: ae.Retries})
	}
	if puk {
		return device.ErrPUKBlocked
	}
	return device.ErrPINBlocked
}
