package keys

import "time"

// NewTrackerTicking is NewTracker with its timed looks on tick instead of
// every Interval.
func NewTrackerTicking(cfg TrackerConfig, tick <-chan time.Time) *Tracker {
	t := NewTracker(cfg)
	t.tick = tick
	return t
}
