// Package uikit is what every screen of keydesk's desktop app gets from the
// shell: the desk's services, the person's registry role, the live list of
// attached keys, and the few rules every screen keeps — device and registry
// calls never run on the UI goroutine, the UI changes only through fyne.Do,
// and a destructive step is confirmed by typing the key's serial.
//
// Screens live in their own packages (app/ui/…) and export a Screen; the
// shell (app/ui) lays them out and shows each only to the roles it names.
package uikit

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"fyne.io/fyne/v2"

	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/registry/client"
)

// Role is the person's registry role; it decides which screens they see.
type Role string

// The registry's roles (docs/registry.md).
const (
	Admin    Role = "admin"
	Helpdesk Role = "helpdesk"
	Self     Role = "self"
)

// ErrNoRegistry is what Env.Registry returns when the desk has no registry
// connection (none configured and the embedded one failed to open, or the
// token is missing).
var ErrNoRegistry = errors.New("no registry connection")

// Env is one running app's world, shared by every screen.
type Env struct {
	// App and Window are the Fyne app and the main window; dialogs go on
	// Window.
	App    fyne.App
	Window fyne.Window
	// Ctx ends when the window closes; background work derives from it.
	Ctx context.Context
	// Keys finds and opens attached keys (practice keys in practice mode).
	Keys *keys.Service
	// Feed is the live list of attached keys.
	Feed *KeyFeed
	// Settings returns the desk's current settings.
	Settings func() settings.Settings
	// Registry returns the desk's registry client, or an error saying why
	// there is none (ErrNoRegistry, client.ErrUnreachable, a token error).
	Registry func(ctx context.Context) (*client.Client, error)
	// Role is the person's role; User their registry user id when Role is
	// Self.
	Role Role
	User string

	// HelpdeskIdentity returns the helpdesk's age identity, which opens
	// escrowed PUKs; nil means the OS keyring's. A practice desk keeps its
	// own identity with its data instead.
	HelpdeskIdentity func() (string, error)

	// Reconnect asks the shell to reload the settings and reopen the
	// registry connection (after Settings saved new ones). Nil when there
	// is no shell, as in a screen's tests.
	Reconnect func()
	// SimDir is the practice keys' state directory in practice mode, where
	// their control socket lives; empty otherwise.
	SimDir string
	// Open shows the screen with id, as the navigation does (the shell
	// sets it); false when the person's role does not see it. Nil when
	// there is no shell, as in a screen's tests.
	Open func(id string) bool
	// RegistryAnswered, when set, is told from background work how each
	// ask of the registry's change feed went (the key-state model asks
	// every half second): nil when the registry answered, else why not.
	// The shell's status line says so when the registry goes away in the
	// middle of a session and when it is back.
	RegistryAnswered func(err error)

	devices sync.Mutex
	closed  atomic.Bool

	statesOnce sync.Once
	states     *keys.Tracker
	statesMu   sync.Mutex
	pending    []func([]keys.State) // subscribed before the key service was there
	background bool                 // the window is not in the foreground (SetForeground)
	headMu     sync.Mutex
	head       string
}

// States is the one model of the attached keys' state (app/keys.Tracker)
// that screens subscribe to: the live key list, each key's PIV state read
// again every half second, the registry change feed, and what an action
// on a key in any screen leaves (call its Refresh after one). The first
// call starts it; it runs until the window closes. Nil without Keys.
func (e *Env) States() *keys.Tracker {
	if e.Keys == nil {
		return nil
	}
	e.statesOnce.Do(func() {
		t := keys.NewTracker(keys.TrackerConfig{Service: e.Keys, Hold: e.HoldKeys, RegistryHead: e.registryHead})
		ctx := e.Ctx
		if ctx == nil {
			ctx = context.Background()
		}
		e.statesMu.Lock()
		for _, fn := range e.pending {
			t.Subscribe(fn)
		}
		e.pending = nil
		e.states = t
		if e.background {
			t.SetActive(false)
		}
		e.statesMu.Unlock()
		if e.Feed != nil {
			e.Feed.Subscribe(t.SetKeys)
		}
		go t.Run(ctx)
	})
	return e.states
}

