package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/internal/buildinfo"
)

// GUI runs the desktop app until its window closes. keydesk-desk sets it
// to app/ui's Run (the CLI itself never imports the GUI toolkit); keydesk
// starts keydesk-desk itself when run with no arguments, so keydesk-cli
// leaves GUI nil, and run bare it says how to use the command line.
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
	if args[0] == "--version" || args[0] == "-version" {
		args = append([]string{"version"}, args[1:]...)
	}
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	e.prompt = newPrompter(stdin, stderr)
	only := args[0]
	if _, ok := commandNames[only]; !ok {
		only = "" // help, completion, a flag, or a typo: the whole tree
	}
	root := newRoot(e, only)
	root.SetArgs(args)
	complete := args[0] == cobra.ShellCompRequestCmd || args[0] == cobra.ShellCompNoDescRequestCmd
	if _, _, err := root.Find(args); err != nil && !strings.HasPrefix(args[0], "-") && !complete {
		fmt.Fprintf(stderr, "keydesk: unknown command %q\n\n", args[0])
		root.SetOut(stderr)
		root.Usage()
		return ExitUsage
	}
	return e.report(root.ExecuteContext(ctx))
}

// newRoot builds the keydesk command tree, bound to e. The same tree
// gives the help text, the shell completions, the man pages and
// docs/cli.md's command reference (app/cli/clidoc).
//
// With only naming a top-level command, the tree holds just that one: a
// command line builds only the command it runs (it starts faster; see
// docs/cli.md, "Start-up").
func newRoot(e *env, only string) *cobra.Command {
	root := &cobra.Command{
		Use:   "keydesk",
		Short: "enrol, verify and recover YubiKeys",
		Long: "keydesk administers YubiKeys over FIDO2 and PIV and keeps every registration in step with the " +
			"organisation's key registry (keydesk-registry). With no arguments it opens the desktop app (keydesk-desk); " +
			"with a command it is the command line.\n\n" +
			"Secrets (PINs, PUKs, management keys, registry tokens) are never taken from the command line: keydesk asks " +
			"for them on the terminal with echo off, or reads one line each from standard input when it is not a terminal.",
		SilenceUsage:      true,
		SilenceErrors:     true,
		DisableAutoGenTag: true,
	}
	if e.stdout != nil {
		root.SetOut(e.stdout)
		root.SetErr(e.stderr)
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%v (keydesk %s --help lists its flags)", err, strings.TrimPrefix(c.CommandPath(), "keydesk "))
	})
	rootFlags(e, root)
	root.AddGroup(&cobra.Group{ID: "keys", Title: "Keys:"}, &cobra.Group{ID: "desk", Title: "Registry and desk:"})
	for _, c := range commands {
		if only == "" || only == c.name {
			cmd := c.build(e)
			cmd.GroupID = c.group
			root.AddCommand(cmd)
		}
	}
	root.SetUsageTemplate(root.UsageTemplate() + exitCodesHelp)
	if only == "" {
		root.InitDefaultHelpCmd()
		root.InitDefaultCompletionCmd()
	}
	return root
}

// ExitCodes are the exit statuses and what each means, for help, man
// pages and docs/cli.md; the constants in cli.go are the numbers.
var ExitCodes = []struct {
	Code    int
	Meaning string
}{
	{ExitOK, "success"},
	{ExitFailure, "the operation ran and failed"},
	{ExitUsage, "the command line was wrong (the message says how)"},
	{ExitNoKey, "no key, several keys and no --serial, or not the expected key; a key removed before anything was written; a key not inserted within the --wait limit"},
	{ExitAuth, "wrong or blocked PIN or PUK, or the registry refused the token"},
	{ExitRegistry, "the registry could not be reached"},
	{ExitConflict, "the registry holds a conflicting state"},
	{ExitCheck, "a check ran and failed: verify, backup coverage, inventory --problem matched someone, activity verify"},
	{ExitCanceled, "the person said no, or interrupted"},
}

// exitCodesHelp ends every command's help.
const exitCodesHelp = `
Exit codes: 0 ok, 1 failed, 2 wrong command line, 3 no key (or not the one
named), 4 wrong or blocked PIN/PUK or token refused, 5 registry unreachable,
6 registry conflict, 7 a check failed, 8 canceled (docs/cli.md).
`

// Tree is the keydesk command tree with nothing bound to run: for the
// generated documentation (man pages, docs/cli.md) and completion.
func Tree() *cobra.Command {
	return newRoot(&env{ctx: context.Background()}, "")
}

// command is a command whose flags are declared on a flag.FlagSet by
// flags (nil for none) and which run parses: one function per command.
func command(e *env, use, short string, flags func(*env, *flag.FlagSet), run func(*env, *flag.FlagSet, []string) error) *cobra.Command {
	name, _, _ := strings.Cut(use, " ")
	fs := flag.NewFlagSet("keydesk "+name, flag.ContinueOnError)
	if flags != nil {
		flags(e, fs)
	}
	c := &cobra.Command{Use: use, Short: short,
		RunE: func(_ *cobra.Command, args []string) error { return run(e, fs, args) }}
	c.Flags().AddGoFlagSet(fs)
	return c
}

// group is a command that only names its subcommands: run bare or with an
// unknown subcommand, it prints its usage and fails as a usage error.
func group(e *env, use, short, needs string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short}
	c.RunE = func(c *cobra.Command, args []string) error {
		fmt.Fprint(e.stderr, c.UsageString())
		if len(args) == 0 {
			return usagef("%s", needs)
		}
		return usagef("unknown %s subcommand %q", use, args[0])
	}
	c.AddCommand(subs...)
	return c
}

