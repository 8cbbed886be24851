//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

const exeSuffix = ""

// startDesk replaces this process with keydesk-desk (same process id,
// arguments, environment and standard streams); it returns only on error.
func startDesk() error {
	p, err := deskPath()
	if err != nil {
		return err
	}
	if err := syscall.Exec(p, []string{p}, os.Environ()); err != nil {
		return fmt.Errorf("starting the desktop app %s: %w", p, err)
	}
	return nil
}
