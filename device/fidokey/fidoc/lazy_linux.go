package fidoc

//go:generate go run genlazy.go

/*
#include <stdlib.h>

void *kd_lazy_load(void);
const char *kd_lazy_error(void);
*/
import "C"

import "fmt"

// Load opens libfido2 (libfido2.so.1) if it is not open yet. keydesk's
// programs do not link it as a needed library (lazy_linux.c): the first
// libfido2 call opens it, so that commands that never talk FIDO start
// without loading it and OpenSSL. Callers check Load before their first
// call so that a missing libfido2 is reported, not seen as a failed
// operation.
func Load() error {
	if C.kd_lazy_load() == nil {
		return fmt.Errorf("loading libfido2: %s", C.GoString(C.kd_lazy_error()))
	}
	return nil
}