// commands are keydesk's top-level commands, in the groups of its help.
var commands = []struct {
	name, group string
	build       func(*env) *cobra.Command
}{
	{"keys", "keys", func(e *env) *cobra.Command {
		return command(e, "keys", "list attached keys", nil, runKeys)
	}},
	{"info", "keys", func(e *env) *cobra.Command {
		return command(e, "info", "everything a key says about itself (no PIN needed)", nil, runInfo)
	}},
	{"piv", "keys", pivCmd},
	{"fido", "keys", fidoCmd},
	{"interfaces", "keys", func(e *env) *cobra.Command {
		return command(e, "interfaces", "show or change which applications are enabled over USB and NFC", ifaceFlags, runInterfaces)
	}},
	{"verify", "keys", func(e *env) *cobra.Command {
		return command(e, "verify", "check a key works and the registry agrees, before a migration (exit 7 when a check fails)", verifyFlags, runVerify)
	}},
	{"recover", "keys", recoverCmd},
	{"enrol", "keys", func(e *env) *cobra.Command {
		return command(e, "enrol", "enrol a user's keys (--user ID), a CSV roster (--batch FILE), or finish one (--resume)", enrolFlagSet, runEnrol)
	}},
	{"sim", "keys", simCmd},
	{"sync", "desk", func(e *env) *cobra.Command {
		return command(e, "sync", "send the registry writes queued while it was unreachable", nil, runSync)
	}},
	{"inventory", "desk", func(e *env) *cobra.Command {
		return command(e, "inventory", "the registry's users and keys with coverage and problems, filtered; --csv FILE exports (exit 7 when --problem matches someone)", inventoryFlags, runInventory)
	}},
	{"activity", "desk", func(e *env) *cobra.Command {
		return command(e, "activity [verify]", "the registry's audit log, newest first, filtered; activity verify checks its chain (admin)", activityFlags, runActivity)
	}},
	{"whoami", "desk", func(e *env) *cobra.Command {
		return command(e, "whoami", "the desk's registry and whose token it holds there (name, role, user)", nil, runWhoami)
	}},
	{"backup", "desk", backupCmd},
	{"restore", "desk", func(e *env) *cobra.Command {
		return command(e, "restore FILE", "restore a backup bundle into the desk's empty registry", nil, runRestore)
	}},
	{"settings", "desk", settingsCmd},
	{"idp", "desk", idpCmd},
	{"migrate", "desk", migrateCmd},
	{"login", "desk", func(e *env) *cobra.Command {
		return command(e, "login", "store a registry token (read from the terminal) in the system keyring", loginFlags, runLogin)
	}},
	{"version", "desk", func(e *env) *cobra.Command {
		return &cobra.Command{Use: "version", Short: "print the version and commit", Args: noArgs("version"),
			RunE: func(*cobra.Command, []string) error {
				fmt.Fprintln(e.stdout, buildinfo.String("keydesk"))
				return nil
			}}
	}},
}

// commandNames are the top-level commands' names.
var commandNames = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range commands {
		m[c.name] = true
	}
	return m
}()

// rootFlags are the flags every command takes.
func rootFlags(e *env, root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.BoolVar(&e.json, "json", false, "print JSON for scripts")
	pf.BoolVar(&e.practice, "practice", os.Getenv("KEYDESK_PRACTICE") == "1", "use keydesk-sim's virtual keys (also KEYDESK_PRACTICE=1)")
	pf.StringVar(&e.simDir, "sim-dir", sim.DefaultStateDir(), "keydesk-sim's state directory, in practice mode")
	pf.Lookup("sim-dir").DefValue = "$XDG_STATE_HOME/keydesk/sim" // help and docs read the same everywhere
	pf.Lookup("practice").DefValue = "false"
	pf.UintVar(&e.serial, "serial", 0, "the key to act on, by serial (needed when several are attached)")
	pf.BoolVar(&e.yes, "yes", false, "answer yes to confirmations (destructive steps still need --serial)")
	root.RegisterFlagCompletionFunc("serial", e.completeSerials)
}

// nargs accepts exactly n arguments, else the usage error msg (or
// "CMD takes N argument(s)").
func nargs(n int, msg string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		if msg == "" {
			return usagef("%s takes %d argument(s)", strings.TrimPrefix(c.CommandPath(), "keydesk "), n)
		}
		return usagef("%s", msg)
	}
}

// noArgs refuses arguments: "NAME takes no arguments".
func noArgs(name string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("%s takes no arguments", name)
		}
		return nil
	}
}

// completeSerials completes --serial with the attached keys' serials and
// models (the practice keys in practice mode).
func (e *env) completeSerials(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	svc, err := e.service()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	list, err := svc.List(e.ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, k := range list {
		if k.SerialUnknown {
			continue
		}
		out = append(out, fmt.Sprintf("%d\t%s", k.Serial, k.Model))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// addFlags adds to c the flags named, as declare declares them on a
// flag.FlagSet: a command group declares its flags once and each
// subcommand takes only its own.
func addFlags(c *cobra.Command, declare func(*flag.FlagSet), names ...string) {
	fs := flag.NewFlagSet(c.Name(), flag.ContinueOnError)
	declare(fs)
	for _, n := range names {
		c.Flags().AddGoFlag(fs.Lookup(n))
	}
}
