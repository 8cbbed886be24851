package uikit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/registry/client"
)

func TestConfirmSerialNeedsTheSerial(t *testing.T) {
	a := test.NewApp()
	defer a.Quit()
	w := a.NewWindow("t")
	w.Resize(fyne.NewSize(800, 600))
	confirmed := 0
	ConfirmSerial(w, 12345678, "Reset FIDO2", "Every credential on the key is deleted.", func() { confirmed++ })

	focused := w.Canvas().Focused().(*Entry)
	test.Type(focused, "1234567")
	focused.OnSubmitted(focused.Text)
	if confirmed != 0 {
		t.Fatal("confirmed with a wrong serial")
	}
	test.Type(focused, "8")
	focused.OnSubmitted(focused.Text)
	if confirmed != 1 {
		t.Fatalf("confirmed %d times with the right serial, want 1", confirmed)
	}
}

type hinted struct{}

func (hinted) Error() string { return "the PIN is blocked" }
func (hinted) Hint() string  { return "Unblock it with the PUK." }

func TestMessageCarriesTheHint(t *testing.T) {
	got := Message(errors.Join(errors.New("verify"), hinted{}))
	if want := "verify\nthe PIN is blocked\n\nUnblock it with the PUK."; got != want {
		t.Fatalf("Message = %q, want %q", got, want)
	}
}

func TestGoReportsOnTheUIAndCancels(t *testing.T) {
	a := test.NewApp()
	defer a.Quit()
	ctx, stop := context.WithCancel(context.Background())
	env := &Env{App: a, Ctx: ctx}
	done := make(chan error, 1)
	env.Go(func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}, func(err error) { done <- err })
	stop()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("done got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("work did not end when the window's context did")
	}
}

func TestFeedTellsSubscribers(t *testing.T) {
	a := test.NewApp()
	defer a.Quit()
	var f KeyFeed
	got := make(chan int, 4)
	f.Subscribe(func(k []device.Key) { got <- len(k) })
	f.Publish([]device.Key{{Serial: 1}, {Serial: 2}})
	select {
	case n := <-got:
		if n != 2 {
			t.Fatalf("subscriber saw %d keys, want 2", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber not called")
	}
	// A late subscriber gets the current list at once.
	f.Subscribe(func(k []device.Key) { got <- len(k) * 10 })
	if n := <-got; n != 20 {
		t.Fatalf("late subscriber saw %d, want 20", n)
	}
	if s := Screen(Screen{Roles: []Role{Admin}}); s.Visible(&Env{Role: Self}) || !s.Visible(&Env{Role: Admin}) {
		t.Fatal("Screen.Visible ignores roles")
	}
}

func TestMessageCarriesDeviceHints(t *testing.T) {
	got := Message(fmt.Errorf("changing the PIN: %w", &device.WrongPINError{Retries: 2}))
	if !strings.Contains(got, "2 more wrong tries") {
		t.Fatalf("Message = %q, want the device layer's hint", got)
	}
}

// TestMessageSaysWhatToDoAboutTheRegistry: a registry that cannot be
// reached, or none at all, comes with the next step.
func TestMessageSaysWhatToDoAboutTheRegistry(t *testing.T) {
	for _, err := range []error{fmt.Errorf("%w: dial tcp: connection refused", client.ErrUnreachable), ErrNoRegistry} {
		if got := Message(fmt.Errorf("reading the key: %w", err)); !strings.Contains(got, "Settings") {
			t.Errorf("Message = %q, want the next step", got)
		}
	}
	if got := Message(errors.New("something else")); got != "something else" {
		t.Errorf("Message = %q for an error with no next step", got)
	}
}

func TestAwaitSecretsAnswersAndCancels(t *testing.T) {
	a := test.NewApp()
	defer a.Quit()
	w := a.NewWindow("t")
	w.Resize(fyne.NewSize(800, 600))
	forms := make(chan *SecretForm, 2)
	got := make(chan []string, 1)
	go func() {
		v, err := AwaitSecrets(context.Background(), w, "PIV PIN", []string{"PIV PIN"}, func(f *SecretForm) { forms <- f })
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	f := <-forms
	test.Type(f.Entries[0], "246810")
	f.Submit()
	if v := <-got; len(v) != 1 || v[0] != "246810" {
		t.Fatalf("answer %q", v)
	}
	errs := make(chan error, 1)
	go func() {
		_, err := AwaitSecrets(context.Background(), w, "PIV PIN", []string{"PIV PIN"}, func(f *SecretForm) { forms <- f })
		errs <- err
	}()
	(<-forms).Cancel()
	if err := <-errs; !errors.Is(err, ErrNotGiven) {
		t.Fatalf("canceled dialog: %v", err)
	}
}
