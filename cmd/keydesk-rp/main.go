// Command keydesk-rp is a small WebAuthn relying party (a login server)
// that decides "is this credential valid for this user right now" from a
// local replica of the keydesk registry's validity view (registry/validity)
// and reports every refused sign-in to the registry as a lockout signal.
// Its HTTP API (begin and finish a login) can be driven by a script; / is a
// page that signs in with the browser's WebAuthn. docs/relying-party.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "keydesk-rp:", err)
		os.Exit(1)
	}
}
