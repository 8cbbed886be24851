// Package uitest is test support for the desktop app's screens: practice
// keys and a real registry process (app/enroltest) behind a uikit.Env on
// Fyne's headless test app, a wait that checks state on the UI goroutine,
// and reference images compared with a tolerance. No production code
// imports it.
package uitest

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/virtual/sim"
	_ "github.com/keydesk/keydesk/internal/startlog" // no Fyne locale error in test output
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

// Fleet is the test binary's practice keys and registry.
var Fleet *enroltest.Env

// Main builds the registry, starts n practice keys and the registry, runs
// the tests and stops them: call it from TestMain.
func Main(m *testing.M, n int) {
	var bin string
	regtest.RunTests(runner{m, &bin, n}, &bin)
}

type runner struct {
	m   *testing.M
	bin *string
	n   int
}

func (r runner) Run() int {
	var err error
	if Fleet, err = enroltest.Start(os.TempDir(), *r.bin, r.n); err != nil {
		fmt.Fprintln(os.Stderr, "starting practice keys and registry:", err)
		return 1
	}
	defer Fleet.Stop()
	// The keys answer keydesk-sim's control commands (insert, remove,
	// power-cycle), as in practice mode.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Fleet.Fleet.Serve(ctx, SimDir()); err != nil {
		fmt.Fprintln(os.Stderr, "practice keys' control socket:", err)
		return 1
	}
	return r.m.Run()
}

// FreshKeys makes every practice key of the fleet factory-fresh and
// unknown to the registry, as an admin unpacking new keys would: a key that
// is pulled is inserted again, and when any key was set up or registered
// by an earlier test (or an earlier run, -count), every key is swapped, in
// reader order, for a new key with a new serial in the same reader, so the
// serials still rise with the readers (Serial(0) < Serial(1)). It returns
// once both interfaces of each key are attached.
func FreshKeys(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	whole := func(k *device.Key) bool { return k != nil && k.Reader != "" && k.FIDOPath != "" }
	all := true
	for i := range Fleet.Fleet.Keys {
		serial := Fleet.Serial(i)
		if y := Fleet.Fleet.Keys[i]; !y.Key.Inserted() {
			y.Key.Insert()
		}
		k, err := Fleet.Keys.WaitUntil(ctx, serial, whole)
		all = all && err == nil && fresh(ctx, k)
	}
	if all {
		return
	}
	for i := range Fleet.Fleet.Keys {
		y, err := Fleet.Fleet.Replace(Fleet.Serial(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Fleet.Keys.WaitUntil(ctx, y.Serial(), whole); err != nil {
			t.Fatal(err)
		}
	}
}

// fresh says whether k has its factory PINs and management key and no
// record in the registry.
func fresh(ctx context.Context, k device.Key) bool {
	r := Fleet.Keys.Inspect(ctx, k, nil)
	if r.PIV == nil || r.FIDO == nil || !r.PIV.PINDefault || !r.PIV.PUKDefault || !r.PIV.MgmtKeyDefault || r.FIDO.PINSet {
		return false
	}
	_, err := Fleet.Admin.KeyBySerial(ctx, strconv.FormatUint(uint64(k.Serial), 10))
	return errors.Is(err, registry.ErrNotFound)
}

// SimDir is the practice keys' state directory (their control socket).
func SimDir() string { return filepath.Join(Fleet.Dir, "sim") }

// Sim sends a control command to the practice keys ("remove 31000002").
func Sim(t *testing.T, line string) {
	t.Helper()
	reply, err := sim.Control(SimDir(), line)
	if err != nil || strings.HasPrefix(reply, "error") {
		t.Fatalf("practice keys %q: %q, %v", line, reply, err)
	}
}

// Env is a screen's world for one test: a headless app and window of
// 1280×800, the fleet's keys watched into the feed, and reg as the
// registry (nil: the registry is down).
func Env(t testing.TB, role uikit.Role, user string, reg *client.Client) *uikit.Env {
	t.Helper()
	// test.NewApp empties Fyne's global font and theme caches: work left
	// over from an earlier test may be using them under the lock.
	HoldUI(t)
	a := test.NewApp()
	w := a.NewWindow("keydesk test")
	w.Resize(fyne.NewSize(1280, 800))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); w.Close(); a.Quit() })
	s := settings.Default()
	s.Practice = true
	s.RPID = enroltest.RPID
	env := &uikit.Env{App: a, Window: w, Ctx: ctx, Keys: Fleet.Keys, Feed: &uikit.KeyFeed{}, Role: role, User: user,
		Settings: func() settings.Settings { return s }, SimDir: SimDir()}
	env.Registry = func(context.Context) (*client.Client, error) {
		if reg == nil {
			return nil, client.ErrUnreachable
		}
		return reg, nil
	}
	ch, err := Fleet.Keys.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for list := range ch {
			env.Feed.Publish(list)
		}
	}()
	return env
}

