package invui

import (
	"flag"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"

	"github.com/keydesk/keydesk/app/inventory"
	"github.com/keydesk/keydesk/app/ui/uikit"
)

var update = flag.Bool("update", false, "rewrite the reference images in testdata")

// maxDiff is the share of pixels that may differ from a reference image:
// clock times and the load time on screen change from run to run, the
// layout and everything else must not.
const maxDiff = 0.01

// matchImage compares img with testdata/name pixel by pixel, allowing
// maxDiff of the pixels to differ by more than a small colour tolerance.
// On a mismatch it writes the image to testdata/failed/name.
func matchImage(t *testing.T, name string, img image.Image) {
	t.Helper()
	ref := filepath.Join("testdata", name)
	write := func(path string) {
		os.MkdirAll(filepath.Dir(path), 0o755)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
	}
	if *update {
		write(ref)
		return
	}
	f, err := os.Open(ref)
	if err != nil {
		t.Fatalf("no reference image (run with -update to make one): %v", err)
	}
	defer f.Close()
	want, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if want.Bounds() != img.Bounds() {
		write(filepath.Join("testdata", "failed", name))
		t.Fatalf("%s: size %v, reference %v", name, img.Bounds(), want.Bounds())
	}
	b := img.Bounds()
	diff := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r1, g1, b1, _ := img.At(x, y).RGBA()
			r2, g2, b2, _ := want.At(x, y).RGBA()
			if far(r1, r2) || far(g1, g2) || far(b1, b2) {
				diff++
			}
		}
	}
	share := float64(diff) / float64(b.Dx()*b.Dy())
	if share > maxDiff {
		write(filepath.Join("testdata", "failed", name))
		t.Errorf("%s: %.2f%% of pixels differ from the reference (at most %.2f%%); see testdata/failed/%s", name, 100*share, 100*maxDiff, name)
	}
}

func far(a, b uint32) bool {
	d := int(a>>8) - int(b>>8)
	return d > 48 || d < -48
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
