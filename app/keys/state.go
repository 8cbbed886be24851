package keys

import (
	"context"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keydesk/keydesk/device"
)

// State is one attached key as keydesk last read it: its listing, what
// Inspect read from it, and the registry feed's head at that moment.
type State struct {
	Key    device.Key
	Report *Report
	// RegistryHead is the registry change feed's head when the state was
	// published ("" with no feed); a change of it means the registry's
	// word on the key may have changed.
	RegistryHead string
	// Version grows with every change of what was read from the key or of
	// the registry's head (one sequence over all keys, so a key that
	// leaves and comes back never repeats a version); a new listing of the
	// same key alone (a restart after its interfaces changed) keeps it. A
	// message about a key is true of one Version and stale after the next.
	Version uint64
}

// TrackerConfig says where a Tracker reads from.
type TrackerConfig struct {
	Service *Service
	// Hold serialises this process's conversations with keys (the
	// desktop app's uikit.Env.HoldKeys); nil holds nothing.
	Hold func() (release func())
	// Interval is how often the PIN and PUK state of each attached key is
	// read again (a PIN typed wrong in another program changes it without
	// a hotplug), and the whole PIV state when it changed, while the
	// Tracker is active (SetActive); 500 ms when zero.
	Interval time.Duration
	// RegistryHead returns the registry change feed's head, asked every
	// Interval while active; nil means no registry. An error keeps the
	// last head.
	RegistryHead func(ctx context.Context) (string, error)
	// FIDO reads the FIDO2 status; FIDOStatus when nil.
	FIDO func(ctx context.Context, path string) (*device.FIDOStatus, error)
}

// Tracker is the one model of the attached keys' state that every screen
// of the desktop app subscribes to. Its sources are the key list (the
// hotplug watcher, through SetKeys), a timed look at each key's PIN and
// PUK state (the whole PIV state is read when it changed), the registry
// change feed, and Refresh after an action in this process. A key's FIDO2 state is read again on hotplug, on Refresh and
// when the registry changes, not on the timer: a FIDO HID device is one
// stream shared with any other program using the key at that moment,
// where PC/SC arbitrates smart-card sessions (and device/pcsc retries a
// card held by another program).
type Tracker struct {
	cfg  TrackerConfig
	kick chan struct{}
	tick <-chan time.Time // every Interval; tests set their own
	// idle is set while nobody is using the state (SetActive false): the
	// timed looks stop.
	idle atomic.Bool
	// reading serialises reads, from the read to the state stored, so
	// that an older read never lands after a newer one.
	reading sync.Mutex

	mu     sync.Mutex
	keys   []device.Key
	states map[uint32]*State
	head   string
	subs   []func([]State)
	full   map[uint32]bool // keys whose FIDO2 state is to be read again
	seq    uint64
	fails  map[uint32]int    // reads failed in a row, per key
	gone   map[uint32]*State // the last state of keys no longer listed
}

// maxFails is how many reads in a row may fail before the failure is
// published.
const maxFails = 3

// NewTracker returns a Tracker; Run starts it.
func NewTracker(cfg TrackerConfig) *Tracker {
	if cfg.Interval == 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.FIDO == nil {
		cfg.FIDO = FIDOStatus
	}
	if cfg.Hold == nil {
		cfg.Hold = func() func() { return func() {} }
	}
	return &Tracker{cfg: cfg, kick: make(chan struct{}, 1), states: map[uint32]*State{}, full: map[uint32]bool{}, fails: map[uint32]int{}, gone: map[uint32]*State{}}
}

// SetActive says whether anyone is looking at the state (the desktop
// app's window is in the foreground). A Tracker starts active. While it is
// not, the timed looks at the keys and at the registry stop, so no card is
// opened while the desk sits in the background (a key is only ever held
// for an operation, and none runs then); hotplug (SetKeys), ReadAll and
// Refresh still read. Becoming active again starts a pass at once, so what changed
// meanwhile shows as soon as someone looks.
func (t *Tracker) SetActive(active bool) {
	if t.idle.Swap(!active) && active {
		t.poke()
	}
}

// Subscribe calls fn with the states that changed, from the Tracker's
// goroutine (a UI wraps it in its own scheduling).
func (t *Tracker) Subscribe(fn func(changed []State)) {
	t.mu.Lock()
	t.subs = append(t.subs, fn)
	t.mu.Unlock()
}

