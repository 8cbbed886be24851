package kratostest

import (
	"os"
	"syscall"
)

// groupAttr: Windows has no process groups to signal.
func groupAttr() *syscall.SysProcAttr { return nil }

// signalGroup stops p: Windows has no SIGTERM to send another process, so
// a graceful stop is a kill there.
func signalGroup(p *os.Process, kill bool) { p.Kill() }
