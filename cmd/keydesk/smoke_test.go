package main

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// build compiles keydesk, keydesk-cli and keydesk-desk into dir and
// returns keydesk.
func build(tb testing.TB, dir string) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	// keydesk starts keydesk-desk (no arguments) and keydesk-cli (most
	// commands) from its own directory.
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), ".", "../keydesk-cli", "../keydesk-desk")
	cmd.Dir = filepath.Dir(file)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building keydesk, keydesk-cli and keydesk-desk: %v\n%s", err, out)
	}
	return filepath.Join(dir, "keydesk")
}

// xvfb starts a virtual X display of 1280×800 and returns its name; it is
// stopped when the test ends. A test is skipped when Xvfb cannot start.
func xvfb(tb testing.TB) string {
	tb.Helper()
	return xvfbSized(tb, 1280, 800)
}

// xvfbSized is xvfb with a screen of w×h pixels.
func xvfbSized(tb testing.TB, w, h int) string {
	tb.Helper()
	if _, err := exec.LookPath("Xvfb"); err != nil {
		tb.Skip("Xvfb is not installed (packaging/install-deps.sh installs it): the desktop app cannot be started here")
	}
	for try := 0; try < 5; try++ {
		n := 100 + rand.IntN(400)
		sock := fmt.Sprintf("/tmp/.X11-unix/X%d", n)
		if _, err := os.Stat(sock); err == nil {
			continue
		}
		cmd := exec.Command("Xvfb", fmt.Sprintf(":%d", n), "-screen", "0", fmt.Sprintf("%dx%dx24", w, h), "-nolisten", "tcp")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			tb.Skipf("Xvfb cannot be started: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.After(10 * time.Second)
	wait:
		for {
			if _, err := os.Stat(sock); err == nil {
				tb.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); <-exited })
				return fmt.Sprintf(":%d", n)
			}
			select {
			case <-exited:
				break wait // display taken: try another
			case <-deadline:
				cmd.Process.Kill()
				<-exited
				tb.Skipf("Xvfb did not start within 10 s: %s", stderr.String())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	tb.Skip("Xvfb cannot be started: no free display")
	return ""
}

// app is one started keydesk.
type app struct {
	cmd     *exec.Cmd
	mark    string
	stderr  *bytes.Buffer
	started time.Time
	exited  chan error
}

// start runs keydesk with no arguments (the desktop app) on display, in
// practice mode, with its settings, data, keys and keyring entries in dir.
func start(tb testing.TB, bin, display, dir string) *app {
	tb.Helper()
	a := &app{mark: filepath.Join(dir, "first-frame"), stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	os.Remove(a.mark)
	a.cmd = exec.Command(bin)
	// Not in cmd/keydesk-desk: run from a source folder holding FyneApp.toml, a
	// development build takes its app id from it and Fyne then keeps (and
	// races on) a preferences file; an installed or `make run` keydesk has
	// none.
	a.cmd.Dir = dir
	a.cmd.Env = append(os.Environ(),
		"DISPLAY="+display,
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_STATE_HOME="+filepath.Join(dir, "state"),
		"KEYDESK_SIM_DIR="+filepath.Join(dir, "sim"),
		"KEYDESK_PRACTICE=auto",
		"KEYDESK_STARTUP_MARK="+a.mark,
		"KEYDESK_KEYRING_SERVICE=keydesk-smoke-"+filepath.Base(dir),
	)
	a.cmd.Stderr = a.stderr
	a.started = time.Now()
	if err := a.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { a.exited <- a.cmd.Wait() }()
	return a
}

// firstFrame waits for the app's first-frame mark and returns how long
// after the start it was painted.
func (a *app) firstFrame(timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(a.mark)
		if err == nil {
			ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				return 0, err
			}
			return time.Unix(0, ns).Sub(a.started), nil
		}
		select {
		case err := <-a.exited:
			return 0, fmt.Errorf("keydesk exited before its first frame: %v\n%s", err, a.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return 0, errors.New("no first frame within " + timeout.String())
}

// rss is the app's resident memory in bytes.
func (a *app) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// stop ends the app as a desktop session would (SIGTERM) and waits.
func (a *app) stop() error {
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.exited:
		return err
	case <-time.After(15 * time.Second):
		a.cmd.Process.Kill()
		<-a.exited
		return errors.New("keydesk did not exit within 15 s of SIGTERM")
	}
}

// screenshot captures display with xwd.
func screenshot(tb testing.TB, display string) *image.RGBA {
	tb.Helper()
	out, err := exec.Command("xwd", "-root", "-silent", "-display", display).Output()
	if err != nil {
		tb.Fatalf("xwd (x11-apps) could not capture the display: %v", err)
	}
	img, err := readXWD(out)
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// drawn says whether img shows a drawn window: many colours, and no one
// colour covering nearly all of it (an empty X root is one colour).
func drawn(img *image.RGBA) (colours int, top float64) {
	count := map[[3]uint8]int{}
	px := img.Pix
	for i := 0; i+3 < len(px); i += 4 {
		count[[3]uint8{px[i], px[i+1], px[i+2]}]++
	}
	most := 0
	for _, n := range count {
		most = max(most, n)
	}
	return len(count), float64(most) / float64(len(px)/4)
}

func savePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, img)
}

// TestSmoke starts the real binary with no arguments under Xvfb, in
// practice mode, and checks that the window painted its first frame and
// that a screenshot of the display shows a drawn window, that stderr
// stayed clean, and that SIGTERM ends it and its practice keys.
// KEYDESK_SCREENSHOT_DIR keeps the screenshot there.
func TestSmoke(t *testing.T) {
	display := xvfb(t)
	dir := t.TempDir()
	bin := build(t, dir)
	a := start(t, bin, display, dir)
	d, err := a.firstFrame(60 * time.Second)
	if err != nil {
		a.stop()
		t.Fatal(err)
	}
	t.Logf("first frame %v after start", d)
	var img *image.RGBA
	var colours int
	var top float64
	deadline := time.Now().Add(30 * time.Second)
	for {
		img = screenshot(t, display)
		colours, top = drawn(img)
		if colours > 50 && top < 0.9 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out := os.Getenv("KEYDESK_SCREENSHOT_DIR"); out != "" {
		if err := savePNG(filepath.Join(out, "smoke.png"), img); err != nil {
			t.Error(err)
		}
	}
	savePNG(filepath.Join(dir, "smoke.png"), img)
	if colours <= 50 || top >= 0.9 {
		a.stop()
		t.Fatalf("the screen looks empty: %d colours, the commonest covers %.0f%%", colours, 100*top)
	}
	if err := a.stop(); err != nil {
		t.Fatalf("%v\n%s", err, a.stderr.String())
	}
	if s := a.stderr.String(); s != "" {
		t.Errorf("keydesk wrote to stderr:\n%s", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "sim", "control.sock")); err == nil {
		t.Error("the practice keys' control socket is still there after keydesk exited")
	}
}
