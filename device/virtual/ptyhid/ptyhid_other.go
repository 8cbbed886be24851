//go:build !linux

package ptyhid

import (
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/ctaphid"
)

// The transport is a Linux pseudo-terminal standing in for a hidraw node;
// elsewhere Open fails with virtual.ErrNeedsLinux and the rest is the Linux
// API, so callers build unchanged.

// Device is the pseudo-terminal transport of one virtual key; none exists
// on this system.
type Device struct{}

// Open fails with virtual.ErrNeedsLinux.
func Open(key *virtual.Key, h ctaphid.Handler, link string) (*Device, error) {
	return nil, virtual.ErrNeedsLinux
}

func (d *Device) Path() string              { return "" }
func (d *Device) SlavePath() string         { return "" }
func (d *Device) Departed() <-chan struct{} { return nil }
func (d *Device) Close() error              { return nil }
func (d *Device) Held() bool                { return false }
