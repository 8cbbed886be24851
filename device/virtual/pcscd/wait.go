//go:build linux

package pcscd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ebfe/scard"

	"github.com/keydesk/keydesk/device/pcsc"
)

// WaitCard blocks until the daemon reports reader i with a card (present
// true) or without one. Harnesses call it after taking a virtual card away,
// so the next card's arrival is a fresh insertion pcscd powers up, not a
// swap it never noticed. The caller's process must be pointed at the daemon
// (RunTests does that).
func (d *Daemon) WaitCard(ctx context.Context, i int, present bool) error {
	sc, err := establish(ctx)
	if err != nil {
		return err
	}
	defer sc.Release()
	stop := context.AfterFunc(ctx, func() { sc.Cancel() })
	defer stop()
	rs := []scard.ReaderState{{Reader: d.Reader(i), CurrentState: scard.StateUnaware}}
	for {
		err := pcsc.GetStatusChange(sc, rs, time.Second)
		switch {
		case errors.Is(err, scard.ErrCancelled):
			return ctx.Err()
		case err != nil && !errors.Is(err, scard.ErrTimeout):
			return fmt.Errorf("watching %q: %w", d.Reader(i), err)
		}
		if (rs[0].EventState&scard.StatePresent != 0) == present {
			return nil
		}
		rs[0].CurrentState = rs[0].EventState &^ scard.StateChanged
	}
}

// establish opens a PC/SC context, retrying while pcscd is still starting
// (SCARD_E_NO_SERVICE) until ctx ends.
func establish(ctx context.Context) (*scard.Context, error) {
	for {
		sc, err := scard.EstablishContext()
		if err == nil || !errors.Is(err, scard.ErrNoService) {
			return sc, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waiting for pcscd: %v)", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
