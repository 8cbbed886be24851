package discover_test

import (
	"context"
	"testing"
	"time"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/discover"
)

// TestWatchSurvivesPcscdRestart restarts pcscd under a running Watch, three
// times: each time the watch goes on and reports the key being removed and
// inserted afterwards, with its serial (a watch stuck on the dead daemon's
// context, or one that kept the serial-less read of a card pcscd had only
// just powered up, would not).
func TestWatchSurvivesPcscdRestart(t *testing.T) {
	f := start(t, 1)
	opts := discover.Options{FIDOGlobs: []string{f.glob}, NoSystemHID: true}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := discover.Watch(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	serial := f.keys[0].Serial()
	listed := func(want bool) func([]device.Key) bool {
		return func(keys []device.Key) bool {
			for _, k := range keys {
				if !k.SerialUnknown && k.Serial == serial && k.Reader != "" {
					return want
				}
			}
			return !want
		}
	}
	next(t, ch, listed(true))
	for round := range 3 {
		rctx, done := context.WithTimeout(context.Background(), 30*time.Second)
		if err := daemon.Restart(rctx); err != nil {
			done()
			t.Fatalf("round %d: restarting pcscd: %v", round, err)
		}
		if err := daemon.WaitCard(rctx, 0, true); err != nil {
			done()
			t.Fatalf("round %d: the card did not come back: %v", round, err)
		}
		done()
		f.keys[0].Key.Remove()
		next(t, ch, listed(false))
		f.keys[0].Key.Insert()
		next(t, ch, listed(true))
	}
	// List, a fresh context each time, sees it too.
	keys, err := discover.List(context.Background(), opts)
	if err != nil || !listed(true)(keys) {
		t.Fatalf("list after restarts: %+v %v", keys, err)
	}
	cancel()
	for range ch {
	}
}
