package cpuclock

import (
	"syscall"
	"time"
)

func self() time.Duration {
	h, err := syscall.GetCurrentProcess()
	if err != nil {
		return 0
	}
	var created, exited, kernel, user syscall.Filetime
	if err := syscall.GetProcessTimes(h, &created, &exited, &kernel, &user); err != nil {
		return 0
	}
	// FILETIME counts 100 ns intervals; Nanoseconds() would subtract the 1601 epoch.
	ticks := (int64(kernel.HighDateTime)<<32 | int64(kernel.LowDateTime)) +
		(int64(user.HighDateTime)<<32 | int64(user.LowDateTime))
	return time.Duration(ticks * 100)
}
