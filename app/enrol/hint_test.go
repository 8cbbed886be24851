package enrol

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/client"
)

// A registry that answered "storage full" was reached: the hints say what it
// answered and never that it could not be reached.
func TestHintsNameAStorageFault(t *testing.T) {
	full := fmt.Errorf("registering: %w", &client.UnavailableError{Status: 503, Code: "storage_full", Message: "full"})
	down := fmt.Errorf("registering: %w", client.ErrUnreachable)
	for _, c := range []struct {
		name string
		hint func(error) string
	}{
		{"batch", hintOf},
		{"interrupted", func(err error) string { return (&InterruptedError{Serial: 7, Stage: StageQueued, Err: err}).Hint() }},
	} {
		if h := c.hint(full); !strings.Contains(h, "disk is full") || strings.Contains(h, "could not be reached") {
			t.Errorf("%s hint for a full disk: %q", c.name, h)
		}
		if h := c.hint(down); !strings.Contains(h, "could not be reached") {
			t.Errorf("%s hint for an unreachable registry: %q", c.name, h)
		}
	}
	if !errors.Is(full, client.ErrUnreachable) {
		t.Fatal("a storage fault must stay queued in the outbox (ErrUnreachable)")
	}
}
