package keys_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/device/virtual/sim"
)

// TestTracker: the key-state model publishes a key when listed, a wrong
// PIN typed through another connection and a move of the registry's head
// each as a new version, and nothing for a listing that changes nothing;
// a key listed again after leaving with the same state keeps its version.
func TestTracker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	y, svc := plug(t, ctx, sim.FirstSerial+40)
	k, err := svc.Find(ctx, y.Serial())
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	head := "7"
	tr := keys.NewTracker(keys.TrackerConfig{Service: svc, Interval: 100 * time.Millisecond,
		RegistryHead: func(context.Context) (string, error) { mu.Lock(); defer mu.Unlock(); return head, nil }})
	got := make(chan keys.State, 32)
	tr.Subscribe(func(c []keys.State) {
		for _, s := range c {
			got <- s
		}
	})
	next := func(what string) keys.State {
		t.Helper()
		select {
		case s := <-got:
			return s
		case <-ctx.Done():
			t.Fatalf("no state published for %s", what)
		}
		return keys.State{}
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case s := <-got:
			t.Fatalf("%s published version %d", what, s.Version)
		case <-time.After(500 * time.Millisecond): // five passes
		}
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go tr.Run(rctx)
	tr.SetKeys([]device.Key{k})
	first := next("the key listed")
	if first.Report == nil || first.Report.PIV == nil || first.Report.PIV.PINRetries != 3 || first.RegistryHead != "7" {
		t.Fatalf("first state: %+v", first)
	}
	quiet("nothing changing")

	// Another connection types a wrong PIN.
	if err := pivkey.Open(k.Reader, k.Serial).ChangePIN(ctx, "999999", "13572468"); err == nil {
		t.Fatal("a wrong PIN was taken")
	}
	s := next("a wrong PIN")
	if s.Version <= first.Version || s.Report.PIV.PINRetries != 2 {
		t.Fatalf("after a wrong PIN: version %d (was %d), %d tries", s.Version, first.Version, s.Report.PIV.PINRetries)
	}

	// The registry moves on.
	mu.Lock()
	head = "8"
	mu.Unlock()
	r := next("the registry's head moving")
	if r.Version <= s.Version || r.RegistryHead != "8" {
		t.Fatalf("after the registry moved: version %d (was %d), head %q", r.Version, s.Version, r.RegistryHead)
	}

	// The same listing again: nothing new. Gone and back unchanged: the
	// same version.
	tr.SetKeys([]device.Key{k})
	quiet("the same listing again")
	tr.SetKeys(nil)
	if _, ok := tr.Get(k.Serial); ok {
		t.Fatal("a key no longer listed still has a state")
	}
	tr.SetKeys([]device.Key{k})
	if b := next("the key listed again"); b.Version != r.Version {
		t.Fatalf("the key back unchanged: version %d, was %d", b.Version, r.Version)
	}
	quiet("the key back, nothing changing")

	// A correct PIN gives the tries back; Refresh sees it at once.
	if err := pivkey.Open(k.Reader, k.Serial).ChangePIN(ctx, "123456", "123456"); err != nil {
		t.Fatal(err)
	}
	f, ok := tr.Refresh(ctx, k.Serial)
	if !ok || f.Report.PIV.PINRetries != 3 || f.Version <= r.Version {
		t.Fatalf("Refresh after a correct PIN: %+v", f)
	}

	// A restart seen by an action before the hotplug watcher: the watcher
	// still lists the key by no smart-card reader. Through the listing
	// the action saw (Seen), reads after the action find the key as it
	// was, however many there are, and publish no change.
	tr.SetKeys([]device.Key{{Serial: k.Serial, Firmware: k.Firmware, Virtual: k.Virtual}})
	tr.Seen(k)
	for i := 0; i < 5; i++ {
		g, ok := tr.Refresh(ctx, k.Serial)
		if !ok || g.Report.PIV == nil || g.Version != f.Version {
			t.Fatalf("read %d after a restart seen first by an action: version %d (was %d), PIV %+v", i, g.Version, f.Version, g.Report.PIV)
		}
	}
}

// TestTrackerRestsInTheBackground: while nobody looks (SetActive false)
// the timed looks stop, no key and no registry is asked; looking again
// starts a pass at once, and the timed looks go on.
func TestTrackerRestsInTheBackground(t *testing.T) {
	asked := make(chan struct{}, 16)
	tick := make(chan time.Time)
	tr := keys.NewTrackerTicking(keys.TrackerConfig{RegistryHead: func(context.Context) (string, error) {
		asked <- struct{}{}
		return "1", nil
	}}, tick)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tr.Run(ctx)
	pass := func(what string) {
		t.Helper()
		select {
		case <-asked:
		case <-time.After(10 * time.Second):
			t.Fatalf("no pass %s", what)
		}
	}
	pass("at start")
	tick <- time.Now()
	pass("on a tick")

	tr.SetActive(false)
	for range 4 {
		// Run takes a tick only between passes: once the fourth is taken,
		// the first three have been handled.
		tick <- time.Now()
	}
	select {
	case <-asked:
		t.Fatal("the registry was asked on a tick while nobody was looking")
	default:
	}

	tr.SetActive(true)
	pass("when looked at again")
	tick <- time.Now()
	pass("on a tick after that")
}
