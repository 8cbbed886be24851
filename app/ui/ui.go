// Package ui is keydesk's desktop app: the shell that opens the main window,
// lists the screens the person's registry role sees, owns the live key
// list, the registry connection and the role, and hands each screen a
// uikit.Env. The screens live in their own packages (app/ui/keysui, …) and
// are listed once, in screens.go.
//
// Start-up order keeps the first frame fast: the window is shown with
// nothing slow behind it; practice keys, the key watcher and the registry
// connection start after Fyne has painted the first frame.
package ui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/container"

	"github.com/keydesk/keydesk/app/helpdeskid"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/pcsc"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/internal/residency"
	"github.com/keydesk/keydesk/registry/client"
)

// Options say how the app starts.
type Options struct {
	// Practice is "auto" (practice-mode virtual keys when no YubiKey is
	// attached; what `make run` sets), "1" (always virtual keys) or ""
	// (the settings' practice flag decides). KEYDESK_PRACTICE sets it.
	Practice string
	// SimDir is the practice keys' state directory; sim.DefaultStateDir
	// when empty.
	SimDir string
	// StartupMark, when set, is a file written once the first frame is
	// painted (KEYDESK_STARTUP_MARK), for the start-up benchmark.
	StartupMark string
	// UIDump, when set, is a file the window's layout is written to while
	// it changes (KEYDESK_UI_DUMP; uidump.go), for tests that drive the
	// real binary.
	UIDump string
	// HeapProfile, when set, is a file a heap profile is written to when
	// the window closes (KEYDESK_HEAP_PROFILE; `go tool pprof`), to see
	// where memory went after a session.
	HeapProfile string
	// MemDump, when set, is a file the Go runtime's memory figures are
	// written to when asked (KEYDESK_MEM_DUMP; memdump.go), to measure
	// where the app's memory is while it runs.
	MemDump string
}

// OptionsFromEnv reads Options from KEYDESK_PRACTICE, KEYDESK_SIM_DIR,
// KEYDESK_STARTUP_MARK, KEYDESK_UI_DUMP, KEYDESK_HEAP_PROFILE and
// KEYDESK_MEM_DUMP.
func OptionsFromEnv() Options {
	return Options{
		Practice:    os.Getenv("KEYDESK_PRACTICE"),
		SimDir:      os.Getenv("KEYDESK_SIM_DIR"),
		StartupMark: os.Getenv("KEYDESK_STARTUP_MARK"),
		UIDump:      os.Getenv("KEYDESK_UI_DUMP"),
		HeapProfile: os.Getenv("KEYDESK_HEAP_PROFILE"),
		MemDump:     os.Getenv("KEYDESK_MEM_DUMP"),
	}
}

// Run opens the main window and returns when it is closed or ctx ends.
func Run(ctx context.Context, opt Options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// On a desktop with no session bus, Fyne's portal calls and the
	// keyring would start one (dbus-launch) that outlives the app.
	secrets.PreventBusAutolaunch()
	// No app id: keydesk keeps its settings in app/settings, not in
	// Fyne's preferences, and with an id Fyne watches its preferences file
	// and logs a load error when it reads the file while saving it at exit.
	a := app.New()
	d := newDesk(ctx, a, opt)
	w := a.NewWindow(d.title())
	d.env.Window = w
	// The theme is set before anything is built, so every widget starts in
	// it.
	a.Settings().SetTheme(Theme(false))
	d.shell = NewShell(d.env, Screens())
	d.shell.OnRefresh = d.rescan
	d.shell.SetPractice(d.practice)
	d.shell.Shortcuts(w)
	d.shell.SetDark(false)
	var once sync.Once
	mark := firstFrame(func() { once.Do(func() { go d.afterFirstFrame() }) })
	w.SetContent(container.NewStack(d.shell.Root, container.NewWithoutLayout(mark)))
	w.Resize(fyne.NewSize(1280, 800))
	w.SetMaster()
	w.SetOnClosed(cancel)
	// The key state model looks at the keys every half second only while
	// the window is in the foreground: no card traffic while the desk sits
	// behind other windows; coming back, it looks at once.
	a.Lifecycle().SetOnEnteredForeground(func() { d.env.SetForeground(true) })
	a.Lifecycle().SetOnExitedForeground(func() { d.env.SetForeground(false) })
	// Should the marker never be painted (a driver that does not draw
	// rasters), the rest still starts.
	time.AfterFunc(3*time.Second, func() { once.Do(func() { go d.afterFirstFrame() }) })
	if d.settingsErr != nil {
		time.AfterFunc(500*time.Millisecond, func() {
			d.do(func() { uikit.ShowError("Settings", d.settingsErr, w) })
		})
	}
	// Fyne quits by itself on SIGINT and SIGTERM, but only once its own
	// signal handler is registered, which a signal right after start can
	// beat. So when ctx ends, give Fyne a second to have quit, then quit
	// it; a Quit that comes after Fyne's loop has ended (it panics inside
	// GLFW) is dropped.
	loopDone := make(chan struct{})
	context.AfterFunc(ctx, func() {
		select {
		case <-loopDone:
			return
		case <-time.After(time.Second):
		}
		uikit.Do(func() {
			defer func() { recover() }()
			a.Quit()
		})
	})
	if opt.UIDump != "" {
		go dumpLayout(ctx, w, d.shell.Content, d.shell.Viewport, opt.UIDump)
	}
	if opt.MemDump != "" {
		go dumpMemory(ctx, opt.MemDump)
	}
	w.ShowAndRun()
	close(loopDone)
	d.env.MarkClosed()
	cancel()
	d.close()
	if opt.HeapProfile != "" {
		writeHeapProfile(opt.HeapProfile)
	}
	return nil
}

