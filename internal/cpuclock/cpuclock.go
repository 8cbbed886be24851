// Package cpuclock measures CPU time for benchmarks that run on shared
// machines, where CPU time says what a piece of work costs and wall time
// says mostly what else was running.
package cpuclock

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Self is the CPU time used so far by this process alone (getrusage on
// Unix, GetProcessTimes on Windows).
func Self() time.Duration { return self() }

// Tree is the CPU time used so far by this process and every process it
// started (a PostgreSQL server with its backends and parallel workers,
// say): user and system time of each live process and of the children it
// has reaped, from /proc (proc(5): utime, stime, cutime, cstime). On a
// shared machine a benchmark's wall time depends on what else runs; the
// CPU it costs does not.
func Tree() time.Duration {
	self := os.Getpid()
	parent := map[int]int{}
	ticks := map[int]int64{}
	// Where there is no /proc (Windows, macOS) this finds nothing and is 0.
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
