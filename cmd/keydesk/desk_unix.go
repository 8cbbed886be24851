//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

const exeSuffix = ""

// startBeside replaces this process with program (beside this one) run with
// args, so that its exit status and signals are the caller's; env nil is
// this process's environment. It returns only on failure.
func startBeside(program, what string, args []string, env ...string) error {
	p, err := besidePath(program, what)
	if err != nil {
		return err
	}
	if env == nil {
		env = os.Environ()
	}
	if err := syscall.Exec(p, append([]string{p}, args...), env); err != nil {
		return fmt.Errorf("starting %s %s: %w", what, p, err)
	}
	return nil
}
