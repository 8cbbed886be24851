package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// prompter reads answers and secrets. On a terminal secrets are read with
// echo off; otherwise one line per answer is read from stdin, so scripts
// can pipe them in (never on a command line, where other users can see
// them).
type prompter struct {
	in   *bufio.Reader
	fd   int
	tty  bool
	errw io.Writer
}

func newPrompter(stdin io.Reader, stderr io.Writer) *prompter {
	p := &prompter{in: bufio.NewReader(stdin), errw: stderr}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.fd, p.tty = int(f.Fd()), true
	}
	return p
}

var errNoInput = errors.New("no answer on stdin")

func (p *prompter) line() (string, error) {
	s, err := p.in.ReadString('\n')
	if err != nil && (err != io.EOF || s == "") {
		return "", errNoInput
	}
	return strings.TrimRight(s, "\r\n"), nil
}

// secret asks for a PIN, PUK or similar. The prompt goes to stderr.
func (p *prompter) secret(label string) (string, error) {
	fmt.Fprintf(p.errw, "%s: ", label)
	if p.tty {
		b, err := term.ReadPassword(p.fd)
		fmt.Fprintln(p.errw)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	s, err := p.line()
	if err != nil {
		return "", fmt.Errorf("%s: %w", label, err)
	}
	fmt.Fprintln(p.errw)
	return s, nil
}

// newSecret asks twice on a terminal and checks both match.
func (p *prompter) newSecret(label string) (string, error) {
	a, err := p.secret(label)
	if err != nil || !p.tty {
		return a, err
	}
	b, err := p.secret(label + " again")
	if err != nil {
		return "", err
	}
	if a != b {
		return "", errors.New("the two entries differ; nothing was changed")
	}
	return a, nil
}

func (p *prompter) yesNo(q string) (bool, error) {
	fmt.Fprint(p.errw, q)
	s, err := p.line()
	if err != nil {
		return false, err
	}
	s = strings.ToLower(strings.TrimSpace(s))
	return s == "y" || s == "yes", nil
}
