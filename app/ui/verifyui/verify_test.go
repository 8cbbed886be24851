package verifyui_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/app/ui/verifyui"
	"github.com/keydesk/keydesk/app/verify"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/registry/client"
)

func TestMain(m *testing.M) { uitest.Main(m, 1) }

const wait = 30 * time.Second

const pivPIN = "246810"

var enrolled *enroltest.Enrolled

// enrol enrols the practice key for ada once.
func enrol(t *testing.T) enroltest.Enrolled {
	t.Helper()
	if enrolled != nil {
		return *enrolled
	}
	ctx := context.Background()
	k, err := uitest.Fleet.Key(ctx, uitest.Fleet.Serial(0))
	if err != nil {
		t.Fatal(err)
	}
	e, err := enroltest.Enrol(ctx, uitest.Fleet.Keys, uitest.Fleet.Admin, k, enroltest.Options{User: "ada", PIVPIN: pivPIN, FIDOPIN: "fido-2468", Recipients: []string{uitest.Fleet.Recipient}})
	if err != nil {
		t.Fatal(err)
	}
	enrolled = &e
	return e
}

func open(t *testing.T, reg *client.Client) (*uikit.Env, *verifyui.View) {
	t.Helper()
	env := uitest.Env(t, uikit.Helpdesk, "", reg)
	v := verifyui.New(env)
	env.Window.SetContent(v.Root)
	uitest.WaitFor(t, wait, "the practice key offered", func() bool { return v.Key.SelectedIndex() == 0 && !v.Run.Disabled() })
	return env, v
}

func answerPIN(t *testing.T, v *verifyui.View, pin string) {
	t.Helper()
	uitest.WaitFor(t, wait, "the PIN dialog", func() bool { return v.Form != nil })
	test.Type(v.Form.Entries[0], pin)
	v.Form.Submit()
}

// TestVerifyPasses: an enrolled key signs the registry's challenges with its
// PIN and every row is green.
func TestVerifyPasses(t *testing.T) {
	enrol(t)
	env, v := open(t, uitest.Fleet.Helpdesk)
	test.Type(v.User, "ada")
	test.Tap(v.Run)
	answerPIN(t, v, pivPIN)
	uitest.WaitFor(t, wait, "the report", func() bool { return v.Report != nil })
	if !v.Report.OK {
		t.Fatalf("report not OK: %+v", v.Report.Checks)
	}
	if len(v.Rows.Objects) != len(v.Report.Checks) || len(v.Rows.Objects) < 5 {
		t.Fatalf("%d rows for %d checks", len(v.Rows.Objects), len(v.Report.Checks))
	}
	if !strings.Contains(v.Summary.Text, "all checks passed") {
		t.Fatalf("summary %q", v.Summary.Text)
	}
	uitest.MatchImage(t, "verify.png", env.Window.Canvas().Capture())
}

// TestVerifyWrongPIN: a wrong PIV PIN makes the signature check red with
// its cause and the next step, and costs one try.
func TestVerifyWrongPIN(t *testing.T) {
	enrol(t)
	_, v := open(t, uitest.Fleet.Helpdesk)
	test.Tap(v.Run)
	answerPIN(t, v, "999999")
	uitest.WaitFor(t, wait, "the report", func() bool { return v.Report != nil })
	if v.Report.OK {
		t.Fatal("a wrong PIN passed")
	}
	var red []verify.Check
	for _, c := range v.Report.Failed() {
		red = append(red, c)
	}
	if len(red) == 0 || red[0].Cause == "" || red[0].Next == "" {
		t.Fatalf("failed checks lack a cause or next step: %+v", red)
	}
	if !strings.Contains(v.Summary.Text, "failed") || v.Summary.Importance != widget.DangerImportance {
		t.Fatalf("summary %q (importance %v)", v.Summary.Text, v.Summary.Importance)
	}
	if n := len(red); n == 1 && !strings.Contains(v.Summary.Text, "1 check failed") {
		t.Fatalf("summary %q", v.Summary.Text)
	}
	// Again with the right PIN (which also puts the try back for the other
	// tests): the summary is no longer red while it runs, and green after.
	v.Form, v.Report = nil, nil
	test.Tap(v.Run)
	if v.Summary.Importance != widget.MediumImportance || !strings.Contains(v.Summary.Text, "Verifying") {
		t.Fatalf("while verifying again the summary says %q (importance %v)", v.Summary.Text, v.Summary.Importance)
	}
	answerPIN(t, v, pivPIN)
	uitest.WaitFor(t, wait, "the second report", func() bool { return v.Report != nil })
	if !v.Report.OK || v.Summary.Importance != widget.SuccessImportance {
		t.Fatalf("with the right PIN: %q, %+v", v.Summary.Text, v.Report.Failed())
	}
}

