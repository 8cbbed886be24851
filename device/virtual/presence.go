package virtual

import (
	"context"
	"errors"
	"sync"
	"time"
)

// TouchMode says how the simulated user answers a request for presence.
type TouchMode int

const (
	// TouchAuto answers every request at once, as a person who always
	// touches would. It is the default so unattended runs never block.
	TouchAuto TouchMode = iota
	// TouchManual waits for Presence.Touch (from a test, or from
	// `keydesk-sim touch`) until the request times out.
	TouchManual
	// TouchNever lets every request time out, as an unattended key does.
	TouchNever
)

// ErrTouchTimeout is returned when nobody touched the key in time.
var ErrTouchTimeout = errors.New("user presence not confirmed in time")

// DefaultTouchTimeout is how long a YubiKey waits for a touch before giving up
// (about 15 s for PIV; CTAP2 authenticators commonly use 30 s).
const DefaultTouchTimeout = 15 * time.Second

// Presence simulates the gold contact. It is safe for concurrent use.
type Presence struct {
	mu      sync.Mutex
	mode    TouchMode
	timeout time.Duration
	touches chan struct{} // a touch given while a request waits (capacity 1)
	waiting chan struct{} // closed and replaced whenever a request starts waiting
	pending int           // requests waiting now
}

// NewPresence returns presence in TouchAuto mode with DefaultTouchTimeout.
func NewPresence() *Presence {
	return &Presence{
		timeout: DefaultTouchTimeout,
		touches: make(chan struct{}, 1),
		waiting: make(chan struct{}),
	}
}

// SetMode changes how later requests are answered.
func (p *Presence) SetMode(m TouchMode) {
	p.mu.Lock()
	p.mode = m
	p.mu.Unlock()
}

// Mode reports the current mode.
func (p *Presence) Mode() TouchMode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetTimeout changes how long a request waits in TouchManual and TouchNever.
func (p *Presence) SetTimeout(d time.Duration) {
	p.mu.Lock()
	p.timeout = d
	p.mu.Unlock()
}

// Waiting returns a channel that is closed the next time a request starts
// waiting for a touch. Tests use it instead of sleeping.
func (p *Presence) Waiting() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting
}

// Pending reports how many requests wait for a touch now.
func (p *Presence) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending
}

// Touch satisfies one waiting request. It reports false when none was waiting.
// A touch given between a request starting to wait (Waiting closed) and its
// reaching its select is kept for it, so Touch right after Waiting never
// races.
func (p *Presence) Touch() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending == 0 || p.mode != TouchManual {
		return false
	}
	select {
	case p.touches <- struct{}{}:
	default: // a touch is already pending for a waiting request
	}
	return true
}

// Request asks for a touch and blocks until one is given, the timeout passes
// (ErrTouchTimeout), or ctx ends (ctx.Err()). keepalive, when not nil, is
// called about every 100 ms while waiting, for CTAPHID KEEPALIVE.
func (p *Presence) Request(ctx context.Context, keepalive func()) error {
	p.mu.Lock()
	mode, timeout := p.mode, p.timeout
	if mode == TouchAuto {
		p.mu.Unlock()
		return nil
	}
	p.pending++
	close(p.waiting)
	p.waiting = make(chan struct{})
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.pending--
		if p.pending == 0 {
			select { // a touch nobody took must not satisfy a later request
			case <-p.touches:
			default:
			}
		}
		p.mu.Unlock()
	}()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		var touches chan struct{}
		if mode == TouchManual {
			touches = p.touches
		}
		select {
		case <-touches:
			return nil
		case <-deadline.C:
			return ErrTouchTimeout
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if keepalive != nil {
				keepalive()
			}
		}
	}
}
