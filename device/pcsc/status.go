package pcsc

import (
	"sync"
	"time"

	"github.com/ebfe/scard"
)

// status gives SCardGetStatusChange one caller at a time in the process.
// ebfe/scard records each reader name in a package-level map, unguarded,
// at the start of every GetStatusChange, so two calls at once (the
// desktop's key watcher and an enrolment listing keys) crash the process
// with "concurrent map writes".
var status struct {
	mu    sync.Mutex
	busy  bool
	until time.Time     // when the call holding the turn should have returned
	freed chan struct{} // closed when it returns
}

// statusGrace is how long past its own timeout a call may take before it
// counts as stuck in a daemon that no longer answers.
const statusGrace = 2 * time.Second

// GetStatusChange is sc.GetStatusChange(rs, timeout), one call at a time.
// A call that overran its timeout by statusGrace is stuck in pcscd (past
// the map) and loses its turn to the next caller, so a hung daemon never
// holds the others up for longer than that.
func GetStatusChange(sc *scard.Context, rs []scard.ReaderState, timeout time.Duration) error {
	for {
		status.mu.Lock()
		if !status.busy || !time.Now().Before(status.until) {
			freed := make(chan struct{})
			status.busy, status.until, status.freed = true, time.Now().Add(timeout+statusGrace), freed
			status.mu.Unlock()
			defer func() {
				status.mu.Lock()
				if status.freed == freed {
					status.busy = false
				}
				status.mu.Unlock()
				close(freed)
			}()
			return sc.GetStatusChange(rs, timeout)
		}
		wait, freed := time.Until(status.until), status.freed
		status.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-freed:
		case <-t.C:
		}
		t.Stop()
	}
}
