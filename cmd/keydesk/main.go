// Command keydesk is the YubiKey administration tool: with a command the
// CLI, with no arguments the desktop app. The desktop app is a second
// program, keydesk-desk, installed beside this one and started in its
// place, so that a command pays neither for loading the GUI toolkit nor
// for its package initialisers (docs/cli.md, "Start-up"). See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/keydesk/keydesk/app/cli"
)

// deskName is the desktop app's program, found beside this one.
const deskName = "keydesk-desk"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cli.GUI = func(context.Context) error {
		stop()
		return startDesk()
	}
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// deskPath is keydesk-desk's path: in the directory of this executable
// (symbolic links resolved, so a link to keydesk elsewhere still finds it).
func deskPath() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the keydesk executable: %w", err)
	}
	if r, err := filepath.EvalSymlinks(self); err == nil {
		self = r
	}
	p := filepath.Join(filepath.Dir(self), deskName+exeSuffix)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("the desktop app %s is not installed beside keydesk: %w", p, err)
	}
	return p, nil
}
