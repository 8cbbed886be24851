// Package validity is a login server's local replica of the registry's
// validity view (docs/registry.md, "Change feed and validity view"): which
// credentials each user may sign in with right now.
//
// A Replica loads the view once (GET /v1/validity), then follows the change
// feed (GET /v1/changes after its cursor) and re-reads only the users a
// change set touches (GET /v1/validity?user_id=). It answers Allowed and
// Credentials from memory, without locks: readers load one immutable view
// through an atomic pointer. It keeps its view and cursor in a file, so a
// restart resumes from the cursor instead of reloading everything. When the
// registry cannot be reached it keeps answering from the last view it had
// and says how old that view is; past Options.StaleAfter it is degraded,
// and Options.Policy says what it answers then.
//
// It also reports failed sign-ins to the registry as lockout signals
// (POST /v1/signals/lockout), from a bounded queue kept on disk, each with
// its own Idempotency-Key, so each failure is recorded once however often
// it is retried.
//
// Its token has the role authserver. docs/relying-party.md describes how a
// login server uses it, and the HTTP contract for other languages.
package validity

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keydesk/keydesk/registry"
)

// FailMode says what a degraded replica answers for a class of credential.
type FailMode string

const (
	// FailClosed refuses.
	FailClosed FailMode = "closed"
	// FailOpen accepts.
	FailOpen FailMode = "open"
)

// Policy is the operator's choice of what a degraded replica answers. An
// empty field takes its default.
type Policy struct {
	// Unknown applies to a credential the replica does not hold as valid
	// for the user. Default FailClosed. FailOpen accepts credentials the
	// registry may have added while the replica could not see it; the
	// login server then has no public key from the replica to check the
	// signature with, so it only makes sense with another source of keys.
	Unknown FailMode
	// KnownValid applies to a credential the replica holds as valid.
	// Default FailOpen: keep letting people in with the keys they had.
	// FailClosed refuses everyone once the replica is degraded.
	KnownValid FailMode
}

func (p Policy) withDefaults() Policy {
	if p.Unknown == "" {
		p.Unknown = FailClosed
	}
	if p.KnownValid == "" {
		p.KnownValid = FailOpen
	}
	return p
}

