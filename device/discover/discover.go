// Package discover finds the YubiKeys attached to the machine over PC/SC and
// FIDO HID, merges each key's interfaces into one entry by serial, and
// watches for keys coming and going: pcsc-lite's "\\?PnP?\Notification"
// pseudo-reader tells when readers appear or vanish, each reader's state
// when its card does, and FIDO devices are polled at a modest rate.
package discover

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ebfe/scard"
	"github.com/keys-pub/go-libfido2"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/mgmt"
	"github.com/keydesk/keydesk/device/pcsc"
)

// pnp is pcsc-lite's pseudo-reader for reader arrival and removal.
const pnp = `\\?PnP?\Notification`

// Options says where to look besides the system's HID devices.
type Options struct {
	// FIDOGlobs are extra FIDO device paths (globs), such as practice-mode
	// keys' pseudo-terminals. A missing path means the key is not attached.
	FIDOGlobs []string
	// NoSystemHID skips enumerating the system's hidraw devices.
	NoSystemHID bool
	// FIDOInfo reads a FIDO device's serial and firmware so its entry can be
	// merged with its PC/SC interface; nil leaves FIDO entries unmerged.
	FIDOInfo func(ctx context.Context, path string) (serial uint32, fw device.Version, ok bool, err error)
	// Only limits the scan to one kind of interface (PCSC or FIDO), for a
	// caller that will use only that one; zero scans both.
	Only Interface
	// Poll is how often FIDO devices are polled and the longest a PC/SC
	// wait lasts; zero means 200 ms, which keeps a change visible within
	// half a second.
	Poll time.Duration
}

// Interface is a kind of interface a key is reached through.
type Interface uint8

const (
	PCSC Interface = 1 << iota // smart-card reader (CCID): PIV, management
	FIDO                       // FIDO HID device
)

func (o Options) scans(i Interface) bool { return o.Only == 0 || o.Only&i != 0 }

func (o Options) poll() time.Duration {
	if o.Poll > 0 {
		return o.Poll
	}
	return 200 * time.Millisecond
}

// Scanner remembers what it read from each interface, so a rescan after a
// change talks only to the interface that changed.
type Scanner struct {
	opts Options

	mu   sync.Mutex
	pcsc map[string]cached // reader → key, valid while the reader's event count holds
	fido map[string]*device.Key
}

type cached struct {
	events uint32
	key    *device.Key
	reads  int // reads at this event count that left the serial unknown
}

// unknownRereads is how many times a card whose management application did
// not answer is read again at the same event count: a card pcscd has only
// just powered up (after an insertion, or under a restarted pcscd) can fail
// its first SELECT, while an old YubiKey without the application never
// answers and is then left alone until its next card event.
const unknownRereads = 5

// NewScanner returns a scanner.
func NewScanner(opts Options) *Scanner {
	return &Scanner{opts: opts, pcsc: map[string]cached{}, fido: map[string]*device.Key{}}
}

// List returns every attached key once.
func List(ctx context.Context, opts Options) ([]device.Key, error) {
	return NewScanner(opts).Scan(ctx)
}

// Scan lists the attached keys, merged by serial and sorted by serial.
func (s *Scanner) Scan(ctx context.Context) ([]device.Key, error) {
	if !s.opts.scans(PCSC) {
		return s.scan(ctx, nil)
	}
	sc, release, err := pcsc.EstablishContext()
	if err != nil && noReaders(err) {
		return s.scan(ctx, nil)
	}
	if err != nil {
		return nil, err
	}
	defer release()
	states, err := readerStates(sc)
	if err != nil {
		return nil, err
	}
	return s.scan(ctx, states)
}

// readerStates asks PC/SC for every reader's current state.
func readerStates(sc *scard.Context) ([]scard.ReaderState, error) {
	readers, err := sc.ListReaders()
	if errors.Is(err, scard.ErrNoReadersAvailable) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rs := make([]scard.ReaderState, len(readers))
	for i, r := range readers {
		rs[i] = scard.ReaderState{Reader: r, CurrentState: scard.StateUnaware}
	}
	if len(rs) > 0 {
		if err := pcsc.GetStatusChange(sc, rs, 0); err != nil && !errors.Is(err, scard.ErrTimeout) {
			return nil, err
		}
	}
	return rs, nil
}

