package server

import (
	"context"
	"time"
)

// Swept counts what one janitor pass removed.
type Swept struct {
	Idempotency int64 // idempotency rows older than IdempotencyTTL
	Challenges  int64 // expired challenges
	AuthWindows int   // failed-authentication windows that have ended
	Tokens      int   // token cache entries older than TokenCacheTTL
}

// Sweep is one janitor pass at the server's clock: it deletes idempotency
// rows older than Options.IdempotencyTTL and expired challenges from the
// store, and forgets ended rate-limit windows and stale cached tokens.
func (s *Server) Sweep(ctx context.Context) (Swept, error) {
	now := s.opt.Now()
	var sw Swept
	s.limitMu.Lock()
	for addr, f := range s.fails {
		if now.Sub(f.start) > s.opt.AuthWindow {
			delete(s.fails, addr)
			sw.AuthWindows++
		}
	}
	s.limitMu.Unlock()
	sw.Tokens = s.tokens.sweep(now)
	e, err := s.st.Expire(ctx, now.Add(-s.opt.IdempotencyTTL), now)
	sw.Idempotency, sw.Challenges = e.Idempotency, e.Challenges
	return sw, err
}

// RunJanitor calls Sweep every interval until ctx ends. Errors are passed
// to report (which may be nil); the janitor keeps going.
func (s *Server) RunJanitor(ctx context.Context, interval time.Duration, report func(Swept, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sw, err := s.Sweep(ctx)
			if report != nil {
				report(sw, err)
			}
		}
	}
}
