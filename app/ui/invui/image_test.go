package invui

import (
	"github.com/keydesk/keydesk/app/ui/uitest"
	"image"
	"testing"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"

	"github.com/keydesk/keydesk/app/inventory"
	"github.com/keydesk/keydesk/app/ui/uikit"
)

// maxDiff is the share of pixels that may differ from a reference image:
// clock times and the load time on screen change from run to run, the
// layout and everything else must not.
const maxDiff = 0.01

// matchImage compares img with testdata/name, allowing maxDiff of the
// pixels to differ by more than a small colour tolerance.
// KEYDESK_UPDATE_IMAGES=1 rewrites the references.
func matchImage(t *testing.T, name string, img image.Image) {
	t.Helper()
	uitest.MatchImageWithin(t, name, img, 48, maxDiff)
}

// TestReferenceImages draws both screens of a seeded registry in software
// at 1280×800 and compares them with the reference images in testdata.
func TestReferenceImages(t *testing.T) {
	r := startRegistry(t)
	r.seed(plan(28))

	env := newEnv(t, r.admin, uikit.Admin)
	env.App.Settings().SetTheme(theme.LightTheme())
	v, _ := loadInventory(t, env, inventory.Options{})
	v.SelectRow(2)
	matchImage(t, "inventory.png", env.Window.Canvas().Capture())

	env2 := newEnv(t, r.admin, uikit.Admin)
	env2.App.Settings().SetTheme(theme.LightTheme())
	a, ch := openActivity(t, env2)
	test.Type(a.Action, "user.create")
	test.Tap(a.Apply)
	if s := next(t, ch, "reload"); s.err != nil {
		t.Fatal(s.err)
	}
	test.Tap(a.Verify)
	next(t, ch, "verify")
	matchImage(t, "activity.png", env2.Window.Canvas().Capture())
}
