package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"

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
	if msg, ok := client.Storage(u.err); ok {
		// The registry answered: its storage took nothing.
		return msg
	}
	if u.url == "" {
		return fmt.Sprintf("the registry could not be reached (%s)", client.Cause(u.err))
	}
	return fmt.Sprintf("the registry at %s could not be reached (%s)", u.url, client.Cause(u.err))
}

// requestBase is the scheme and host of the request that failed with err
// ("" when err names none).
func requestBase(err error) string {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return ""
	}
	u, perr := url.Parse(ue.URL)
	if perr != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// readArg reads a file named on the command line; what names it for the
// message ("roster", "plan", "bundle").
func readArg(what, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, hinted{fmt.Errorf("the %s %s could not be read: %w", what, path, err), "Check the file name, and that it is readable by you."}
	}
	return b, nil
}

func (u unreachableError) Unwrap() error { return u.err }

func (u unreachableError) Hint() string {
	if _, ok := client.Storage(u.err); ok {
		return "Queued work stays queued on this desk: run the command again (or keydesk sync) once the registry's operator has fixed its storage."
	}
	return "Check that the registry is running and that this desk can reach it (keydesk settings show names it), then run the command again."
}
