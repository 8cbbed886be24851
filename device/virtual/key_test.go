package virtual

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestVersionAtLeast(t *testing.T) {
	v := Version{5, 4, 3}
	for _, c := range []struct {
		maj, min, pat uint8
		want          bool
	}{{5, 4, 3, true}, {5, 4, 4, false}, {5, 3, 9, true}, {5, 7, 0, false}, {4, 9, 9, true}, {6, 0, 0, false}} {
		if got := v.AtLeast(c.maj, c.min, c.pat); got != c.want {
			t.Errorf("%v.AtLeast(%d.%d.%d) = %v, want %v", v, c.maj, c.min, c.pat, got, c.want)
		}
	}
	if _, err := ParseVersion("5.x"); err == nil {
		t.Error("ParseVersion accepted 5.x")
	}
}

func TestPresenceModes(t *testing.T) {
	p := NewPresence()
	if err := p.Request(context.Background(), nil); err != nil {
		t.Fatalf("auto: %v", err)
	}
	p.SetMode(TouchNever)
	p.SetTimeout(20 * time.Millisecond)
	if err := p.Request(context.Background(), nil); !errors.Is(err, ErrTouchTimeout) {
		t.Fatalf("never: got %v, want ErrTouchTimeout", err)
	}

	p.SetMode(TouchManual)
	p.SetTimeout(5 * time.Second)
	waiting := p.Waiting()
	done := make(chan error, 1)
	go func() { done <- p.Request(context.Background(), nil) }()
	<-waiting
	if !p.Touch() {
		t.Fatal("Touch found no waiting request")
	}
	if err := <-done; err != nil {
		t.Fatalf("manual: %v", err)
	}
	if p.Touch() {
		t.Fatal("Touch with nobody waiting reported success")
	}

	ctx, cancel := context.WithCancel(context.Background())
	waiting = p.Waiting()
	go func() { done <- p.Request(ctx, nil) }()
	<-waiting
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: got %v", err)
	}
}

func TestKeyEventsAndResetWindow(t *testing.T) {
	now := time.Unix(1000, 0)
	k := NewKey(DefaultIdentity(1234))
	k.SetClock(func() time.Time { return now })
	var got []Event
	cancel := k.Subscribe(func(e Event) { got = append(got, e) })
	now = now.Add(11 * time.Second)
	if d := k.SincePowerUp(); d != 11*time.Second {
		t.Fatalf("SincePowerUp = %v", d)
	}
	k.Remove()
	k.Remove()
	k.Insert()
	if d := k.SincePowerUp(); d != 0 {
		t.Fatalf("after insert SincePowerUp = %v", d)
	}
	k.PowerCycle()
	cancel()
	k.Remove()
	want := []Event{Removed, Inserted, PowerCycled}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
}
