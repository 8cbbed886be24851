// Command keydesk is the YubiKey administration tool: with a command the
// CLI, with no arguments the desktop app. It is a small program that
// starts like a C tool: `keydesk version`, `keydesk piv status` and
// `keydesk fido status` it answers itself (fast.go), and for every other
// command line it starts keydesk-cli, the whole command line, and with no
// arguments keydesk-desk, the desktop app; both are installed beside it
// (docs/cli.md, "Start-up"). See README.md.
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

const (
	// deskName is the desktop app's program, found beside this one.
	deskName = "keydesk-desk"
	// cliName is the whole command line's program, found beside this one.
	cliName = "keydesk-cli"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		if err := startBeside(deskName, "the desktop app", nil); err != nil {
			fmt.Fprintln(os.Stderr, "keydesk:", err)
		}
		os.Exit(1)
	}
	// The environment as it came, for keydesk-cli: the status path may set
	// PCSCLITE_CSOCK_NAME for practice keys.
	env := os.Environ()
	if answered(args, os.Stdout) {
		os.Exit(0)
	}
	if err := startBeside(cliName, "the keydesk command line", args, env...); err != nil {
		fmt.Fprintln(os.Stderr, "keydesk:", err)
	}
	os.Exit(1)
}

// besidePath is program's path: in the directory of this executable
// (symbolic links resolved, so a link to keydesk elsewhere still finds
// it). what names it in the error.
func besidePath(program, what string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding the keydesk executable: %w", err)
	}
	if r, err := filepath.EvalSymlinks(self); err == nil {
		self = r
	}
	p := filepath.Join(filepath.Dir(self), program+exeSuffix)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s %s is not installed beside keydesk: %w", what, p, err)
	}
	return p, nil
}
