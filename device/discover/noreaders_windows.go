package discover

import (
	"errors"

	"github.com/ebfe/scard"
)

// noReaders reports whether a failed SCardEstablishContext means only that
// this desk has no smart-card reader, so the scan goes on with FIDO devices
// alone. On Windows 8 and later the Smart Card service runs only while a
// reader is attached and answers SCARD_E_NO_SERVICE otherwise
// (learn.microsoft.com, "Smart Card service"); Wine's stub answers
// SCARD_F_INTERNAL_ERROR to every call.
func noReaders(err error) bool {
	return errors.Is(err, scard.ErrNoService) || errors.Is(err, scard.ErrInternalError)
}
