package virtual

import "errors"

// ErrNeedsLinux means practice mode's transports are not available on this
// system: the virtual keys reach real PC/SC and FIDO software through a
// private pcscd (pcsc-lite with the vsmartcard vpcd driver) and Linux
// pseudo-terminals standing in for hidraw nodes, none of which Windows or
// macOS have.
var ErrNeedsLinux = errors.New("practice mode needs Linux for now")

// PracticeSupported is nil where practice mode's virtual keys can run and
// ErrNeedsLinux elsewhere, so callers can say so before starting anything.
func PracticeSupported() error { return practiceSupported() }
