//go:build unix

package crashpoint

import (
	"os"
	"syscall"
	"time"
)

// stop stops the whole process where it stands, for the test to kill.
func stop() {
	syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	// Continued instead of killed: go no further.
	for {
		time.Sleep(time.Hour)
	}
}
