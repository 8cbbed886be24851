package residency

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

func release() (int64, error) {
	if traced() {
		return 0, nil
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return 0, fmt.Errorf("finding the executable: %w", err)
	}
	// A page written but not yet on disk cannot be reclaimed before it
	// is written back: an executable just built (make run) would keep
	// every page. Writing it back first costs nothing for an installed one.
	if exe, err := os.Open("/proc/self/exe"); err == nil {
		exe.Sync()
		exe.Close()
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("reading mappings: %w", err)
	}
	spans, err := droppable(f, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	f.Close()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, s := range spans {
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, s.Start, s.End-s.Start, unix.MADV_PAGEOUT); e != 0 {
			return n, fmt.Errorf("releasing %#x-%#x: %w", s.Start, s.End, e)
		}
		// Read back only the page used, not its neighbours too.
		unix.Syscall(unix.SYS_MADVISE, s.Start, s.End-s.Start, unix.MADV_RANDOM)
		n += s.Resident
	}
	return n, nil
}

// traced reports whether a debugger is attached (TracerPid in
// /proc/self/status): its breakpoints are written into the code.
func traced() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "TracerPid:"); ok {
			return strings.TrimSpace(v) != "0"
		}
	}
	return true
}

// droppable reads smaps (the format of /proc/PID/smaps, proc(5)) and
// returns the mappings of the file on device major:minor with inode ino
// that are private, not writable and hold no modified (anonymous) page.
func droppable(smaps io.Reader, major, minor uint32, ino uint64) ([]span, error) {
	var out []span
	var cur *span
	var curAnon int64 = -1
	flush := func() {
		if cur != nil && curAnon == 0 {
			out = append(out, *cur)
		}
		cur, curAnon = nil, -1
	}
	sc := bufio.NewScanner(smaps)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") {
			// A mapping's header: range perms offset dev inode [path].
			flush()
			if len(f) < 5 {
				return nil, fmt.Errorf("reading mappings: malformed line %q", sc.Text())
			}
			lo, hi, ok := strings.Cut(f[0], "-")
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			if !ok || err1 != nil || err2 != nil || b <= a {
				return nil, fmt.Errorf("reading mappings: malformed range %q", f[0])
			}
			perms := f[1]
			maj, min, _ := strings.Cut(f[3], ":")
			dmaj, err3 := strconv.ParseUint(maj, 16, 32)
			dmin, err4 := strconv.ParseUint(min, 16, 32)
			in, err5 := strconv.ParseUint(f[4], 10, 64)
			if err3 != nil || err4 != nil || err5 != nil {
				return nil, fmt.Errorf("reading mappings: malformed line %q", sc.Text())
			}
			if len(perms) == 4 && perms[0] == 'r' && perms[1] != 'w' && perms[3] == 'p' &&
				uint32(dmaj) == major && uint32(dmin) == minor && in == ino {
				cur = &span{Start: uintptr(a), End: uintptr(b)}
			}
			continue
		}
		if cur == nil || len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			cur.Resident = v << 10
		case "Anonymous:":
			curAnon = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mappings: %w", err)
	}
	flush()
	return out, nil
}

func resident() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}
