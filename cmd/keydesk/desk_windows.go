package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
)

const exeSuffix = ".exe"

// startBeside runs program (beside this one) with args and this process's
// standard streams, and exits with its exit status; env nil is this
// process's environment. It returns only when the program could not be
// started.
func startBeside(program, what string, args []string, env ...string) error {
	p, err := besidePath(program, what)
	if err != nil {
		return err
	}
	// Ctrl-C reaches every process on the console: the program handles it
	// and exits with its own status (8, canceled), which this one passes on.
	signal.Ignore(os.Interrupt)
	cmd := exec.Command(p, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if env != nil {
		cmd.Env = env
	}
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("starting %s %s: %w", what, p, err)
	}
	os.Exit(0)
	return nil
}
