package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

const exeSuffix = ".exe"

// startDesk runs keydesk-desk.exe (Windows has no exec) with this
// process's standard streams, waits for it and exits with its status.
func startDesk() error {
	p, err := deskPath()
	if err != nil {
		return err
	}
	cmd := exec.Command(p)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("starting the desktop app %s: %w", p, err)
	}
	return nil
}
