package fidoc

/*
#include <fido.h>
#include "late.h"
*/
import "C"

import (
	"errors"
	"strings"
	"sync"
)

// ErrMissing means the libfido2 this process loaded lacks the function an
// operation needs (late.h): on Windows, the libfido2 go-libfido2 bundles
// predates authenticatorConfig. A newer fido2.dll beside keydesk.exe
// provides it.
var ErrMissing = errors.New("not supported by the libfido2 present")

// errMissing is what check returns for KD_ERR_MISSING.
var errMissing = ErrMissing

// Missing names the libfido2 functions keydesk uses that the loaded
// libfido2 lacks; none where keydesk is linked against libfido2 1.12 or
// newer (every system but Windows). Getters among them read as unknown
// (Info's MinPINLength 0, RemainingRK -1); operations fail with ErrMissing.
func Missing() []string {
	missingOnce.Do(func() {
		var buf [1024]C.char
		C.kd_missing(&buf[0], C.size_t(len(buf)))
		if s := C.GoString(&buf[0]); s != "" {
			missing = strings.Split(s, ",")
		}
	})
	return missing
}

var (
	missingOnce sync.Once
	missing     []string
)

// rawRX and rawMissing give tests the raw results (test files cannot use
// cgo).
func rawRX() C.int      { return C.FIDO_ERR_RX }
func rawMissing() C.int { return C.KD_ERR_MISSING }