// desk is one running app's services.
type desk struct {
	ctx         context.Context
	opt         Options
	env         *uikit.Env
	shell       *Shell
	practice    bool
	settingsErr error

	mu       sync.Mutex
	settings settings.Settings
	conn     *regconn.Conn
	connErr  error
	ready    chan struct{} // closed when conn/connErr are set
	fleet    *sim.Fleet
	stopSim  context.CancelFunc
	// helpdeskID is where the practice desk's helpdesk identity comes
	// from (practiceIdentity); nil on a real desk.
	helpdeskID  *helpdeskid.Source
	toldKeyring bool
	watching    context.CancelFunc
	// keyring holds a remote registry's token; secrets.Default() when nil
	// (tests set their own).
	keyring *secrets.Keyring
	// lost is why the registry stopped answering the change feed in the
	// middle of the session, in plain words; "" while it answers.
	lost string
}

func newDesk(ctx context.Context, a fyne.App, opt Options) *desk {
	d := &desk{ctx: ctx, opt: opt, ready: make(chan struct{})}
	if d.opt.SimDir == "" {
		d.opt.SimDir = sim.DefaultStateDir()
	}
	d.settings, d.settingsErr = loadSettings()
	switch strings.ToLower(opt.Practice) {
	case "auto":
		d.practice = !realKeyAttached()
	case "1", "on", "true", "yes":
		d.practice = true
	default:
		d.practice = d.settings.Practice
	}
	if d.practice {
		d.settings.Practice = true
	}
	d.env = &uikit.Env{App: a, Ctx: ctx, Feed: &uikit.KeyFeed{}, Settings: d.currentSettings, Registry: d.registry}
	// Until the registry says whose token this is: the embedded registry's
	// desk token is an admin's; a remote token gets the least.
	d.env.Role = uikit.Self
	if d.settings.Embedded() {
		d.env.Role = uikit.Admin
	}
	d.env.Reconnect = d.reconnect
	d.env.RegistryAnswered = d.registryAnswered
	d.env.HelpdeskIdentity = d.helpdeskIdentity
	if d.practice {
		d.env.SimDir = d.opt.SimDir
	} else {
		d.env.Keys, _ = keys.New(keys.Config{FIDOInfo: fidoInfo})
	}
	return d
}

func (d *desk) title() string {
	if d.practice {
		return "keydesk — PRACTICE MODE (VIRTUAL KEYS)"
	}
	return "keydesk"
}

func fidoInfo(ctx context.Context, path string) (uint32, device.Version, bool, error) {
	return fidokey.Open(path).Info(ctx)
}

func loadSettings() (settings.Settings, error) {
	p, err := settings.DefaultPath()
	if err != nil {
		return settings.Default(), err
	}
	s, err := settings.Load(p)
	if err != nil {
		return settings.Default(), err
	}
	return s, nil
}

