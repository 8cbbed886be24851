package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/client"
)

// TestPlainStorageFault: a registry whose disk is full answered; the CLI
// says so, with the operator as the next step, not that the registry
// could not be reached, and still exits with the registry's code.
func TestPlainStorageFault(t *testing.T) {
	err := plain(fmt.Errorf("enrolling: %w", &client.UnavailableError{Status: 503, Code: "storage_full"}))
	if msg := err.Error(); !strings.Contains(msg, "disk is full") || strings.Contains(msg, "could not be reached") {
		t.Errorf("message %q", msg)
	}
	var h hinter
	if !errors.As(err, &h) || !strings.Contains(h.Hint(), "operator") {
		t.Errorf("hint of %v", err)
	}
	if code := exitCode(err); code != ExitRegistry {
		t.Errorf("exit code %d, want %d", code, ExitRegistry)
	}
}
