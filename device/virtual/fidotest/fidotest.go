// Package fidotest starts a virtual FIDO2 key on its pseudo-terminal
// transport for tests, and keeps a trace of every CTAP exchange so a failing
// test can show the exchange that broke.
package fidotest

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/ctap"
	"github.com/keydesk/keydesk/device/virtual/ptyhid"
)

// Key is a running virtual key reachable by path.
type Key struct {
	Key   *virtual.Key
	Auth  *ctap.Authenticator
	Dev   *ptyhid.Device
	Path  string
	trace *Trace
}

// Trace records CTAP requests and responses.
type Trace struct {
	mu    sync.Mutex
	lines []string
}

func (tr *Trace) add(req, resp []byte) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	// Requests carry encrypted PIN material at most, never a PIN in clear.
	tr.lines = append(tr.lines, fmt.Sprintf("-> %s\n<- %s", hex.EncodeToString(req), hex.EncodeToString(resp)))
}

// String is the whole trace, one exchange per two lines, hex.
func (tr *Trace) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return strings.Join(tr.lines, "\n")
}

// Start starts a fresh virtual key (serial) on a pseudo-terminal whose
// stable path is a link in a test directory. On failure the test log gets
// the CTAP trace. Everything stops when the test ends.
func Start(t testing.TB, serial uint32) *Key {
	t.Helper()
	vk := virtual.NewKey(virtual.DefaultIdentity(serial))
	auth, err := ctap.New(vk)
	if err != nil {
		t.Fatal(err)
	}
	tr := &Trace{}
	auth.Trace = tr.add
	link := filepath.Join(t.TempDir(), "fido")
	dev, err := ptyhid.Open(vk, auth, link)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dev.Close()
		if t.Failed() {
			t.Logf("CTAP exchanges with %s (command byte first, status byte first):\n%s", link, tr)
		}
	})
	return &Key{Key: vk, Auth: auth, Dev: dev, Path: link, trace: tr}
}

// Trace returns the key's exchange log.
func (k *Key) Trace() *Trace { return k.trace }

// Clock is a settable clock for virtual.Key.SetClock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now reads the clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
