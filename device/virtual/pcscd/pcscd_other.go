//go:build !linux

package pcscd

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/keydesk/keydesk/device/virtual"
)

// The private pcscd is pcsc-lite's daemon with the vsmartcard vpcd driver,
// which exist only on Linux; elsewhere Start fails with
// virtual.ErrNeedsLinux (wrapped in ErrUnavailable) and the rest of the
// package is its Linux API, so callers build unchanged.

const DriverPath = ""

const ReaderName = "Yubico YubiKey OTP+FIDO+CCID (keydesk virtual)"

const MaxReaders = 2

// Config describes the daemon to start.
type Config struct {
	Readers int
	Dir     string
	Log     *os.File
	APDULog bool
}

// Daemon is a running private pcscd; none runs on this system.
type Daemon struct{}

// ErrUnavailable means the machine lacks what a private pcscd needs.
var ErrUnavailable = errors.New("private pcscd unavailable")

// Start fails: see the package note above.
func Start(ctx context.Context, cfg Config) (*Daemon, error) {
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, virtual.ErrNeedsLinux)
}

func (d *Daemon) Restart(ctx context.Context) error { return virtual.ErrNeedsLinux }
func (d *Daemon) Socket() string                    { return "" }
func (d *Daemon) Env() string                       { return "" }
func (d *Daemon) Readers() int                      { return 0 }
func (d *Daemon) Reader(i int) string               { return "" }
func (d *Daemon) Addr(i int) string                 { return "" }
func (d *Daemon) Stop() error                       { return nil }
func (d *Daemon) Exited() <-chan struct{}           { return nil }
func (d *Daemon) WaitCard(ctx context.Context, i int, present bool) error {
	return virtual.ErrNeedsLinux
}

// RunTests reports that the tests cannot run here and exits 0: they need
// the Linux daemon.
func RunTests(m interface{ Run() int }, readers int, daemon **Daemon) {
	fmt.Fprintln(os.Stderr, "skipping: a private pcscd:", virtual.ErrNeedsLinux)
	os.Exit(0)
}
