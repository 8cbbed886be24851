package enrolui

import (
	"strings"
	"testing"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/uikit"
)

// TestStagesNameProviders: the wizard's stages say which identity
// providers the key will be registered with, or that there are none; the
// row is ticked when the enrolment reaches it.
func TestStagesNameProviders(t *testing.T) {
	unlock := uikit.LockUI() // widgets are built here while other tests' work may end
	defer unlock()
	s := settings.Default()
	s.Providers = []idp.Config{{Kind: "entra", Name: "corp"}, {Kind: "kratos", Name: "staff"}}
	v := newStagesView(providerNames(s))
	i := stepIndex(enrol.StepProviders)
	if i < 0 || v.rows[i].Text != "○  Registered with the identity providers: corp, staff" {
		t.Fatalf("providers row: %d %q", i, v.rows[i].Text)
	}
	v.reached(enrol.StepDone)
	if !strings.HasPrefix(v.rows[i].Text, "✓") {
		t.Fatalf("after done: %q", v.rows[i].Text)
	}
	if none := newStagesView(nil); !strings.Contains(none.rows[i].Text, "none configured") {
		t.Fatalf("no providers: %q", none.rows[i].Text)
	}
}
