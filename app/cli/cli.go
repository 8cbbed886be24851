// Package cli is the keydesk command line: it parses arguments, runs the
// app/ use cases and prints their results. Exit codes are stable; see
// docs/cli.md.
package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/keydesk/keydesk/internal/buildinfo"
)

// Exit codes. Scripts depend on them; never renumber.
const (
	ExitOK       = 0
	ExitFailure  = 1 // the operation ran and failed
	ExitUsage    = 2 // the command line was wrong
	ExitNoKey    = 3 // no key, or not the expected key
	ExitAuth     = 4 // wrong or blocked PIN/PUK, or the registry refused the token
	ExitRegistry = 5 // the registry could not be reached
	ExitConflict = 6 // the registry holds a conflicting state
	ExitCheck    = 7 // verify ran and at least one check failed
)

// Run executes one keydesk command line and returns its exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "keydesk: the desktop app is not built into this binary yet; see keydesk help")
		return ExitUsage
	}
	switch args[0] {
	case "--version", "version":
		fmt.Fprintln(stdout, buildinfo.String("keydesk"))
		return ExitOK
	case "help", "-h", "--help":
		usage(stdout)
		return ExitOK
	}
	fmt.Fprintf(stderr, "keydesk: unknown command %q\n", args[0])
	usage(stderr)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: keydesk COMMAND [flags]

commands:
  version     print the version and commit
  help        this text
`)
}
