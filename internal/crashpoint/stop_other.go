//go:build !unix

package crashpoint

import "time"

// stop parks the calling goroutine for good, for the test to kill the
// process.
func stop() {
	for {
		time.Sleep(time.Hour)
	}
}
