package server_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// treeCPU is the CPU time used so far by this process and every process it
// started (the PostgreSQL server and its backends included): user and
// system time of each live process and of the children it has reaped,
// from /proc. On a shared machine the wall-clock rate depends on what
// else runs; the CPU a verification costs does not.
func treeCPU() time.Duration {
	self := os.Getpid()
	parent := map[int]int{}
	ticks := map[int]int64{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15) cutime(16) cstime(17)
		s := string(b)
		end := strings.LastIndexByte(s, ')')
		if end < 0 {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:strings.IndexByte(s, '(')]))
		fields := strings.Fields(s[end+1:])
		if len(fields) < 15 {
			continue
		}
		parent[pid], _ = strconv.Atoi(fields[1])
		var t int64
		for _, i := range []int{11, 12, 13, 14} {
			n, _ := strconv.ParseInt(fields[i], 10, 64)
			t += n
		}
		ticks[pid] = t
	}
	var total int64
	for pid, t := range ticks {
		for p := pid; p > 1; p = parent[p] {
			if p == self {
				total += t
				break
			}
		}
	}
	return time.Duration(total) * time.Second / 100 // USER_HZ
}

// selfCPU is the CPU time used so far by this process alone.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