// SetForeground says whether the window is in the foreground (Fyne's
// lifecycle: the window has the keyboard focus). In the background the key
// state model stops its timed looks at the keys and the registry
// (keys.Tracker.SetActive); back in the foreground it looks at once.
func (e *Env) SetForeground(fg bool) {
	e.statesMu.Lock()
	e.background = !fg
	t := e.states
	e.statesMu.Unlock()
	if t != nil {
		t.SetActive(fg)
	}
}

// SubscribeStates calls fn on the UI goroutine with the key states that
// changed (see States). Call it from the UI goroutine. A screen built
// before the key service is there (the window is shown before the keys
// are looked for) is subscribed once it is.
func (e *Env) SubscribeStates(fn func([]keys.State)) {
	sub := func(changed []keys.State) {
		if e.closed.Load() {
			return
		}
		Do(func() { fn(changed) })
	}
	if t := e.States(); t != nil {
		t.Subscribe(sub)
		return
	}
	e.statesMu.Lock()
	defer e.statesMu.Unlock()
	if e.states != nil {
		e.states.Subscribe(sub)
		return
	}
	e.pending = append(e.pending, sub)
}

// registryHead is the registry change feed's head (GET /v1/changes, open
// to admins and helpdesk). A person with the self role cannot read the
// feed: their screens ask the registry again when shown and on Ctrl+R.
// SetRole sets the person's role and user id. Call it on the UI goroutine:
// the key-state model's polling reads the role too.
func (e *Env) SetRole(role Role, user string) {
	e.headMu.Lock()
	defer e.headMu.Unlock()
	e.Role, e.User = role, user
}

func (e *Env) registryHead(ctx context.Context) (string, error) {
	if e.Registry == nil {
		return "", ErrNoRegistry
	}
	e.headMu.Lock()
	self := e.Role == Self
	e.headMu.Unlock()
	if self {
		return "", errors.New("the change feed is not open to the self role")
	}
	c, err := e.Registry(ctx)
	if err != nil {
		return "", err
	}
	e.headMu.Lock()
	after := e.head
	e.headMu.Unlock()
	ch, err := c.Changes(ctx, after, 1)
	if ctx.Err() == nil && e.RegistryAnswered != nil {
		e.RegistryAnswered(err)
	}
	if err != nil {
		return "", err
	}
	e.headMu.Lock()
	e.head = ch.Head
	e.headMu.Unlock()
	return ch.Head, nil
}

// MarkClosed tells the Env that Fyne's loop has ended (the shell calls it
// when the main window's run returns): background work that ends later
// has no UI goroutine to report to, and Go then drops its done call.
func (e *Env) MarkClosed() { e.closed.Store(true) }

// HoldKeys serialises this app's conversations with keys: a screen holds
// it for the length of one device operation (a status read, a PIN change,
// a whole verification) and calls the function it returns when done. Two
// clients talking to one key at once can take each other's answers (a
// practice key's FIDO interface is a single stream) or find the card
// held.
func (e *Env) HoldKeys() (release func()) {
	e.devices.Lock()
	return e.devices.Unlock
}

// Can says whether the person's role is one of roles.
func (e *Env) Can(roles ...Role) bool {
	for _, r := range roles {
		if r == e.Role {
			return true
		}
	}
	return false
}

// Go runs work off the UI goroutine with a context that ends when the
// window closes or cancel is called, then calls done with work's error on
// the UI goroutine (through fyne.Do). done may be nil.
func (e *Env) Go(work func(ctx context.Context) error, done func(error)) (cancel context.CancelFunc) {
	parent := e.Ctx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	go func() {
		err := work(ctx)
		cancel()
		if done != nil && !e.closed.Load() {
			Do(func() { done(err) })
		}
	}()
	return cancel
}