func (s *Scanner) scan(ctx context.Context, states []scard.ReaderState) ([]device.Key, error) {
	var keys []*device.Key
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, st := range states {
		if st.Reader == pnp || st.EventState&scard.StatePresent == 0 {
			continue
		}
		seen[st.Reader] = true
		events := uint32(st.EventState) >> 16
		c, ok := s.pcsc[st.Reader]
		if ok && c.events == events && c.key != nil && (!c.key.SerialUnknown || c.reads >= unknownRereads) {
			k := *c.key
			keys = append(keys, &k)
			continue
		}
		reads := 0
		if ok && c.events == events {
			reads = c.reads
		}
		k, err := mgmt.Read(ctx, st.Reader)
		if err != nil {
			// Removed between the listing and the read, or held by another
			// program: list it without a serial and try again next time.
			if errors.Is(err, device.ErrKeyRemoved) {
				continue
			}
			k = &device.Key{Reader: st.Reader, SerialUnknown: true, Transports: device.TransportUSB}
			keys = append(keys, k)
			continue
		}
		if k.SerialUnknown {
			reads++
		}
		s.pcsc[st.Reader] = cached{events: events, key: k, reads: reads}
		kc := *k
		keys = append(keys, &kc)
	}
	for r := range s.pcsc {
		if !seen[r] {
			delete(s.pcsc, r)
		}
	}

	var paths []string
	if s.opts.scans(FIDO) {
		paths = s.fidoPaths()
	}
	for p := range s.fido {
		if !slices.Contains(paths, p) {
			delete(s.fido, p)
		}
	}
	for _, p := range paths {
		f, ok := s.fido[p]
		if !ok {
			f = &device.Key{FIDOPath: p, SerialUnknown: true, Transports: device.TransportUSB}
			if s.opts.FIDOInfo != nil {
				if serial, fw, ok, err := s.opts.FIDOInfo(ctx, p); err == nil && ok {
					f.Serial, f.SerialUnknown, f.Firmware = serial, false, fw
				} else if err != nil {
					continue // vanished while being read
				}
			}
			s.fido[p] = f
		}
		merged := false
		if !f.SerialUnknown {
			for _, k := range keys {
				if !k.SerialUnknown && k.Serial == f.Serial {
					k.FIDOPath, merged = p, true
					break
				}
			}
		}
		if !merged {
			k := *f
			k.Virtual = isVirtualPath(p, s.opts.FIDOGlobs)
			keys = append(keys, &k)
		}
	}
	out := make([]device.Key, len(keys))
	for i, k := range keys {
		out[i] = *k
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].SerialUnknown != out[j].SerialUnknown {
			return !out[i].SerialUnknown
		}
		if out[i].Serial != out[j].Serial {
			return out[i].Serial < out[j].Serial
		}
		return out[i].Reader+out[i].FIDOPath < out[j].Reader+out[j].FIDOPath
	})
	return out, nil
}

func isVirtualPath(p string, globs []string) bool {
	for _, g := range globs {
		if ok, _ := filepath.Match(g, p); ok {
			return true
		}
	}
	return false
}

// fidoPaths lists FIDO HID devices: the system's (libfido2's manifest of
// hidraw devices) and any matching the extra globs.
func (s *Scanner) fidoPaths() []string {
	var paths []string
	if !s.opts.NoSystemHID {
		if locs, err := libfido2.DeviceLocations(); err == nil {
			for _, l := range locs {
				if !device.IsPlatformFIDOPath(l.Path) {
					paths = append(paths, l.Path)
				}
			}
		}
	}
	for _, g := range s.opts.FIDOGlobs {
		m, _ := filepath.Glob(g)
		paths = append(paths, m...)
	}
	sort.Strings(paths)
	return slices.Compact(paths)
}

