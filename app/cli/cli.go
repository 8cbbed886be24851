// Package cli is the keydesk command line: it parses arguments, runs the
// app/ use cases and prints their results. Exit codes are stable; see
// docs/cli.md. Secrets are read from the terminal (or stdin when it is not
// one), never from arguments or the environment.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/keydesk/keydesk/app/cli/keyview"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/discover"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/registry/client"
)

// Exit codes. Scripts depend on them; never renumber.
const (
	ExitOK       = 0
	ExitFailure  = 1 // the operation ran and failed
	ExitUsage    = 2 // the command line was wrong
	ExitNoKey    = 3 // no key, several keys and no serial, or not the expected key
	ExitAuth     = 4 // wrong or blocked PIN/PUK, or the registry refused the token
	ExitRegistry = 5 // the registry could not be reached
	ExitConflict = 6 // the registry holds a conflicting state
	ExitCheck    = 7 // verify ran and at least one check failed
	ExitCanceled = 8 // the person said no, or interrupted
)

// env is one invocation's surroundings.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	prompt *prompter

	// common flags
	json     bool
	practice bool
	simDir   string
	serial   uint
	yes      bool
	wait     waitFlag // --wait, on commands that wait for a key

	registryURL string // login --registry

	svc *keys.Service
}

// usageError is a wrong command line.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// errCanceled: the person declined a confirmation.
var errCanceled = errors.New("canceled; nothing was changed")

// report prints err with its hint and maps it to an exit code.
func (e *env) report(err error) int {
	if err == nil {
		return ExitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(e.stderr, "keydesk:", err)
		return ExitUsage
	}
	err = plain(err)
	fmt.Fprintln(e.stderr, "keydesk:", err)
	// The use case's own hint knows more than the device error inside it
	// (a key removed mid-enrolment needs a reset, not just a retry).
	var h hinter
	var ce *keys.ChooseError
	switch {
	case errors.As(err, &h) && h.Hint() != "":
		fmt.Fprintln(e.stderr, h.Hint())
	case device.Hint(err) != "":
		fmt.Fprintln(e.stderr, device.Hint(err))
	case errors.Is(err, keys.ErrNoKey) && !errors.As(err, &ce):
		fmt.Fprintln(e.stderr, "Insert the key, or check that keydesk keys lists it, then run the command again.")
	case errors.Is(err, settings.ErrNoRecipients):
		fmt.Fprintln(e.stderr, "The helpdesk makes its identity with keydesk recover identity new, which prints the recipient; then run keydesk settings set helpdesk_recipients=age1… (to practise on virtual keys instead: KEYDESK_PRACTICE=1).")
	}
	return exitCode(err)
}

// plain rewrites an error that would otherwise reach the terminal as a Go
// library's text: a registry that did not answer, with no use-case error
// around it to say more, becomes "the registry at URL could not be reached
// (cause)" with its next step.
//
// Likewise the registry refusing the desk's token (401, 403) becomes a
// sentence saying so, with the registry's reason and how to get a token
// that may do it.
func plain(err error) error {
	var h hinter
	if errors.As(err, &h) {
		return err
	}
	var ae *client.APIError
	switch {
	case errors.Is(err, errUnreachable):
		return unreachableError{url: requestBase(err), err: err}
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		return reworded{msg: "the registry refused the desk's token", err: err,
			hint: "Store a valid token with keydesk login (an admin makes one with keydesk-registry token create)."}
	case errors.As(err, &ae) && ae.Status == http.StatusForbidden && ae.Code == "user_not_active":
		return reworded{msg: "the registry refused the desk's token: the person it belongs to is suspended or deleted", err: err,
			hint: "A keydesk admin can make the person active again; until then their token is refused."}
	case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
		return reworded{msg: fmt.Sprintf("the desk's token may not do this (the registry says: %s)", ae.Message), err: err,
			hint: "Ask a keydesk admin for a token with the role this needs (admin; helpdesk for recoveries), then store it with keydesk login."}
	}
	return err
}

func exitCode(err error) int {
	var wp *device.WrongPINError
	var sm *device.SerialMismatchError
	var ce *keys.ChooseError
	switch {
	case errors.Is(err, errChecksFailed):
		return ExitCheck
	case errors.Is(err, errCanceled), errors.Is(err, context.Canceled):
		return ExitCanceled
	case errors.Is(err, keys.ErrNoKey), errors.As(err, &sm), errors.As(err, &ce), errors.Is(err, device.ErrKeyRemoved):
		return ExitNoKey
	case errors.As(err, &wp), errors.Is(err, device.ErrPINBlocked), errors.Is(err, device.ErrPUKBlocked), errors.Is(err, pivkey.ErrWrongManagementKey):
		return ExitAuth
	}
	if code, ok := registryExit(err); ok {
		return code
	}
	return ExitFailure
}

// service opens the key service once per invocation.
func (e *env) service() (*keys.Service, error) {
	if e.svc != nil {
		return e.svc, nil
	}
	svc, err := keys.New(keys.Config{Practice: e.practice, SimDir: e.simDir})
	if err != nil {
		return nil, err
	}
	e.svc = svc
	return svc, nil
}

// key finds the key the invocation is about.
func (e *env) key() (device.Key, error) { return e.keyVia(0) }

// keyVia finds the key through one kind of interface only, for commands
// that use no other.
func (e *env) keyVia(only discover.Interface) (device.Key, error) {
	svc, err := e.service()
	if err != nil {
		return device.Key{}, err
	}
	return svc.FindVia(e.ctx, uint32(e.serial), only)
}

// confirm asks before a destructive step. It needs --serial naming the key,
// so a person never wipes a key they did not name, and then a typed yes
// (or --yes).
func (e *env) confirm(k device.Key, what string) error {
	if e.serial == 0 || uint32(e.serial) != k.Serial {
		return usagef("%s is destructive: name the key with --serial %d to confirm it is the one you mean", what, k.Serial)
	}
	if e.yes {
		return nil
	}
	ok, err := e.prompt.yesNo(fmt.Sprintf("%s on key %d (%s)? This cannot be undone. [y/N] ", what, k.Serial, k.Model))
	if err != nil {
		return err
	}
	if !ok {
		return errCanceled
	}
	return nil
}

func (e *env) printJSON(v any) error { return keyview.JSON(e.stdout, v) }

func parseSlot(s string) (byte, error) {
	n, err := strconv.ParseUint(s, 16, 8)
	if err != nil {
		return 0, usagef("slot %q: give it in hex, like 9a", s)
	}
	return byte(n), nil
}
