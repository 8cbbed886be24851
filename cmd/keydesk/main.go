// Command keydesk is the YubiKey administration tool: with no arguments the
// desktop app, with a command the CLI. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/keydesk/keydesk/app/cli"
	"github.com/keydesk/keydesk/app/ui"
	_ "github.com/keydesk/keydesk/internal/startlog" // before Fyne initialises: no locale error at start
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cli.GUI = func(ctx context.Context) error { return ui.Run(ctx, ui.OptionsFromEnv()) }
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