// Watch sends the list of attached keys on the returned channel: first at
// once, then whenever it changes, until ctx ends. A slow receiver gets the
// latest list, never a backlog. When pcscd goes away (restarted, or
// stopped), every PC/SC context of the old daemon is dead: Watch
// establishes a new one, trying again each poll interval, and goes on
// listing from the new daemon.
func Watch(ctx context.Context, opts Options) (<-chan []device.Key, error) {
	sc, err := scard.EstablishContext()
	if err != nil && noReaders(err) {
		return pollWatch(ctx, opts), nil
	}
	if err != nil {
		return nil, pcsc.MapError(err)
	}
	s := NewScanner(opts)
	out := make(chan []device.Key, 1)
	var mu sync.Mutex // guards sc against the cancelling AfterFunc
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		sc.Cancel()
	})
	// polling: once pcscd has gone away under the watch, it checks every
	// poll interval instead of waiting for changes: with pcsc-lite 1.9.9, a
	// blocking wait on the restarted daemon can stall far beyond its
	// timeout (SCardCancel does not end it), while a zero-timeout check
	// answers at once.
	polling := false
	// renew replaces sc with a context of the daemon now running; release
	// says whether the old one may be released (not while a call is in it).
	renew := func(release bool) {
		polling = true
		n, err := scard.EstablishContext()
		if err != nil {
			return // no daemon yet: the next round tries again
		}
		mu.Lock()
		old := sc
		sc = n
		mu.Unlock()
		if release {
			old.Release()
		}
		if ctx.Err() != nil {
			n.Cancel()
		}
	}
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(opts.poll()):
		}
	}
	go func() {
		defer close(out)
		defer func() { sc.Release() }()
		defer stop()
		var last []device.Key
		send := func(keys []device.Key) {
			if last != nil && equal(last, keys) {
				return
			}
			last = keys
			select {
			case <-out: // drop a list nobody read
			default:
			}
			out <- keys
		}
		var states []scard.ReaderState
		for ctx.Err() == nil {
			cur, err := readerStates(sc)
			if err != nil {
				if ctx.Err() == nil {
					pause() // pcscd restarting: try again shortly, on a new context
					renew(true)
				}
				continue
			}
			states = cur
			keys, err := s.scan(ctx, states)
			if err == nil {
				send(keys)
			}
			// Wait for a PC/SC change (a reader or card coming or going) or
			// the FIDO poll interval, whichever is first.
			wait := append([]scard.ReaderState{{Reader: pnp, CurrentState: scard.StateUnaware}}, states...)
			if err := pcsc.GetStatusChange(sc, wait[:1], 0); err != nil {
				wait = wait[1:] // no PnP support: readers are rechecked every poll
			} else {
				wait[0].CurrentState = wait[0].EventState &^ scard.StateChanged
			}
			for i := range wait {
				if wait[i].Reader != pnp {
					wait[i].CurrentState = wait[i].EventState &^ scard.StateChanged
				}
			}
			if len(wait) == 0 {
				pause()
				continue
			}
			if polling {
				pause()
				continue
			}
			// Bound the wait ourselves too: a wait that overruns its
			// timeout by seconds is on a daemon that no longer answers it;
			// its context is abandoned, not released (releasing it while a
			// call is in it is not safe), and the watch polls from then on.
			res := make(chan error, 1)
			waiting := sc
			go func() { res <- pcsc.GetStatusChange(waiting, wait, opts.poll()) }()
			select {
			case err = <-res:
			case <-time.After(opts.poll() + 2*time.Second):
				renew(false)
				continue
			}
			if errors.Is(err, scard.ErrCancelled) && ctx.Err() != nil {
				return
			}
		}
	}()
	return out, nil
}

func equal(a, b []device.Key) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// pollWatch is Watch on a desk whose smart-card service is not running
// (noReaders): a full Scan every poll interval, which picks up PC/SC again
// once the service starts with the first reader.
func pollWatch(ctx context.Context, opts Options) <-chan []device.Key {
	s := NewScanner(opts)
	out := make(chan []device.Key, 1)
	go func() {
		defer close(out)
		var last []device.Key
		for ctx.Err() == nil {
			if keys, err := s.Scan(ctx); err == nil && (last == nil || !equal(last, keys)) {
				last = keys
				select {
				case <-out: // drop a list nobody read
				default:
				}
				out <- keys
			}
			select {
			case <-ctx.Done():
			case <-time.After(opts.poll()):
			}
		}
	}()
	return out
}
