// Package cli is the keydesk command line: it parses arguments, runs the
// app/ use cases and prints their results. Exit codes are stable; see
// docs/cli.md. Secrets are read from the terminal (or stdin when it is not
// one), never from arguments or the environment.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/discover"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/internal/buildinfo"
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

type command struct {
	name, args, help string
	run              func(e *env, fs *flag.FlagSet, args []string) error
	flags            func(e *env, fs *flag.FlagSet)
	// sub: the first argument names a subcommand that parses the rest,
	// flags included.
	sub bool
}

var commands []command

func init() {
	commands = []command{
		{name: "keys", help: "list attached keys", run: runKeys},
		{name: "info", help: "everything a key says about itself (no PIN needed)", run: runInfo},
		{name: "piv", args: "SUBCOMMAND", help: "PIV: status, change-pin, change-puk, unblock-pin, set-retries, rotate-management-key, generate, attest, csr, self-sign, objects, reset", run: runPIV, sub: true},
		{name: "fido", args: "SUBCOMMAND", help: "FIDO2: status, set-pin, change-pin, set-min-pin-length, force-pin-change, credentials, delete-credential, reset", run: runFIDO, sub: true},
		{name: "interfaces", help: "show or change which applications are enabled over USB and NFC", run: runInterfaces, flags: ifaceFlags},
		{name: "verify", help: "check a key works and the registry agrees, before a migration (exit 7 when a check fails)", run: runVerify, flags: verifyFlags},
		{name: "recover", args: "diagnose|piv-pin|fido2-reset|lost|identity", help: "helpdesk: diagnose a key, unblock its PIV PIN, reset FIDO2, handle a lost key", run: runRecover, sub: true},
		{name: "enrol", help: "enrol a user's keys (--user ID), a CSV roster (--batch FILE), or finish one (--resume)", run: runEnrol, flags: enrolFlagSet},
		{name: "sync", help: "send the registry writes queued while it was unreachable", run: runSync},
		{name: "inventory", help: "the registry's users and keys with coverage and problems, filtered; --csv FILE exports (exit 7 when --problem matches someone)", run: runInventory, flags: inventoryFlags},
		{name: "activity", args: "[verify]", help: "the registry's audit log, newest first, filtered; activity verify checks its chain (admin)", run: runActivity, flags: activityFlags},
		{name: "whoami", help: "the desk's registry and whose token it holds there (name, role, user)", run: runWhoami},
		{name: "backup", args: "coverage|export", help: "check every user has a backup key; export registrations as an age-encrypted bundle", run: runBackup, sub: true},
		{name: "restore", args: "FILE", help: "restore a backup bundle into the desk's empty registry", run: runRestore},
		{name: "settings", args: "show|set NAME=VALUE...|path", help: "show or change this desk's settings (registry URL, policies, practice mode)", run: runSettings, sub: true},
		{name: "migrate", args: "list|plan|show|readiness|dry-run|advance|halt|rollback", help: "key migrations: plan, readiness, dry run, advance, halt, roll back (docs/migrations.md)", run: runMigrate, sub: true},
		{name: "login", help: "store a registry token (read from the terminal) in the system keyring", run: runLogin, flags: loginFlags},
		{name: "sim", args: "run|list|insert|remove|touch|power-cycle", help: "practice-mode virtual keys (keydesk-sim)", run: runSim, sub: true},
		{name: "version", help: "print the version and commit", run: func(e *env, _ *flag.FlagSet, _ []string) error {
			fmt.Fprintln(e.stdout, buildinfo.String("keydesk"))
			return nil
		}},
	}
}

// usageError is a wrong command line.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// errCanceled: the person declined a confirmation.
var errCanceled = errors.New("canceled; nothing was changed")

// GUI runs the desktop app until its window closes. cmd/keydesk sets it
// to app/ui's Run (the CLI itself never imports the GUI toolkit); when it
// is nil, keydesk with no arguments says how to use the command line.
var GUI func(ctx context.Context) error

// Run executes one keydesk command line and returns its exit code. With no
// arguments it opens the desktop app.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		if GUI == nil {
			fmt.Fprintln(stderr, "keydesk: the desktop app is not built into this binary; see keydesk help")
			return ExitUsage
		}
		if err := GUI(ctx); err != nil {
			fmt.Fprintln(stderr, "keydesk:", err)
			return ExitFailure
		}
		return ExitOK
	}
	switch args[0] {
	case "--version", "-version":
		args[0] = "version"
	case "help", "-h", "--help":
		usage(stdout)
		return ExitOK
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == args[0] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "keydesk: unknown command %q\n\n", args[0])
		usage(stderr)
		return ExitUsage
	}
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	e.prompt = newPrompter(stdin, stderr)
	fs := flag.NewFlagSet("keydesk "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&e.json, "json", false, "print JSON for scripts")
	fs.BoolVar(&e.practice, "practice", os.Getenv("KEYDESK_PRACTICE") == "1", "use keydesk-sim's virtual keys (also KEYDESK_PRACTICE=1)")
	fs.StringVar(&e.simDir, "sim-dir", sim.DefaultStateDir(), "keydesk-sim's state directory, in practice mode")
	fs.UintVar(&e.serial, "serial", 0, "the key to act on, by serial (needed when several are attached)")
	fs.BoolVar(&e.yes, "yes", false, "answer yes to confirmations (destructive steps still need --serial)")
	if cmd.flags != nil {
		cmd.flags(e, fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: keydesk %s [flags] %s\n\n%s\n\nflags:\n", cmd.name, cmd.args, cmd.help)
		fs.PrintDefaults()
	}
	var rest []string
	var err error
	if cmd.sub {
		err = fs.Parse(args[1:])
		rest = fs.Args()
	} else {
		rest, err = parseInterspersed(fs, args[1:])
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		return ExitUsage
	}
	err = cmd.run(e, fs, rest)
	return e.report(err)
}

// parseInterspersed lets flags follow positional arguments, as people type
// them ("keydesk piv generate 9a --serial 123").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

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

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func parseSlot(s string) (byte, error) {
	n, err := strconv.ParseUint(s, 16, 8)
	if err != nil {
		return 0, usagef("slot %q: give it in hex, like 9a", s)
	}
	return byte(n), nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, "usage: keydesk COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.help)
	}
	fmt.Fprint(w, "\nRun 'keydesk COMMAND -h' for a command's flags. Exit codes: docs/cli.md.\n")
}