// SetKeys takes a new key list (from the hotplug watcher). Keys new to the
// list, or listed differently, are read in full on the next pass, which
// starts now.
func (t *Tracker) SetKeys(list []device.Key) {
	t.mu.Lock()
	t.keys = append([]device.Key(nil), list...)
	for _, k := range list {
		if s := t.states[k.Serial]; s == nil || !reflect.DeepEqual(s.Key, k) {
			t.full[k.Serial] = true
		}
	}
	for serial, st := range t.states {
		if !listed(list, serial) {
			// Kept: a key back after a restart or a replug with the same
			// state keeps its version.
			t.gone[serial] = st
			delete(t.states, serial)
		}
	}
	t.mu.Unlock()
	t.poke()
}

func listed(list []device.Key, serial uint32) bool {
	for _, k := range list {
		if k.Serial == serial {
			return true
		}
	}
	return false
}

func (t *Tracker) poke() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Seen takes a listing of one key newer than the hotplug watcher's last
// list: the key as an action in this process saw it come back after a
// restart (Service.AwaitRestart). The watcher, which looks on its own
// schedule, may still list the key as it was during the restart (by one
// interface only); a Refresh through that listing would read the other
// interface's application as gone and publish a change that did not
// happen. The watcher's next list replaces this one.
func (t *Tracker) Seen(k device.Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := append([]device.Key(nil), t.keys...)
	found := false
	for i := range keys {
		if keys[i].Serial == k.Serial {
			keys[i], found = k, true
		}
	}
	if !found {
		keys = append(keys, k)
	}
	t.keys = keys
	if s := t.states[k.Serial]; s == nil || !reflect.DeepEqual(s.Key, k) {
		t.full[k.Serial] = true
	}
}

// ReadAll reads every listed key again in full on the next pass, which
// starts now (Ctrl+R: list the keys afresh).
func (t *Tracker) ReadAll() {
	t.mu.Lock()
	for _, k := range t.keys {
		t.full[k.Serial] = true
	}
	t.mu.Unlock()
	t.poke()
}

// Get returns the state of the key with serial as last read.
func (t *Tracker) Get(serial uint32) (State, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.states[serial]
	if s == nil {
		return State{}, false
	}
	return *s, true
}

// Refresh reads the key with serial again in full now (after an action
// on it), publishes any change and returns its state then.
func (t *Tracker) Refresh(ctx context.Context, serial uint32) (State, bool) {
	t.mu.Lock()
	var k *device.Key
	for i := range t.keys {
		if t.keys[i].Serial == serial {
			k = &t.keys[i]
		}
	}
	t.mu.Unlock()
	if k == nil {
		return State{}, false
	}
	if t.cfg.RegistryHead != nil {
		// What the action wrote to the registry counts as part of the
		// state it left.
		if h, err := t.cfg.RegistryHead(ctx); err == nil {
			t.mu.Lock()
			if later(h, t.head) {
				t.head = h
			}
			t.mu.Unlock()
		}
	}
	t.read(ctx, *k, true)
	return t.Get(serial)
}

// Run reads and publishes until ctx ends.
func (t *Tracker) Run(ctx context.Context) {
	tick := t.tick
	if tick == nil {
		tk := time.NewTicker(t.cfg.Interval)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		t.pass(ctx)
		// The next pass: on the tick while active, on a kick always.
		for next := false; !next; {
			select {
			case <-ctx.Done():
				return
			case <-tick:
				next = !t.idle.Load()
			case <-t.kick:
				next = true
			}
		}
	}
}

// later says whether registry head h is later than cur. Heads are the
// change feed's sequence numbers: one asked before an action but answered
// after a Refresh that saw the action's writes is older, and must not
// count as a change (it would make every message about the key stale for
// nothing). Heads that are not numbers are later whenever they differ.
func later(h, cur string) bool {
	a, errA := strconv.ParseInt(h, 10, 64)
	b, errB := strconv.ParseInt(cur, 10, 64)
	if errA != nil || errB != nil {
		return h != cur
	}
	return a > b
}

// pass looks at the registry's head and at every attached key once.
func (t *Tracker) pass(ctx context.Context) {
	regChanged := false
	if t.cfg.RegistryHead != nil {
		if h, err := t.cfg.RegistryHead(ctx); err == nil {
			t.mu.Lock()
			if later(h, t.head) {
				regChanged = true
				t.head = h
			}
			t.mu.Unlock()
		}
	}
	t.mu.Lock()
	list := append([]device.Key(nil), t.keys...)
	t.mu.Unlock()
	for _, k := range list {
		if ctx.Err() != nil {
			return
		}
		t.mu.Lock()
		full := t.full[k.Serial] || regChanged
		t.mu.Unlock()
		t.read(ctx, k, full)
	}
}

