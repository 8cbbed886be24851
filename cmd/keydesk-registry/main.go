// Command keydesk-registry is the key registry server. See docs/registry.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/keydesk/keydesk/registry/command"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := command.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "keydesk-registry:", err)
		if errors.Is(err, command.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
