package client

import (
	"errors"
	"net"
	"os"
	"strings"
)

// Cause is the innermost reason a request to the registry failed, in a
// few words ("connection refused", "no answer in time"), not the whole
// chain of Go errors with the request URL in it: for messages that say
// the registry could not be reached.
func Cause(err error) string {
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
