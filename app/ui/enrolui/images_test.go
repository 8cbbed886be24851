package enrolui

import (
	"context"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"image"
	"path/filepath"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// matchImage compares img with testdata/name, allowing small differences
// (a channel off by up to 24 in at most 0.5% of the pixels) so a change of
// font hinting does not fail the test while a moved or missing widget does.
// KEYDESK_UPDATE_IMAGES=1 rewrites the references.
func matchImage(t *testing.T, name string, img image.Image) {
	t.Helper()
	uitest.MatchImageWithin(t, name, img, 24, 0.005)
}

// TestReferenceImages draws the wizard's main steps and the Batch screen
// in fixed states (the same methods the enrolment calls drive) and compares
// each with its reference image.
func TestReferenceImages(t *testing.T) {
	uitest.HoldUI(t)
	a := test.NewApp()
	defer a.Quit()
	a.Settings().SetTheme(theme.LightTheme())
	win := a.NewWindow("keydesk")
	win.Resize(fyne.NewSize(1280, 800))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set := settings.Default()
	set.HelpdeskRecipients = []string{"age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"}
	feed := &uikit.KeyFeed{}
	env := &uikit.Env{App: a, Window: win, Ctx: ctx, Feed: feed, Role: uikit.Admin,
		Settings: func() settings.Settings { return set },
		Registry: func(context.Context) (*client.Client, error) { return nil, uikit.ErrNoRegistry }}
	d := &desk{cfg: Config{JournalPath: filepath.Join(t.TempDir(), "journal.db")}}
	lock := func(f func()) { unlock := uikit.LockUI(); defer unlock(); f() }

	var w *wizard
	lock(func() { w = newWizard(env, d) })
	lock(func() { win.SetContent(w.root) })
	f := &follower{t: t, tr: &w.trail}
	// Both background reads end, in either order.
	f.await("users-failed", "unfinished-loaded")
	f.await("users-failed", "unfinished-loaded")
	lock(func() {
		w.unfinished.RemoveAll()
		w.users = []registry.User{
			{ID: "1", ExternalID: "u1001", DisplayName: "Ada Lovelace", Email: "ada@example.org"},
			{ID: "2", ExternalID: "u1002", DisplayName: "Charles Babbage", Email: "charles@example.org"},
			{ID: "3", ExternalID: "u1003", DisplayName: "Grace Hopper", Email: "grace@example.org"},
		}
		w.retry.Hide()
		w.search.SetText("a")
		w.userList.Select(0)
		w.body.Refresh()
		matchImage(t, "wizard-1-user.png", win.Canvas().Capture())
	})

	keys := []device.Key{
		{Serial: 31000001, Model: "YubiKey 5 NFC", Firmware: device.Version{Major: 5, Minor: 7, Patch: 2}, Virtual: true, Reader: "r0", FIDOPath: "/dev/k1"},
		{Serial: 31000002, Model: "YubiKey 5 NFC", Firmware: device.Version{Major: 5, Minor: 7, Patch: 2}, Virtual: true, Reader: "r1", FIDOPath: "/dev/k2"},
	}
	feed.Publish(keys)
	f.await("keys")
	lock(func() {
		w.showKey()
		w.keyList.Select(0)
		matchImage(t, "wizard-2-key.png", win.Canvas().Capture())

		w.showChecks(31000001)
		w.checksPassed(func() {})
		matchImage(t, "wizard-3-checks.png", win.Canvas().Capture())

		w.onNewPIN(enrol.PINRequest{Kind: enrol.FIDO2PIN, Serial: 31000001, User: "Ada Lovelace", MinLength: 8, MaxLength: 63,
			Problem: "the PIN must be at least 8 characters"}, 2, func(string, error) {})
		matchImage(t, "wizard-4-pin.png", win.Canvas().Capture())

		w.onProgress(enrol.Event{Step: enrol.StepFIDO2, Serial: 31000001})
		w.onTouch(31000001)
		matchImage(t, "wizard-5-touch.png", win.Canvas().Capture())
		w.touch.hide()

		w.onProgress(enrol.Event{Step: enrol.StepRegister, Serial: 31000001})
		w.onProgress(enrol.Event{Step: enrol.StepRegistryWait, User: "u1001", Detail: "the registry could not be reached; trying again in 480ms", Left: 27 * time.Second})
		matchImage(t, "wizard-8-registry-wait.png", win.Canvas().Capture())
		w.endWait("")

		w.onProgress(enrol.Event{Step: enrol.StepDone, Serial: 31000001})
		w.onConfirm("Ada Lovelace is not covered yet (missing: backup). Enrol the backup key now?", func(bool, error) {})
		matchImage(t, "wizard-6-backup.png", win.Canvas().Capture())

		w.answer = nil
		w.finish([]*enrol.Result{
			{ExternalID: "u1001", DisplayName: "Ada Lovelace", Serial: 31000001, Role: registry.RolePrimary, Status: registry.KeyActive, Genuine: "keydesk practice attestation root"},
			{ExternalID: "u1001", DisplayName: "Ada Lovelace", Serial: 31000002, Role: registry.RoleBackup, Status: registry.KeyActive, Genuine: "keydesk practice attestation root", Covered: true},
		}, nil)
		matchImage(t, "wizard-7-result.png", win.Canvas().Capture())
	})

	var b *batch
	lock(func() {
		b = newBatch(env, d)
		win.SetContent(b.root)
		b.path.SetText("testdata/malformed.csv")
		b.validate()
	})
	bf := &follower{t: t, tr: &b.trail}
	bf.await(batchRefused)
	lock(func() { matchImage(t, "batch-1-refused.png", win.Canvas().Capture()) })
	lock(func() {
		b.path.SetText("testdata/roster.csv")
		b.validate()
	})
	bf.await(batchChecked)
	lock(func() {
		matchImage(t, "batch-2-checked.png", win.Canvas().Capture())
		b.overall.Show()
		b.onProgress(enrol.Event{Step: enrol.StepBatchUser, User: "u1001", Detail: "Ada Lovelace", Done: 0, Total: 4})
		b.onProgress(enrol.Event{Step: enrol.StepKey, User: "u1001", Serial: 31000001, Done: 0, Total: 4})
		b.onNewPIN(enrol.PINRequest{Kind: enrol.FIDO2PIN, Serial: 31000001, User: "Ada Lovelace", MinLength: 8, MaxLength: 63}, 1, func(string, error) {})
		matchImage(t, "batch-3-running.png", win.Canvas().Capture())
	})
}
