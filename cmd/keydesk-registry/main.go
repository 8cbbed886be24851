// Command keydesk-registry is the key registry server. See docs/registry.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/keydesk/keydesk/registry/command"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := command.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(command.Exit(err, os.Stderr))
}
