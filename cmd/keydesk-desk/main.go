// Command keydesk-desk is keydesk's desktop app. The keydesk command starts
// it when run with no arguments; it is a program of its own so that the
// command line never loads or initialises the GUI toolkit (docs/cli.md,
// "Start-up"). Given arguments, it runs them as the keydesk command line
// does.
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
