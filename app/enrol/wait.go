package enrol

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/keydesk/keydesk/registry/client"
)

// DefaultRegistryWait is how long a batch waits for an unreachable
// registry (a network error or a 5xx answer) per user before reporting that
// user failed and going on, and how long EnrolUser waits per key with
// Request.WaitRegistry.
const DefaultRegistryWait = 30 * time.Second

// Bounds of the back-off between tries: the first wait is about
// firstBackoff, each next one twice as long, at most maxBackoff; each is
// jittered down by up to half, so desks that lost the registry together do
// not come back in step.
const (
	firstBackoff = 250 * time.Millisecond
	maxBackoff   = 4 * time.Second
)

// registryWait is Config.RegistryWait with its default.
func (e *Enroller) registryWait() time.Duration {
	switch w := e.cfg.RegistryWait; {
	case w < 0:
		return 0
	case w == 0:
		return DefaultRegistryWait
	default:
		return w
	}
}

// waitRegistry runs try, and runs it again with exponential back-off while
// it fails with client.ErrUnreachable, for at most registryWait in all. It
// says each wait through ui (StepRegistryWait, with what is left of the
// whole wait in Event.Left). Any other error, success, ctx ending or the
// time running out ends it with try's last result.
func (e *Enroller) waitRegistry(ctx context.Context, ui UI, user string, try func() error) error {
	deadline := time.Now().Add(e.registryWait())
	delay := firstBackoff
	for {
		err := try()
		if err == nil || !errors.Is(err, client.ErrUnreachable) || ctx.Err() != nil {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		d := delay/2 + rand.N(delay/2+1)
		d = min(d, left)
		why := "the registry could not be reached"
		if msg, ok := client.Storage(err); ok {
			why = msg
		}
		ui.progress(Event{Step: StepRegistryWait, User: user, Detail: fmt.Sprintf("%s; trying again in %s", why, d.Round(10*time.Millisecond)), Left: left})
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, maxBackoff)
	}
}

// enrolWaiting enrols one key, riding out a short registry outage: an
// enrolment cut off before the key was touched runs again; one whose key
// is set up waits in place (req.WaitRegistry), or, when it stopped all the
// same, is resumed from the journal, its PINs asked for once.
func (e *Enroller) enrolWaiting(ctx context.Context, req Request, ui UI) (*Result, error) {
	var res *Result
	var serial uint32 // the key whose enrolment is to be resumed
	p := &pins{}
	err := e.waitRegistry(ctx, ui, req.User.ExternalID, func() error {
		var err error
		if serial != 0 {
			res, err = e.resume(ctx, serial, ui, p, false)
		} else {
			res, err = e.enrolKey(ctx, req, ui)
		}
		var ie *InterruptedError
		if errors.As(err, &ie) && !halfSetUp(ie.Stage) {
			serial = ie.Serial
		}
		return err
	})
	return res, err
}
