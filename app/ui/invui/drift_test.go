package invui

import (
	"slices"
	"testing"

	"github.com/keydesk/keydesk/app/inventory"
	"github.com/keydesk/keydesk/registry"
)

// TestDriftFilterAndDetail: the problem filter offers identity-provider
// drift and selects exactly it; the detail names each disagreement.
func TestDriftFilterAndDetail(t *testing.T) {
	if !slices.Contains(problemChoices, "identity provider out of step") || problemOf("identity provider out of step") != inventory.IDPDrift {
		t.Fatalf("choices %v", problemChoices)
	}
	got := DriftText([]registry.IDPDrift{{Provider: "corp", Serial: "31000001", Detail: "the key is active but its method is gone from the provider"}, {Provider: "corp", Detail: "the provider holds a method the registry has no record of (phone)"}})
	want := "\nAt corp: key 31000001: the key is active but its method is gone from the provider\nAt corp: the provider holds a method the registry has no record of (phone)"
	if got != want {
		t.Fatalf("detail %q", got)
	}
}