// read inspects k (its FIDO2 state too when full) and publishes the state
// when it differs from the last one. A PIV read that fails while the last
// one succeeded (the card held by another program for longer than
// device/pcsc waits) keeps the last report.
func (t *Tracker) read(ctx context.Context, k device.Key, full bool) {
	t.reading.Lock()
	defer t.reading.Unlock()
	t.mu.Lock()
	prev := t.states[k.Serial]
	if prev == nil {
		prev = t.gone[k.Serial]
	}
	t.mu.Unlock()
	fido := t.cfg.FIDO
	if !full && prev != nil && prev.Report != nil {
		last := prev.Report
		fido = func(context.Context, string) (*device.FIDOStatus, error) {
			if last.FIDO == nil && last.FIDOError != "" {
				return nil, errString(last.FIDOError)
			}
			return last.FIDO, nil
		}
	}
	release := t.cfg.Hold()
	if !full && prev != nil && prev.Report != nil && prev.Report.PIV != nil && t.samePINs(ctx, k, prev.Report.PIV) {
		// The timed look: PIN and PUK as they were, nothing to read.
		release()
		return
	}
	r := t.cfg.Service.Inspect(ctx, k, fido)
	release()
	if ctx.Err() != nil {
		return
	}
	t.mu.Lock()
	if !listed(t.keys, k.Serial) {
		t.mu.Unlock()
		return
	}
	if full {
		delete(t.full, k.Serial)
	}
	cur := t.states[k.Serial]
	back := false // listed again after leaving: published, whatever it reads
	if cur == nil {
		if cur = t.gone[k.Serial]; cur != nil {
			delete(t.gone, k.Serial)
			t.states[k.Serial] = cur
			back = true
		}
	}
	// A read that fails or finds no interface where the last one
	// succeeded (a key restarting, listed for a moment by one interface
	// only; a card only just back refusing its first session; a card held
	// by another program longer than device/pcsc waits) keeps the last
	// answer and is tried again on the next pass; the change is
	// published once it has repeated.
	if cur != nil && cur.Report != nil {
		failed := false
		if r.PIV == nil && cur.Report.PIV != nil {
			failed = true
			if t.fails[k.Serial] < maxFails {
				r.PIV, r.PIVError = cur.Report.PIV, ""
			}
		}
		if r.FIDO == nil && cur.Report.FIDO != nil {
			failed = true
			if t.fails[k.Serial] < maxFails {
				r.FIDO, r.FIDOError = cur.Report.FIDO, ""
			}
		}
		if failed {
			t.fails[k.Serial]++
			t.full[k.Serial] = true
		} else {
			delete(t.fails, k.Serial)
		}
	}
	next := State{Key: k, Report: r, RegistryHead: t.head}
	if cur != nil && sameRead(cur.Report, r) && cur.RegistryHead == next.RegistryHead {
		if reflect.DeepEqual(cur.Key, k) && !back {
			t.mu.Unlock()
			return
		}
		next.Version = cur.Version
	} else {
		t.seq++
		next.Version = t.seq
	}
	t.states[k.Serial] = &next
	subs := append([]func([]State){}, t.subs...)
	t.mu.Unlock()
	for _, fn := range subs {
		fn([]State{next})
	}
}

// samePINs says whether the key's PIN and PUK state reads as in last (a
// few short commands, not the whole PIV state). A failed read counts as
// unchanged: the next full read tells.
func (t *Tracker) samePINs(ctx context.Context, k device.Key, last *device.PIVStatus) bool {
	card, err := t.cfg.Service.PIV(k)
	if err != nil {
		return true
	}
	p, err := card.PINState(ctx)
	if err != nil {
		return true
	}
	return p.PINRetries == last.PINRetries && p.PUKRetries == last.PUKRetries && p.PINDefault == last.PINDefault && p.PUKDefault == last.PUKDefault
}

// sameRead says whether two reports read the same from the key, whatever
// its listing.
func sameRead(a, b *Report) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.PIVError == b.PIVError && a.FIDOError == b.FIDOError && reflect.DeepEqual(a.PIV, b.PIV) && reflect.DeepEqual(a.FIDO, b.FIDO)
}

type errString string

func (e errString) Error() string { return string(e) }
