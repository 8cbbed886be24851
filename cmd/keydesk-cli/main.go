// Command keydesk-cli is keydesk's whole command line. People and scripts
// run keydesk, which answers `keydesk version` and the status commands
// itself and starts this program, installed beside it, for every other
// command line (docs/cli.md, "Start-up"); its help, messages and exit
// codes are keydesk's.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/keydesk/keydesk/app/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
