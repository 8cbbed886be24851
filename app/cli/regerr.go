package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/keydesk/keydesk/registry/client"
)

var errUnreachable = client.ErrUnreachable

// unreachableError is a registry that did not answer, said plainly; it
// unwraps to client.ErrUnreachable (exit code 5).
type unreachableError struct {
	url string
	err error
}

func (u unreachableError) Error() string {
	return fmt.Sprintf("the registry at %s could not be reached (%s)", u.url, cause(u.err))
}

func (u unreachableError) Unwrap() error { return u.err }

func (u unreachableError) Hint() string {
	return "Check that the registry is running and that this desk can reach it (keydesk settings show names it), then run the command again."
}

// cause is the innermost reason a request failed, in a few words.
func cause(err error) string {
	var se *os.SyscallError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return se.Err.Error()
	case errors.As(err, &ne) && ne.Timeout():
		return "no answer in time"
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		err = next
	}
	return strings.TrimPrefix(err.Error(), client.ErrUnreachable.Error()+": ")
}
