//go:build unix

package kratostest

import (
	"os"
	"syscall"
)

// groupAttr puts kratos in its own process group.
func groupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// signalGroup sends p's group SIGTERM (Kratos's graceful shutdown) or,
// with kill, SIGKILL.
func signalGroup(p *os.Process, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	syscall.Kill(-p.Pid, sig)
}