// HoldUI makes the test's goroutine act as the UI goroutine: it holds the
// UI lock until the test ends and gives it up only while it waits
// (Eventually, Unlocked), so background work that ends in uikit.Do never
// touches widgets while the test is building, tapping or reading them.
// Env calls it; a test that builds its own app calls it first, before
// test.NewApp (which empties Fyne's global font and theme caches). The
// test's cleanups registered after it run with the lock held; one that
// waits for background work to end (a watcher goroutine that publishes
// through uikit.Do) waits inside Unlocked. The lock belongs to one
// goroutine: a subtest (t.Run runs it on a goroutine of its own) calls
// Env or HoldUI itself, from a parent that does not hold the lock.
func HoldUI(t testing.TB) {
	_ = uikit.LockUI()
	t.Cleanup(func() { uikit.Release() })
}

// Unlocked runs wait (a receive from a channel that background work
// sends on) with the UI lock given up, so that work can finish.
func Unlocked(wait func()) {
	retake := uikit.Release()
	defer retake()
	wait()
}

// HasText says whether a label or entry under obj shows text containing
// s. Call it on the UI goroutine (WaitFor does).
func HasText(obj fyne.CanvasObject, s string) bool {
	switch o := obj.(type) {
	case *widget.Label:
		if strings.Contains(o.Text, s) {
			return true
		}
	case *widget.Entry:
		if strings.Contains(o.Text, s) {
			return true
		}
	case *uikit.Entry:
		if strings.Contains(o.Text, s) {
			return true
		}
	case *fyne.Container:
		for _, c := range o.Objects {
			if HasText(c, s) {
				return true
			}
		}
		return false
	}
	if w, ok := obj.(fyne.Widget); ok {
		for _, c := range test.WidgetRenderer(w).Objects() {
			if HasText(c, s) {
				return true
			}
		}
	}
	return false
}

// Down is a registry client whose registry is not running.
func Down(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.New("http://127.0.0.1:9", "kdr_down-down-down-down-down", client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// WaitFor checks cond on the UI goroutine until it holds, failing the test
// with what after timeout.
func WaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Eventually(timeout, cond) {
		t.Fatalf("after %v: %s", timeout, what)
	}
}

// Eventually checks cond on the UI goroutine until it holds or timeout
// passes, and says whether it held.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		ok := false
		fyne.DoAndWait(func() { unlock := uikit.LockUI(); defer unlock(); ok = cond() })
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		Unlocked(func() { time.Sleep(20 * time.Millisecond) })
	}
}

// MatchImage compares img with testdata/name, a reference captured from
// the same screen: it fails when more than 2% of the pixels differ by more
// than 24 of 255 in any channel (font hinting and anti-aliasing vary a
// little between machines). See MatchImageWithin.
func MatchImage(t *testing.T, name string, img image.Image) {
	t.Helper()
	MatchImageWithin(t, name, img, 24, 0.02)
}

// MatchImageWithin compares img with testdata/name and fails when more
// than share of the pixels differ by more than channel (of 255) in a
// colour channel. With KEYDESK_UPDATE_IMAGES=1 it writes the reference
// instead. On a mismatch the capture is written to testdata/failed/name.
func MatchImageWithin(t *testing.T, name string, img image.Image, channel int, share float64) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if os.Getenv("KEYDESK_UPDATE_IMAGES") == "1" {
		if err := writePNG(path, img); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote reference image %s", path)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		writePNG(filepath.Join("testdata", "failed", name), img)
		t.Fatalf("reference image %s: %v (KEYDESK_UPDATE_IMAGES=1 writes it)", path, err)
	}
	ref, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	diff, frac := diffWithin(ref, img, channel)
	if frac > share {
		writePNG(filepath.Join("testdata", "failed", name), img)
		t.Fatalf("%s: %d pixels (%.2f%%, at most %.2f%%) differ from the reference; the capture is in testdata/failed/%s", name, diff, 100*frac, 100*share, name)
	}
}