// Options configure a Replica.
type Options struct {
	// URL is the registry's base URL; Token an authserver token.
	URL, Token string
	// Dir holds the snapshot (validity.snap) and the lockout-signal queue
	// (signals.db); created with mode 0700.
	Dir string
	// HTTPClient defaults to one whose requests time out after 30 s.
	HTTPClient *http.Client
	// PollInterval is the time between catch-up rounds in Run (default 1 s).
	PollInterval time.Duration
	// StaleAfter is how long after its last successful sync the replica
	// reports itself degraded (default 5 minutes).
	StaleAfter time.Duration
	// Policy is what a degraded replica answers.
	Policy Policy
	// PageSize is the change-feed page size (default 1000, at most 10000).
	PageSize int
	// RefreshLimit is the most users one page may touch before the replica
	// reloads the whole view instead of re-reading each (default 256).
	RefreshLimit int
	// CompactAt is how many changed users the overlay holds before the
	// view is rebuilt into one arena (default 4096).
	CompactAt int
	// PersistEvery is the least time between snapshot writes after changes
	// (default 30 s); Close always writes one.
	PersistEvery time.Duration
	// MaxQueue bounds the lockout-signal queue (default 10000); Report
	// refuses with ErrQueueFull beyond it.
	MaxQueue int
	// BackoffMin and BackoffMax bound the delay between delivery attempts
	// of lockout signals while the registry refuses or cannot be reached
	// (defaults 250 ms and 30 s; it doubles after each failure).
	BackoffMin, BackoffMax time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 5 * time.Minute
	}
	o.Policy = o.Policy.withDefaults()
	if o.PageSize <= 0 || o.PageSize > 10000 {
		o.PageSize = 1000
	}
	if o.RefreshLimit <= 0 {
		o.RefreshLimit = 256
	}
	if o.CompactAt <= 0 {
		o.CompactAt = 4096
	}
	if o.PersistEvery <= 0 {
		o.PersistEvery = 30 * time.Second
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 10000
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 250 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Decision is the replica's answer for one sign-in.
type Decision struct {
	// Allowed: the login server may accept the credential (once its
	// signature checks out).
	Allowed bool
	// Known: the replica holds the credential as valid for the user.
	Known bool
	// Degraded: the replica's view is older than Options.StaleAfter, so
	// Allowed came from Options.Policy.
	Degraded bool
	// Age is the time since the last successful sync (math.MaxInt64 when
	// there never was one).
	Age time.Duration
}

// Status describes the replica's state.
type Status struct {
	Cursor      int64         `json:"cursor"`      // the last change set applied
	LastSync    time.Time     `json:"last_sync"`   // start of the last sync that reached the feed's head
	Age         time.Duration `json:"age"`         // since LastSync
	Degraded    bool          `json:"degraded"`    // Age > StaleAfter
	LastError   string        `json:"last_error"`  // of the last failed sync, "" after a good one
	Users       int           `json:"users"`       // with at least one valid credential
	Credentials int           `json:"credentials"` // valid credentials
	FullLoads   int           `json:"full_loads"`  // whole-view loads since Open
	Resumed     bool          `json:"resumed"`     // Open loaded a snapshot from Dir
	Queued      int           `json:"queued"`      // lockout signals not yet delivered
	Delivered   int           `json:"delivered"`   // lockout signals delivered since Open
	Rejected    int           `json:"rejected"`    // lockout signals the registry refused for good
}

// Replica is a local copy of the validity view. Its read methods are safe
// for any number of goroutines; Sync and Run are meant for one.
type Replica struct {
	opt  Options
	api  *api
	view atomic.Pointer[view]
	// lastSync is the start of the last sync that reached head (nil:
	// never). With the default clock it carries a monotonic reading, so
	// age costs one monotonic clock read (time.Since).
	lastSync atomic.Pointer[time.Time]
	mono     bool // opt.Now is time.Now

	mu          sync.Mutex // held by Sync: the writer's state below
	learned     *learned
	rps         *rpTable
	lastPersist time.Time
	dirty       bool

	stat      sync.Mutex // the fields below, which Status reads during a sync
	lastErr   string
	fullLoads int
	resumed   bool

	sig *signalQueue
}

// ErrNotReady: the replica has no view yet (no snapshot and no sync).
var ErrNotReady = errors.New("validity replica has no view yet")

// Open loads the replica's snapshot from opt.Dir when there is one (without
// contacting the registry) and opens its lockout-signal queue. Call Run (or
// Sync) to bring it up to date.
func Open(opt Options) (*Replica, error) {
	mono := opt.Now == nil
	opt = opt.withDefaults()
	if opt.Dir == "" {
		return nil, errors.New("validity replica needs a directory")
	}
	if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating replica directory: %w", err)
	}
	r := &Replica{opt: opt, api: &api{base: opt.URL, token: opt.Token, hc: opt.HTTPClient}, learned: &learned{keyOwner: map[string]string{}, credKey: map[string]string{}}, rps: &rpTable{}, mono: mono}
	v, l, last, err := readSnapshot(snapshotFile(opt.Dir))
	switch {
	case err == nil:
		r.view.Store(v)
		r.learned = l
		r.rps = (&rpTable{names: v.rps}).clone()
		if last != 0 {
			r.setLastSync(time.Unix(0, last))
		}
		r.resumed = true
	case errors.Is(err, os.ErrNotExist):
	case errors.Is(err, errCorrupt):
		// A damaged snapshot is not trusted: the next sync loads the view.
		r.lastErr = err.Error()
	default:
		return nil, fmt.Errorf("reading validity snapshot: %w", err)
	}
	if r.sig, err = openSignalQueue(opt, r.api); err != nil {
		return nil, err
	}
	return r, nil
}

// Allowed decides whether userID may sign in with the FIDO2 credential
// credentialID now. It reads memory only and never blocks.
func (r *Replica) Allowed(userID string, credentialID []byte) Decision {
	d := Decision{Age: r.age()}
	if v := r.view.Load(); v != nil {
		if rec := v.record(userID); rec != nil {
			d.Known = hasCredential(rec, credentialID)
		}
	}
	d.Degraded = d.Age > r.opt.StaleAfter
	switch {
	case !d.Degraded:
		d.Allowed = d.Known
	case d.Known:
		d.Allowed = r.opt.Policy.KnownValid == FailOpen
	default:
		d.Allowed = r.opt.Policy.Unknown == FailOpen
	}
	return d
}

