package enrolui

import (
	"context"
	"sync"
)

// trail records the states a screen went through (steps, and prompts
// shown), so tests wait for "the PIN step is showing" on a channel instead
// of polling.
type trail struct {
	mu  sync.Mutex
	log []string
	ch  chan struct{}
}

func (t *trail) add(state string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log = append(t.log, state)
	if t.ch != nil {
		close(t.ch)
		t.ch = nil
	}
}

// wait returns the index of the first state at or after from that is one
// of states, waiting for it until ctx ends.
func (t *trail) wait(ctx context.Context, from int, states ...string) (int, string, error) {
	for {
		t.mu.Lock()
		for i := from; i < len(t.log); i++ {
			for _, s := range states {
				if t.log[i] == s {
					t.mu.Unlock()
					return i, s, nil
				}
			}
		}
		if t.ch == nil {
			t.ch = make(chan struct{})
		}
		ch := t.ch
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return -1, "", ctx.Err()
		}
	}
}

// states returns a copy of the log.
func (t *trail) states() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.log...)
}
