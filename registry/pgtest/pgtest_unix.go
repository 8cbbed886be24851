//go:build unix

package pgtest

import (
	"os"
	"syscall"
)

// groupAttr puts postgres in its own process group, so signalGroup reaches
// it through runuser.
func groupAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// signalGroup sends p's group SIGINT (PostgreSQL's fast shutdown) or,
// with kill, SIGKILL.
func signalGroup(p *os.Process, kill bool) {
	sig := syscall.SIGINT
	if kill {
		sig = syscall.SIGKILL
	}
	syscall.Kill(-p.Pid, sig)
}