func (r *Replica) age() time.Duration {
	last := r.lastSync.Load()
	if last == nil {
		return math.MaxInt64
	}
	if r.mono {
		return time.Since(*last)
	}
	return r.opt.Now().Sub(*last)
}

// setLastSync records t (a wall time, perhaps read from the snapshot) as
// the last successful sync; with the default clock it is given a monotonic
// reading first.
func (r *Replica) setLastSync(t time.Time) {
	if r.mono {
		now := time.Now()
		t = now.Add(t.Sub(now.Round(0)))
	}
	r.lastSync.Store(&t)
}

// lastSyncNanos is the last successful sync as unix nanoseconds, 0 for none.
func (r *Replica) lastSyncNanos() int64 {
	if last := r.lastSync.Load(); last != nil {
		return last.UnixNano()
	}
	return 0
}

// Credentials lists userID's valid credentials (FIDO2 and PIV) as the
// replica holds them, whatever its age (check Status or Allowed for that).
func (r *Replica) Credentials(userID string) []registry.ValidCredential {
	v := r.view.Load()
	if v == nil {
		return nil
	}
	rec := v.record(userID)
	if rec == nil {
		return nil
	}
	u, err := decodeRecord(rec, v.rps)
	if err != nil {
		return nil
	}
	return u.Creds
}

// Snapshot returns the whole view the replica holds, ordered like
// GET /v1/validity (by user, key, kind), with the cursor as Version.
func (r *Replica) Snapshot() (registry.Validity, error) {
	v := r.view.Load()
	if v == nil {
		return registry.Validity{}, ErrNotReady
	}
	out := registry.Validity{Version: v.cursor, Credentials: []registry.ValidCredential{}}
	err := v.each(func(_ string, rec []byte) error {
		u, err := decodeRecord(rec, v.rps)
		out.Credentials = append(out.Credentials, u.Creds...)
		return err
	})
	sortRows(out.Credentials)
	return out, err
}

// Status reports the replica's state.
func (r *Replica) Status() Status {
	r.stat.Lock()
	s := Status{LastError: r.lastErr, FullLoads: r.fullLoads, Resumed: r.resumed}
	r.stat.Unlock()
	if v := r.view.Load(); v != nil {
		s.Cursor = v.cursor
		s.Users, s.Credentials = v.users, v.creds
	}
	if last := r.lastSync.Load(); last != nil {
		s.LastSync = last.Round(0).UTC()
	}
	s.Age = r.age()
	s.Degraded = s.Age > r.opt.StaleAfter
	s.Queued, s.Delivered, s.Rejected = r.sig.counts()
	return s
}

// Run keeps the replica current and delivers lockout signals until ctx
// ends, then writes the snapshot. Failed syncs are retried every
// PollInterval; their error is in Status.
func (r *Replica) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.sig.run(ctx); close(done) }()
	t := time.NewTicker(r.opt.PollInterval)
	defer t.Stop()
	for {
		r.Sync(ctx)
		select {
		case <-ctx.Done():
			<-done
			return r.Persist()
		case <-t.C:
		}
	}
}

// Close writes the snapshot and closes the signal queue.
func (r *Replica) Close() error {
	err := r.Persist()
	return errors.Join(err, r.sig.close())
}

// Persist writes the snapshot now if the view changed since the last write.
func (r *Replica) Persist() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.persistLocked(true)
}

func (r *Replica) persistLocked(force bool) error {
	v := r.view.Load()
	if v == nil || !r.dirty {
		return nil
	}
	if !force && r.opt.Now().Sub(r.lastPersist) < r.opt.PersistEvery {
		return nil
	}
	if err := writeSnapshot(snapshotFile(r.opt.Dir), v, r.learned, r.lastSyncNanos()); err != nil {
		return err
	}
	r.dirty, r.lastPersist = false, r.opt.Now()
	return nil
}