// TestVerifyRegistryDown: with the registry unreachable the screen says so
// and what to do; no report is shown.
func TestVerifyRegistryDown(t *testing.T) {
	_, v := open(t, uitest.Down(t))
	test.Tap(v.Run)
	uitest.WaitFor(t, wait, "the failure", func() bool { return strings.Contains(v.Summary.Text, "Could not verify") })
	if v.Report != nil || len(v.Rows.Objects) != 0 {
		t.Fatal("a report was shown without a registry")
	}
	if !strings.Contains(v.Summary.Text, "unreachable") && !strings.Contains(v.Summary.Text, "reach") {
		t.Fatalf("summary %q does not say the registry is unreachable", v.Summary.Text)
	}
	if !strings.Contains(v.Summary.Text, "Settings") {
		t.Fatalf("summary %q does not say what to do", v.Summary.Text)
	}
	if v.Summary.Importance != widget.DangerImportance {
		t.Fatalf("the failure %q is not shown as one (importance %v)", v.Summary.Text, v.Summary.Importance)
	}
}

// TestMessageFollowsTheChosenKey: a verification's summary and rows are
// about the key chosen; once another key is chosen they are gone, and
// choosing the first again does not bring a stale verdict back.
func TestMessageFollowsTheChosenKey(t *testing.T) {
	enrol(t)
	env, v := open(t, uitest.Fleet.Helpdesk)
	test.Type(v.User, "ada")
	test.Tap(v.Run)
	answerPIN(t, v, pivPIN)
	uitest.WaitFor(t, wait, "the report", func() bool { return v.Report != nil })
	serial := uitest.Fleet.Serial(0)
	if !strings.Contains(v.Summary.Text, fmt.Sprint(serial)) {
		t.Fatalf("summary %q does not name key %d", v.Summary.Text, serial)
	}
	// A second key is attached (a list the feed publishes) and chosen.
	list := env.Feed.Current()
	other := device.Key{Serial: 31999999, Model: "YubiKey 5 NFC", Virtual: true}
	env.Feed.Publish(append(list, other))
	uitest.WaitFor(t, wait, "the second key offered", func() bool { return len(v.Key.Options) == len(list)+1 })
	v.Key.SetSelectedIndex(len(list))
	if strings.Contains(v.Summary.Text, fmt.Sprint(serial)) || len(v.Rows.Objects) != 0 || v.Report != nil {
		t.Fatalf("with key %d chosen the screen still says %q with %d rows", other.Serial, v.Summary.Text, len(v.Rows.Objects))
	}
	v.Key.SetSelectedIndex(0)
	if strings.Contains(v.Summary.Text, "passed") {
		t.Fatalf("the old verdict came back: %q", v.Summary.Text)
	}
	env.Feed.Publish(list)
}

// TestVerdictGoesWhenTheKeyChanges: a verdict describes the key as it was
// verified; a wrong PIN typed by another program afterwards takes it off
// the screen within a second.
func TestVerdictGoesWhenTheKeyChanges(t *testing.T) {
	enrol(t)
	ctx := context.Background()
	_, v := open(t, uitest.Fleet.Helpdesk)
	test.Tap(v.Run)
	answerPIN(t, v, pivPIN)
	uitest.WaitFor(t, wait, "the report", func() bool { return v.Report != nil && v.Run.Disabled() == false })
	if !strings.Contains(v.Summary.Text, "all checks passed") {
		t.Fatalf("the summary says %q", v.Summary.Text)
	}
	k, err := uitest.Fleet.Key(ctx, uitest.Fleet.Serial(0))
	if err != nil {
		t.Fatal(err)
	}
	card := pivkey.Open(k.Reader, k.Serial)
	if err := card.ChangePIN(ctx, "999999", pivPIN); err == nil {
		t.Fatal("a wrong PIN was taken")
	}
	t.Cleanup(func() {
		if err := card.ChangePIN(ctx, pivPIN, pivPIN); err != nil {
			t.Errorf("giving the PIN its tries back: %v", err)
		}
	})
	start := time.Now()
	if !uitest.Eventually(time.Second, func() bool {
		return v.Report == nil && strings.Contains(v.Summary.Text, "has changed since it was verified")
	}) {
		t.Fatalf("1s after a wrong PIN elsewhere the Verify screen says %q", v.Summary.Text)
	}
	t.Logf("the verdict went %v after the key changed", time.Since(start).Round(time.Millisecond))
}