// Diff counts the pixels of a and b that differ by more than 24 of 255 in
// a channel, and their fraction of the larger image; different sizes count
// every pixel outside the common area.
func Diff(a, b image.Image) (int, float64) { return diffWithin(a, b, 24) }

func diffWithin(a, b image.Image, channel int) (int, float64) {
	ra, rb := a.Bounds(), b.Bounds()
	w, h := max(ra.Dx(), rb.Dx()), max(ra.Dy(), rb.Dy())
	n := 0
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			pa, pb := image.Pt(ra.Min.X+x, ra.Min.Y+y), image.Pt(rb.Min.X+x, rb.Min.Y+y)
			if !pa.In(ra) || !pb.In(rb) {
				n++
				continue
			}
			r1, g1, b1, _ := a.At(pa.X, pa.Y).RGBA()
			r2, g2, b2, _ := b.At(pb.X, pb.Y).RGBA()
			if far(r1, r2, channel) || far(g1, g2, channel) || far(b1, b2, channel) {
				n++
			}
		}
	}
	return n, float64(n) / float64(w*h)
}

func far(a, b uint32, channel int) bool {
	return math.Abs(float64(a>>8)-float64(b>>8)) > float64(channel)
}

func writePNG(path string, img image.Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, img)
}

// Visible walks every object of the window that is shown (its content
// and its overlays: dialogs), descending into widgets' renderers and
// skipping what is hidden. Call it on the UI goroutine.
func Visible(w fyne.Window, f func(fyne.CanvasObject)) {
	var walk func(o fyne.CanvasObject)
	walk = func(o fyne.CanvasObject) {
		if o == nil || !o.Visible() {
			return
		}
		f(o)
		switch x := o.(type) {
		case *fyne.Container:
			for _, c := range x.Objects {
				walk(c)
			}
			return
		}
		if wd, ok := o.(fyne.Widget); ok {
			for _, c := range test.WidgetRenderer(wd).Objects() {
				walk(c)
			}
		}
	}
	walk(w.Canvas().Content())
	for _, o := range w.Canvas().Overlays().List() {
		walk(o)
	}
}

// WindowText is every text the window shows now (labels, buttons,
// entries, dialogs), one piece per line.
func WindowText(w fyne.Window) string {
	var b strings.Builder
	Visible(w, func(o fyne.CanvasObject) {
		if t, ok := o.(*canvas.Text); ok && t.Text != "" {
			b.WriteString(t.Text)
			b.WriteString("\n")
		}
	})
	return b.String()
}

// CLICommand finds a command line of keydesk's CLI in text ("keydesk
// recover piv-pin"): the desktop app names its own buttons and screens
// instead. It returns the match, "" when there is none.
func CLICommand(text string) string {
	return cliCommand.FindString(strings.ReplaceAll(text, "\n", " "))
}

var cliCommand = regexp.MustCompile(`keydesk\s+(recover|enrol|verify|piv|fido|keys|user|users|registry|inventory|activity|audit|migrate|backup|batch|config|settings|identity|token)\b[^.]*`)

// RawFragments are pieces of library text a person must never read in
// the window: Go's network and context errors, the request line of a
// failed HTTP call, TLS and x509 text, database/sql's and SQLite's, D-Bus
// and keyring-library names, fmt's verbs gone wrong and nil printed as
// text. Raw finds them.
var RawFragments = []string{
	"dial tcp", "connection refused", "connect:", "context deadline", "context canceled", "EOF", "sql:", "sqlite",
	"x509:", "tls:", "dbus", "d-bus", "org.freedesktop", "%!", "<nil>", "http://127.0.0.1", "/v1/",
	"get \"", "post \"", "registry-token:", "os keyring", "secret service:",
}

// Raw is the first of RawFragments in text ("" when there is none),
// ignoring case except for "EOF" (the word, not "thereof").
func Raw(text string) string {
	low := strings.ToLower(text)
	for _, f := range RawFragments {
		if f == "EOF" {
			if strings.Contains(text, f) {
				return f
			}
			continue
		}
		if strings.Contains(low, f) {
			return f
		}
	}
	return ""
}
