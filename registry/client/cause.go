package client

import (
	"errors"
	"net"
	"os"
	"strings"

	"github.com/keydesk/keydesk/registry"
)

// Cause is the innermost reason a request to the registry failed, in a
// few words ("connection refused", "no answer in time"), not the whole
// chain of Go errors with the request URL in it: for messages that say
// the registry could not be reached.
func Cause(err error) string {
	if msg, ok := Storage(err); ok {
		return msg
	}
	var se *os.SyscallError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return se.Err.Error()
	case errors.As(err, &ne) && ne.Timeout():
		return "no answer in time"
	}
	for next := errors.Unwrap(err); next != nil; next = errors.Unwrap(err) {
		err = next
	}
	return strings.TrimPrefix(err.Error(), ErrUnreachable.Error()+": ")
}

// Storage says in a sentence why the registry wrote nothing when it
// answered that its storage takes no writes (an *UnavailableError: disk
// full, read-only, failing), and what to do; ok is false for any other
// error. The registry was reached: a message built on it must not say it
// "could not be reached".
func Storage(err error) (msg string, ok bool) {
	var ue *UnavailableError
	if !errors.As(err, &ue) {
		return "", false
	}
	switch {
	case errors.Is(ue, registry.ErrStorageFull):
		return "the registry's disk is full — nothing was written; ask its operator to free space, then retry", true
	case errors.Is(ue, registry.ErrReadOnly):
		return "the registry's storage is read-only — nothing was written; ask its operator to make it writable, then retry", true
	}
	return "the registry's storage failed — nothing was written; ask its operator to check its disk, then retry", true
}