func (d *desk) currentSettings() settings.Settings {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settings
}

// registry waits for the connection opened after the first frame.
func (d *desk) registry(ctx context.Context) (*client.Client, error) {
	d.mu.Lock()
	ready := d.ready
	d.mu.Unlock()
	select {
	case <-ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.connErr != nil {
		return nil, d.connErr
	}
	if d.conn == nil {
		return nil, uikit.ErrNoRegistry
	}
	return d.conn.Client, nil
}

// afterFirstFrame starts what the first frame did not wait for: the
// practice keys, the key watcher, the registry connection and the role.
func (d *desk) afterFirstFrame() {
	if d.opt.StartupMark != "" {
		writeMark(d.opt.StartupMark)
	}
	go d.openRegistry()
	// Start-up leaves garbage behind (fonts parsed, layouts measured, the
	// registry's schema applied) and most of the executable mapped (every
	// package's initialisation ran); hand those pages back once things
	// have settled rather than at the runtime's leisure.
	time.AfterFunc(2*time.Second, func() {
		go trimWhenSettled(d.ctx)
	})
	if d.practice {
		d.status("Starting practice keys…")
		if err := d.startPractice(); err != nil {
			d.status("Practice keys did not start")
			d.do(func() { uikit.ShowError("Practice keys", err, d.env.Window) })
			return
		}
	}
	d.watch()
}

// writeHeapProfile writes the live heap, after a collection, to path.
func writeHeapProfile(path string) {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	pprof.Lookup("heap").WriteTo(f, 0)
}

// trimWhenSettled hands memory back once it has stopped growing: every 2 s
// it reads the resident size, and when that is at least 4 MB above what
// it was after the last trim and has stayed put since the previous look
// (the person's last action has finished), it returns the Go heap's free
// pages (FreeOSMemory), the C heap's (the GL driver's freed text textures,
// residency.TrimHeap) and the executable's pages read back for the screens
// just used (residency.Release; they come back from the file when used
// again). The first trim is at once: start-up's garbage and pages.
// Measured in docs/desktop-app.md ("Memory after the round").
func trimWhenSettled(ctx context.Context) {
	const grown = 4 << 20
	trim := func() int64 {
		debug.FreeOSMemory()
		residency.TrimHeap()
		residency.Release()
		return residency.Resident()
	}
	base := trim()
	prev := base
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := residency.Resident()
		if now-base >= grown && now-prev < 1<<20 && prev-now < 1<<20 {
			now = trim()
			base = now
		}
		prev = now
	}
}

func writeMark(path string) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(time.Now().UnixNano(), 10)+"\n"), 0o600); err == nil {
		os.Rename(tmp, path)
	}
}

// startPractice uses the practice keys of a keydesk-sim already running on
// SimDir, or starts two in this process, touched automatically.
func (d *desk) startPractice() error {
	dir := d.opt.SimDir
	if _, err := sim.Control(dir, "list"); err != nil {
		ctx, cancel := context.WithCancel(d.ctx)
		f, err := sim.Start(ctx, dir, 2, virtual.Version{Major: 5, Minor: 7, Patch: 2})
		if err != nil {
			cancel()
			return fmt.Errorf("starting practice keys in %s: %w", dir, err)
		}
		for _, y := range f.Keys {
			y.Key.Presence.SetMode(virtual.TouchAuto)
		}
		if err := f.Serve(ctx, dir); err != nil {
			cancel()
			f.Stop()
			return err
		}
		d.mu.Lock()
		d.fleet, d.stopSim = f, cancel
		d.mu.Unlock()
	}
	svc, err := keys.New(keys.Config{Practice: true, SimDir: dir, FIDOInfo: fidoInfo})
	if err != nil {
		return err
	}
	d.env.Keys = svc
	return nil
}

