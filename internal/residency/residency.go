// Package residency hands the pages of keydesk's own executable that only
// its start needed back to the kernel.
//
// Starting a Go program touches code and tables across the whole
// executable: every package's initialisation runs, and for each page
// fault Linux maps the neighbouring pages that are already in the page
// cache too (fault-around, 64 KiB by default, and whole large folios). So
// after start the desktop app holds about 30 MB of its executable resident
// although, idle, it runs in a few MB of it. Release asks the kernel to
// reclaim the executable's read-only, unmodified mappings now
// (madvise(2) MADV_PAGEOUT, Linux 5.4): their pages leave this process's
// page tables, and leave the page cache too unless another process maps
// them. Nothing is lost: reclaim is what the kernel does to such pages
// under memory pressure, and the next access reads the page back from the
// file, and only that page: the mappings are then marked MADV_RANDOM, so
// the kernel reads no neighbours ahead, which brought about 10 MB of what
// was dropped back within seconds of the next screen used. (MADV_DONTNEED
// is not enough: it keeps the pages cached in large folios, and the next
// access to any page maps its whole folio again.)
// Pages of an executable just built are first written back to disk:
// until then the kernel cannot reclaim them. Writable mappings, and
// read-only ones holding any modified page (the
// relocated RELRO segment, a debugger's breakpoints), are left alone, and
// so is a process being traced.
package residency

// span is one mapping of the executable that Release may drop.
type span struct {
	Start, End uintptr
	Resident   int64 // bytes resident before the release
}

// Release drops the running executable's start-up pages from the resident
// set and reports how many bytes were resident in the mappings it dropped.
// On systems other than Linux it does nothing.
func Release() (int64, error) { return release() }

// TrimHeap returns the C heap's free pages to the kernel (glibc's
// malloc_trim on Linux); elsewhere it does nothing.
func TrimHeap() { trimHeap() }

// Resident is this process's resident memory in bytes (VmRSS), or 0 where
// it cannot be read.
func Resident() int64 { return resident() }
