package pgtest

import (
	"os"
	"syscall"
)

// groupAttr: Windows has no process groups to signal.
func groupAttr() *syscall.SysProcAttr { return nil }

// signalGroup stops p: Windows has no SIGINT to send another process, so a
// fast shutdown is a kill there.
func signalGroup(p *os.Process, kill bool) { p.Kill() }
