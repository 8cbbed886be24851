package keysui_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"fyne.io/fyne/v2"

	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/ui/keysui"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/registry"
)

// rowRuns counts TestRowsFollowTheRegistry's runs.
var rowRuns int

// TestRowsFollowTheRegistry: a key enrolled elsewhere while the Keys
// screen exists is shown registered, with its new PIN state, once the
// screen is shown again; a status changed in the registry shows after the
// keys are listed again (Ctrl+R), neither needing the key replugged.
func TestRowsFollowTheRegistry(t *testing.T) {
	uitest.FreshKeys(t)
	// The registry lives as long as the test binary: each run enrols a
	// person of its own (-count).
	rowRuns++
	user := fmt.Sprintf("row-ada-%d", rowRuns)
	env, v := open(t)
	if _, ok := keysui.Screen().Make(env).(uikit.Revisited); !ok {
		t.Fatal("the Keys screen does not ask to be told when it is shown again")
	}
	s0 := uitest.Fleet.Serial(0)
	line := func() string { return keysui.HealthLine(mustKey(t, s0), v.HealthOf(s0)) }
	uitest.WaitFor(t, wait, "the key not registered", func() bool { return strings.Contains(line(), "not registered") })

	ctx := context.Background()
	k, err := uitest.Fleet.Key(ctx, s0)
	if err != nil {
		t.Fatal(err)
	}
	release := env.HoldKeys()
	e, err := enroltest.Enrol(ctx, env.Keys, uitest.Fleet.Admin, k, enroltest.Options{User: user, PIVPIN: "24681357", FIDOPIN: "fido-2468", Recipients: []string{uitest.Fleet.Recipient}})
	release()
	if err != nil {
		t.Fatal(err)
	}
	if l := line(); !strings.Contains(l, "not registered") {
		t.Logf("the row changed before the screen was shown again: %q", l)
	}

	fyne.DoAndWait(v.Reread)
	uitest.WaitFor(t, wait, "the row naming "+user+" with the new PIN", func() bool {
		l := line()
		return strings.Contains(l, "registered to "+user+" (primary, active)") && strings.Contains(l, "PIV PIN 3 tries") && uitest.HasText(v.Root, user+" · primary key")
	})

	if _, err := uitest.Fleet.Admin.SetKeyStatus(ctx, e.Key.ID, e.Key.Version, registry.KeySuspended, "the Keys screen test suspends its own practice key"); err != nil {
		t.Fatal(err)
	}
	list, err := env.Keys.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env.Feed.Publish(list) // what Ctrl+R does
	uitest.WaitFor(t, wait, "the row saying suspended", func() bool { return strings.Contains(line(), "registered to "+user+" (primary, suspended)") })
}
