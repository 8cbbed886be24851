package virtual

import (
	"sync"
	"time"
)

// Event is a change in a key's physical state that transports act on.
type Event int

const (
	// Inserted: the key was plugged in (and so powered up).
	Inserted Event = iota + 1
	// Removed: the key was pulled; open sessions must fail.
	Removed
	// PowerCycled: the key lost and regained power without being unplugged
	// from the host's point of view (a USB reset).
	PowerCycled
)

func (e Event) String() string {
	switch e {
	case Inserted:
		return "inserted"
	case Removed:
		return "removed"
	case PowerCycled:
		return "power-cycled"
	}
	return "unknown"
}

// Key is the physical side of one virtual YubiKey: identity, presence and
// power. Applets hold a *Key and consult it; transports subscribe to its
// events. It is safe for concurrent use.
type Key struct {
	Presence *Presence

	mu        sync.Mutex
	id        Identity
	inserted  bool
	poweredAt time.Time
	now       func() time.Time
	subs      map[int]func(Event)
	nextSub   int
	onChange  func() // persistence hook, called after identity changes
}

// NewKey returns an inserted, freshly powered key.
func NewKey(id Identity) *Key {
	k := &Key{Presence: NewPresence(), id: id, inserted: true, now: time.Now, subs: map[int]func(Event){}}
	k.poweredAt = k.now()
	return k
}

// SetClock replaces the key's clock (tests use it to step past the FIDO reset
// window without sleeping).
func (k *Key) SetClock(now func() time.Time) {
	k.mu.Lock()
	k.now = now
	k.poweredAt = now()
	k.mu.Unlock()
}

// Now is the key's clock.
func (k *Key) Now() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.now()
}

// Identity returns a copy of the key's identity.
func (k *Key) Identity() Identity {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.id
}

// UpdateIdentity changes the identity under the key's lock (the management
// applet uses it to enable or disable applications).
func (k *Key) UpdateIdentity(f func(*Identity)) {
	k.mu.Lock()
	f(&k.id)
	hook := k.onChange
	k.mu.Unlock()
	if hook != nil {
		hook()
	}
}

// OnChange registers a function called after any persistent state changes.
// It runs while an applet holds its own lock: it must only take note (for
// example, a non-blocking send) and never call back into the applets.
func (k *Key) OnChange(f func()) {
	k.mu.Lock()
	k.onChange = f
	k.mu.Unlock()
}

// Changed is called by applets after they change persistent state.
func (k *Key) Changed() {
	k.mu.Lock()
	hook := k.onChange
	k.mu.Unlock()
	if hook != nil {
		hook()
	}
}

// Inserted reports whether the key is plugged in.
func (k *Key) Inserted() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.inserted
}

// SincePowerUp is the time since the key was last powered (inserted or
// power-cycled). The FIDO reset window is measured from it.
func (k *Key) SincePowerUp() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.now().Sub(k.poweredAt)
}

// Subscribe calls f for every later event until the returned cancel is called.
// f runs on the goroutine that caused the event and must not block.
func (k *Key) Subscribe(f func(Event)) (cancel func()) {
	k.mu.Lock()
	id := k.nextSub
	k.nextSub++
	k.subs[id] = f
	k.mu.Unlock()
	return func() {
		k.mu.Lock()
		delete(k.subs, id)
		k.mu.Unlock()
	}
}

func (k *Key) emit(e Event) {
	k.mu.Lock()
	subs := make([]func(Event), 0, len(k.subs))
	for _, f := range k.subs {
		subs = append(subs, f)
	}
	k.mu.Unlock()
	for _, f := range subs {
		f(e)
	}
}

// Insert plugs the key in. It is a no-op when already inserted.
func (k *Key) Insert() {
	k.mu.Lock()
	if k.inserted {
		k.mu.Unlock()
		return
	}
	k.inserted = true
	k.poweredAt = k.now()
	k.mu.Unlock()
	k.emit(Inserted)
}

// Remove pulls the key out. It is a no-op when already removed.
func (k *Key) Remove() {
	k.mu.Lock()
	if !k.inserted {
		k.mu.Unlock()
		return
	}
	k.inserted = false
	k.mu.Unlock()
	k.emit(Removed)
}

// PowerCycle removes power and restores it, restarting the reset window.
func (k *Key) PowerCycle() {
	k.mu.Lock()
	k.poweredAt = k.now()
	k.mu.Unlock()
	k.emit(PowerCycled)
}