// watch publishes the attached keys on every change until the window
// closes, starting again when the watch fails (no pcscd yet).
func (d *desk) watch() {
	if d.env.Keys == nil {
		return
	}
	for d.ctx.Err() == nil {
		ch, err := d.env.Keys.Watch(d.ctx)
		if err != nil {
			// The error is the smart-card library's; what a person can
			// do about it is start the service, and keydesk tries again.
			d.status("Keys cannot be watched: " + pcsc.ServiceName() + " does not answer. Start it; keydesk keeps trying.")
			select {
			case <-d.ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			continue
		}
		for list := range ch {
			if d.ctx.Err() != nil {
				return
			}
			d.env.Feed.Publish(list)
			d.refreshStatus()
		}
	}
}

// rescan lists the keys once more (Ctrl+R).
func (d *desk) rescan() {
	svc := d.env.Keys
	if svc == nil {
		return
	}
	d.env.Go(func(ctx context.Context) error {
		list, err := svc.List(ctx)
		if err == nil {
			d.env.Feed.Publish(list)
		}
		return err
	}, func(err error) {
		if err != nil {
			uikit.ShowError("Listing keys", err, d.env.Window)
		}
	})
}

// openRegistry connects to the registry the settings name and asks it
// whose token the desk holds, which decides the screens shown.
func (d *desk) openRegistry() {
	if d.practice {
		d.practiceIdentity()
	}
	s := d.currentSettings()
	d.status("Connecting to the registry…")
	conn, err := regconn.Open(d.ctx, regconn.Options{Settings: s, Keyring: d.keyring})
	role, user := uikit.Role(""), ""
	if err == nil {
		role, user, err = RoleOf(d.ctx, conn.Client, conn.Embedded)
	}
	d.mu.Lock()
	d.conn, d.connErr = conn, err
	close(d.ready)
	d.mu.Unlock()
	if role != "" {
		d.do(func() { d.shell.SetRole(role, user) })
	}
	d.refreshStatus()
}

// RoleOf is the person's role and, for an engineer, their registry user:
// the embedded registry's desk token is an admin's; any other registry says
// whose token the client holds (GET /v1/whoami). A role the desktop app
// has no screens for (an authentication server's) is an error.
func RoleOf(ctx context.Context, c *client.Client, embedded bool) (uikit.Role, string, error) {
	if embedded {
		return uikit.Admin, "", nil
	}
	who, err := c.WhoAmI(ctx)
	if err != nil {
		return "", "", fmt.Errorf("asking the registry whose token this is: %w", err)
	}
	switch r := uikit.Role(who.Role); r {
	case uikit.Admin, uikit.Helpdesk, uikit.Self:
		return r, who.UserID, nil
	}
	return "", "", fmt.Errorf("the registry token is an %s token; the desk needs an admin, helpdesk or self token", who.Role)
}

// practiceIdentity gives a practice desk what enrolment and the helpdesk's
// PIN unblock need without any setting up and without a keyring
// (app/helpdeskid): with no helpdesk recipient in the settings, the
// practice identity in keydesk's data directory becomes the recipient for
// this session and the Helpdesk screen opens escrows with it. A real desk
// uses its settings' recipients and the OS keyring. A practice identity
// that cannot be made is left out: enrolment then says that a helpdesk
// recipient is missing.
func (d *desk) practiceIdentity() {
	s, src, _ := helpdeskid.Resolve(d.currentSettings(), helpdeskid.Options{})
	d.mu.Lock()
	d.settings.HelpdeskRecipients = s.HelpdeskRecipients
	d.helpdeskID = src
	d.mu.Unlock()
}

// helpdeskIdentity is the helpdesk's identity from where practiceIdentity
// found it, else the OS keyring's.
func (d *desk) helpdeskIdentity() (string, error) {
	d.mu.Lock()
	src := d.helpdeskID
	d.mu.Unlock()
	if src != nil {
		return src.Identity()
	}
	return secrets.Default().Get(secrets.HelpdeskIdentityAccount())
}

// reconnect reloads the settings and reopens the registry connection.
func (d *desk) reconnect() {
	s, err := loadSettings()
	d.mu.Lock()
	if err == nil {
		s.Practice = s.Practice || d.practice
		d.settings = s
	}
	old := d.conn
	d.conn, d.connErr, d.lost = nil, nil, ""
	d.ready = make(chan struct{})
	d.mu.Unlock()
	go func() {
		if old != nil {
			old.Close()
		}
		d.openRegistry()
	}()
}

// do runs f on the UI goroutine unless the window has closed: once Fyne's
// loop has ended there is no UI goroutine left to run it on.
func (d *desk) do(f func()) {
	if d.ctx.Err() == nil {
		uikit.Do(f)
	}
}

func (d *desk) status(text string) {
	d.do(func() {
		if d.shell != nil {
			d.shell.SetStatus(text)
		}
	})
}

// refreshStatus says where the registry is, as whom, and how many keys are
// attached.
func (d *desk) refreshStatus() {
	d.mu.Lock()
	conn, cerr, lost := d.conn, d.connErr, d.lost
	d.mu.Unlock()
	var parts []string
	var ue *secrets.UnavailableError
	switch {
	case errors.As(cerr, &ue):
		parts = append(parts, "Registry: not connected (no system keyring for its token)")
		d.tellOnce(&d.toldKeyring, "The registry's token needs a keyring", cerr)
	case cerr != nil:
		parts = append(parts, "Registry: not connected ("+registryWords(cerr)+")")
	case conn == nil:
		parts = append(parts, "Registry: connecting…")
	case lost != "" && conn.Embedded:
		parts = append(parts, "Registry (embedded): "+lost)
	case lost != "":
		parts = append(parts, "Registry at "+conn.URL+": "+lost)
	case conn.Embedded:
		parts = append(parts, "Registry: embedded on this desk")
	default:
		parts = append(parts, "Registry: "+conn.URL)
	}
	n := len(d.env.Feed.Current())
	parts = append(parts, uikit.Count(n, "key", "keys")+" attached")
	if d.practice {
		parts = append(parts, "PRACTICE MODE: keys are VIRTUAL")
	}
	text := strings.Join(parts, " · ")
	d.do(func() {
		parts := text
		if d.shell != nil {
			parts += " · role " + string(d.env.Role)
			d.shell.SetStatus(parts)
		}
	})
}

// registryWords is why the registry is not connected, for the status
// line: the plain reason and, in a few words, what to do.
func registryWords(err error) string {
	r := firstLine(uikit.Reason(err))
	var nt *regconn.NoTokenError
	switch {
	case errors.As(err, &nt):
		return "no token for it on this desk; store one in Settings"
	case errors.Is(err, uikit.ErrNoRegistry):
		return "none set; set one in Settings"
	}
	if _, storage := client.Storage(err); storage {
		return r
	}
	if errors.Is(err, client.ErrUnreachable) || errors.Is(err, client.ErrBadResponse) {
		return r + "; check that it is running and its address in Settings"
	}
	return r
}

// registryAnswered hears how each ask of the registry's change feed went
// (uikit.Env.RegistryAnswered) and puts it on the status line when that
// changes: a registry that goes away in the middle of a session is said
// to be unreachable, in plain words, until it answers again.
func (d *desk) registryAnswered(err error) {
	lost := ""
	if err != nil {
		lost = firstLine(uikit.Reason(err))
		if _, storage := client.Storage(err); !storage && (errors.Is(err, client.ErrUnreachable) || errors.Is(err, client.ErrBadResponse)) {
			lost += "; keydesk keeps trying"
		}
	}
	d.mu.Lock()
	changed := lost != d.lost && d.connErr == nil && d.conn != nil
	if changed {
		d.lost = lost
	}
	d.mu.Unlock()
	if changed {
		d.refreshStatus()
	}
}

// tellOnce shows err in a dialog the first time only: a desk that cannot
// reach its registry says why once, not at every reconnect.
func (d *desk) tellOnce(told *bool, title string, err error) {
	d.mu.Lock()
	first := !*told
	*told = true
	d.mu.Unlock()
	if first {
		d.do(func() { uikit.ShowError(title, err, d.env.Window) })
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func (d *desk) close() {
	if d.watching != nil {
		d.watching()
	}
	d.mu.Lock()
	conn, f, stop := d.conn, d.fleet, d.stopSim
	d.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
	if f != nil {
		stop()
		f.Stop()
	}
}

// realKeyAttached says whether a Yubico USB device (vendor 0x1050) is
// plugged in. It reads sysfs only: PC/SC must not be touched before
// practice mode has chosen its pcscd.
func realKeyAttached() bool {
	vendors, _ := filepath.Glob("/sys/bus/usb/devices/*/idVendor")
	for _, p := range vendors {
		b, err := os.ReadFile(p)
		if err == nil && strings.TrimSpace(string(b)) == "1050" {
			return true
		}
	}
	return false
}
