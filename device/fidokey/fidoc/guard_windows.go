package fidoc

import "runtime"

// Guard runs f on a locked OS thread. Windows has no POSIX signals: the Go
// runtime preempts threads by suspending them, which does not interrupt
// libfido2's waits on a device (hid_win.c uses overlapped I/O), so there is
// nothing to block.
func Guard(f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f()
}
