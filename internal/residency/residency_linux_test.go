package residency

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A process's smaps with the executable (fe:00 inode 42) mapped as text,
// read-only data, a relocated RELRO page and writable data, plus a shared
// library, a file of the same inode number on another device and a shared
// read-only mapping of the executable.
const smapsFixture = `00400000-00407000 r--p 00000000 fe:00 42                                 /opt/keydesk/bin/keydesk
Size:                 28 kB
Rss:                  28 kB
Anonymous:             0 kB
00407000-011eb000 r-xp 00007000 fe:00 42                                 /opt/keydesk/bin/keydesk
Size:              14224 kB
Rss:               14180 kB
Pss:               14180 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
011eb000-0201f000 r--p 00deb000 fe:00 42                                 /opt/keydesk/bin/keydesk
Size:              14544 kB
Rss:               13780 kB
Anonymous:             0 kB
0201f000-02020000 r--p 01c1f000 fe:00 42                                 /opt/keydesk/bin/keydesk
Size:                  4 kB
Rss:                   4 kB
Anonymous:             4 kB
02020000-027f7000 rw-p 01c20000 fe:00 42                                 /opt/keydesk/bin/keydesk
Size:               8028 kB
Rss:                8028 kB
Anonymous:          1924 kB
7efd90e00000-7efd9757c000 r-xp 00000000 fe:00 325977                     /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1
Size:             105968 kB
Rss:               46740 kB
Anonymous:             0 kB
7efd9757c000-7efd9757d000 r-xp 00000000 fe:01 42                         /mnt/other
Rss:                   4 kB
Anonymous:             0 kB
7efd9757d000-7efd9757e000 r--s 00000000 fe:00 42                         /opt/keydesk/bin/keydesk
Rss:                   4 kB
Anonymous:             0 kB
7ffc1c6e2000-7ffc1c703000 rw-p 00000000 00:00 0                          [stack]
Rss:                  16 kB
Anonymous:            16 kB
`

func TestDroppableKeepsOnlyUnmodifiedReadOnlyMappings(t *testing.T) {
	spans, err := droppable(strings.NewReader(smapsFixture), 0xfe, 0, 42)
	if err != nil {
		t.Fatal(err)
	}
	want := []span{
		{0x400000, 0x407000, 28 << 10},
		{0x407000, 0x11eb000, 14180 << 10},
		{0x11eb000, 0x201f000, 13780 << 10},
	}
	if len(spans) != len(want) {
		t.Fatalf("got %d spans %x, want %x", len(spans), spans, want)
	}
	for i := range want {
		if spans[i] != want[i] {
			t.Errorf("span %d = %x, want %x", i, spans[i], want[i])
		}
	}
}

func TestDroppableRefusesMalformedInput(t *testing.T) {
	for _, in := range []string{
		"00400000 r--p 00000000 fe:00 42 /x\n",
		"00407000-00400000 r--p 00000000 fe:00 42 /x\n",
		"00400000-00407000 r--p 00000000 fe 42 /x\n",
		"00400000-00407000 r--p\n",
	} {
		if _, err := droppable(strings.NewReader(in), 0xfe, 0, 42); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

// exeResident is the resident size of this test binary's own mappings.
func exeResident(t *testing.T) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	spans, err := droppable(strings.NewReader(string(b)), unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range spans {
		n += s.Resident
	}
	return n
}

//go:noinline
func neverCalledBefore(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

func TestReleaseDropsPagesAndTheProgramRunsOn(t *testing.T) {
	if traced() {
		t.Skip("a debugger is attached: Release leaves the code alone")
	}
	sum := sha256.Sum256([]byte("keydesk"))
	want := hex.EncodeToString(sum[:4])
	before := exeResident(t)
	n, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 || n < before/2 {
		t.Fatalf("released %d bytes of %d resident", n, before)
	}
	// Code and tables come back from the file as they are used: this
	// runs, panics and recovers (stack unwinding reads the tables), and
	// hashes.
	if got := neverCalledBefore("keydesk"); got != want {
		t.Fatalf("hash after release: %q", got)
	}
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Error("no panic")
			}
		}()
		var m map[string]int
		m["x"] = 1
	}()
	after := exeResident(t)
	if after >= before {
		t.Errorf("resident executable pages: %d before, %d after", before, after)
	}
	t.Logf("executable resident: %d KiB before, %d KiB after; released %d KiB", before>>10, after>>10, n>>10)
}

// TestResidentAndTrim: the resident size is read and grows with memory
// touched; trimming the C heap neither fails nor grows it.
func TestResidentAndTrim(t *testing.T) {
	before := Resident()
	if before <= 0 {
		t.Fatalf("resident size %d", before)
	}
	b := make([]byte, 32<<20)
	for i := range b {
		if i%4096 == 0 {
			b[i] = 1
		}
	}
	if after := Resident(); after < before+16<<20 {
		t.Errorf("resident %d MB before and %d MB after touching 32 MB", before>>20, after>>20)
	}
	_ = b[len(b)-1]
	TrimHeap()
}