// Screen is one entry of the app's navigation.
type Screen struct {
	// ID is stable ("keys", "enrol"); tests and keyboard shortcuts use it.
	ID    string
	Title string
	Icon  fyne.Resource
	// Roles are the roles that see the screen; none means everyone.
	Roles []Role
	// Make builds the screen's content once, on the UI goroutine. It must
	// not block: anything slow goes through env.Go.
	Make func(env *Env) fyne.CanvasObject
}

// Revisited is a screen's content that wants to know each time the shell
// shows it again after another screen (what it shows may have changed
// meanwhile: a key enrolled on the Enrol screen is registered now). The
// shell calls Shown on the UI goroutine; it must not block.
type Revisited interface {
	Shown()
}

// Visible says whether the screen is shown to env's role.
func (s Screen) Visible(env *Env) bool {
	return len(s.Roles) == 0 || env.Can(s.Roles...)
}

// KeyFeed holds the attached keys as the shell's watcher last saw them and
// tells subscribers of each change on the UI goroutine.
type KeyFeed struct {
	mu   sync.Mutex
	keys []device.Key
	subs []func([]device.Key)
	seen bool
	// choosers are told when a screen hands a key to another (Choose).
	choosers []func(serial uint32)
}

// OnChoose calls fn on the UI goroutine whenever a screen asks the key
// pickers to choose a key (Choose). Call it from the UI goroutine.
func (f *KeyFeed) OnChoose(fn func(serial uint32)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.choosers = append(f.choosers, fn)
}

// Choose asks the screens that pick keys to choose the key with serial:
// a screen that hands over to another ("Verify now" after an enrolment)
// calls it after Env.Open. Call it from the UI goroutine.
func (f *KeyFeed) Choose(serial uint32) {
	f.mu.Lock()
	cs := append([]func(uint32){}, f.choosers...)
	f.mu.Unlock()
	for _, fn := range cs {
		fn(serial)
	}
}

// Current returns the keys last published (nil before the first list).
func (f *KeyFeed) Current() []device.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]device.Key(nil), f.keys...)
}

// Subscribe calls fn on the UI goroutine with every new list, and once now
// with the current one if a list has been published. Call it from the UI
// goroutine.
func (f *KeyFeed) Subscribe(fn func([]device.Key)) {
	f.mu.Lock()
	f.subs = append(f.subs, fn)
	cur, seen := append([]device.Key(nil), f.keys...), f.seen
	f.mu.Unlock()
	if seen {
		fn(cur)
	}
}

// Publish records a new list and schedules the subscribers on the UI
// goroutine. Safe from any goroutine.
func (f *KeyFeed) Publish(keys []device.Key) {
	f.mu.Lock()
	f.keys = append([]device.Key(nil), keys...)
	f.seen = true
	subs := append([](func([]device.Key)){}, f.subs...)
	f.mu.Unlock()
	list := append([]device.Key(nil), keys...)
	Do(func() {
		for _, fn := range subs {
			fn(list)
		}
	})
}

// Practice says whether the app runs on practice-mode virtual keys.
func (e *Env) Practice() bool { return e.Keys != nil && e.Keys.Practice() }

// Reinsert has the key with serial removed and inserted again, as a FIDO2
// reset needs: a practice key is power-cycled through its control socket
// (what a person does by replugging it); for a real key ask has already
// told the person, and Reinsert waits until the key has left and come
// back. It returns when the key is back or ctx ends.
func (e *Env) Reinsert(ctx context.Context, serial uint32) error {
	if e.SimDir != "" && e.Practice() {
		reply, err := sim.Control(e.SimDir, "power-cycle "+strconv.FormatUint(uint64(serial), 10))
		if err != nil {
			return err
		}
		if strings.HasPrefix(reply, "error") {
			return errors.New(strings.TrimSpace(strings.TrimPrefix(reply, "error: ")))
		}
		return nil
	}
	_, err := e.Keys.WaitReturn(ctx, serial)
	return err
}

// Count is n with its noun, singular for one ("1 key", "3 keys", "0 keys").
func Count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
