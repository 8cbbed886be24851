package fidoc

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSilentDeviceTimesOut: a device node that takes requests and never
// answers (a pseudo-terminal nobody serves) fails the open with ErrRX once
// the response limit passes, instead of blocking for good.
func TestSilentDeviceTimesOut(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skip("no pseudo-terminals here:", err)
	}
	defer ptmx.Close()
	fd := int(ptmx.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	old := responseLimit
	responseLimit = 300 * time.Millisecond
	defer func() { responseLimit = old }()

	start := time.Now()
	d, err := Open(fmt.Sprintf("/dev/pts/%d", n))
	took := time.Since(start)
	if err == nil {
		d.Close()
		t.Fatal("a device that never answers opened")
	}
	if !errors.Is(err, ErrRX) {
		t.Errorf("open failed with %v, want ErrRX", err)
	}
	if took > 10*time.Second {
		t.Errorf("open gave up after %v, limit 300ms", took)
	}
}
