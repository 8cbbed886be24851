package sim

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/pcscd"
	"github.com/keydesk/keydesk/device/virtual/vpcd"
	"github.com/keydesk/keydesk/internal/osdirs"
)

// FirstSerial is the serial of the first virtual key a fresh state directory
// gets; later keys count up from it.
const FirstSerial = 31000001

// DefaultStateDir is where keydesk-sim keeps its keys unless told
// otherwise: keydesk/sim in the user's state directory (osdirs.State;
// $XDG_STATE_HOME or ~/.local/state on Linux).
func DefaultStateDir() string {
	d, err := osdirs.State()
	if err != nil {
		return filepath.Join(os.TempDir(), "keydesk-sim")
	}
	return filepath.Join(d, "keydesk", "sim")
}

const usage = `keydesk-sim runs virtual YubiKey 5s that real PC/SC software reaches.

  keydesk-sim run [--keys N] [--state DIR] [--firmware X.Y.Z] [--touch auto|manual]
  keydesk-sim insert|remove|touch|power-cycle|replace SERIAL [--state DIR]
  keydesk-sim list [--state DIR]

run starts a private pcscd and the keys, prints how to reach them, and stops
everything on Ctrl-C. The other commands talk to a running 'run' over its
control socket in the state directory.
`

// Main is keydesk-sim's entry point.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("keydesk-sim "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", DefaultStateDir(), "directory holding the virtual keys' state and the control socket")
	switch cmd {
	case "run":
		keys := fs.Int("keys", 2, "how many virtual keys (a primary and a backup by default)")
		fw := fs.String("firmware", "5.7.2", "firmware version for keys created now")
		touch := fs.String("touch", "auto", "auto: touches happen at once; manual: wait for 'keydesk-sim touch'")
		if err := fs.Parse(rest); err != nil {
			return err
		}
		v, err := virtual.ParseVersion(*fw)
		if err != nil {
			return err
		}
		if *keys < 1 || *keys > pcscd.MaxReaders {
			return fmt.Errorf("--keys must be 1 to %d (one pcscd carries %d virtual readers)", pcscd.MaxReaders, pcscd.MaxReaders)
		}
		mode := virtual.TouchAuto
		switch *touch {
		case "auto":
		case "manual":
			mode = virtual.TouchManual
		default:
			return fmt.Errorf("--touch must be auto or manual, not %q", *touch)
		}
		return run(ctx, *state, *keys, v, mode, stdout)
	case "insert", "remove", "touch", "power-cycle", "replace", "list":
		var serial string
		if cmd != "list" {
			if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
				return fmt.Errorf("usage: keydesk-sim %s SERIAL", cmd)
			}
			serial, rest = rest[0], rest[1:]
		}
		if err := fs.Parse(rest); err != nil {
			return err
		}
		reply, err := control(*state, strings.TrimSpace(cmd+" "+serial))
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, reply)
		return nil
	}
	return fmt.Errorf("unknown command %q\n\n%s", cmd, usage)
}

// Fleet is a set of running virtual keys behind one private pcscd.
type Fleet struct {
	Daemon *pcscd.Daemon
	Keys   []*YubiKey
	Slots  []*vpcd.Slot

	mu      sync.Mutex
	ctx     context.Context
	dir     string
	fw      virtual.Version
	cancels []context.CancelFunc
	next    uint32 // the serial the next replacement key gets
}

// Start starts a private pcscd and n virtual keys whose state lives in dir
// (key-SERIAL.json files; existing ones are loaded first).
func Start(ctx context.Context, dir string, n int, fw virtual.Version) (*Fleet, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "key-*.json"))
	f := &Fleet{ctx: ctx, dir: dir, fw: fw, next: FirstSerial + uint32(n)}
	for i := 0; i < n; i++ {
		opts := Options{Serial: FirstSerial + uint32(i), Firmware: fw}
		if i < len(paths) {
			opts.StatePath = paths[i]
		} else {
			opts.StatePath = filepath.Join(dir, fmt.Sprintf("key-%d.json", opts.Serial))
		}
		y, err := New(opts)
		if err != nil {
			return nil, err
		}
		f.Keys = append(f.Keys, y)
	}
	d, err := pcscd.Start(ctx, pcscd.Config{Readers: n, Dir: filepath.Join(dir, "pcscd")})
	if err != nil {
		return nil, err
	}
	f.Daemon = d
	hidDir := filepath.Join(dir, "hid")
	if err := os.MkdirAll(hidDir, 0o700); err != nil {
		d.Stop()
		return nil, err
	}
	for i, y := range f.Keys {
		if y.Serial() >= f.next {
			f.next = y.Serial() + 1
		}
		kctx, cancel := context.WithCancel(ctx)
		slot, err := y.Run(kctx, d.Addr(i), filepath.Join(hidDir, fmt.Sprintf("key-%d", y.Serial())))
		if err != nil {
			cancel()
			d.Stop()
			return nil, err
		}
		f.Slots = append(f.Slots, slot)
		f.cancels = append(f.cancels, cancel)
	}
	for _, s := range f.Slots {
		select {
		case <-s.Connected():
		case <-ctx.Done():
			d.Stop()
			return nil, ctx.Err()
		}
	}
	return f, nil
}

// Find returns the key with serial, or nil.
func (f *Fleet) Find(serial uint32) *YubiKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, y := range f.Keys {
		if y.Serial() == serial {
			return y
		}
	}
	return nil
}

// Replace pulls the key with serial out of its reader and plugs a
// factory-fresh key with a new serial into the same reader, as an admin at a
// desk with few USB ports does between enrolments. It returns when the new
// key's card is attached, with the new key.
func (f *Fleet) Replace(serial uint32) (*YubiKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := -1
	for j, y := range f.Keys {
		if y.Serial() == serial {
			i = j
		}
	}
	if i < 0 {
		return nil, fmt.Errorf("no virtual key with serial %d", serial)
	}
	old := f.Keys[i]
	f.cancels[i]()
	<-f.Slots[i].Done()
	if err := old.Wait(); err != nil {
		return nil, err
	}
	// pcscd must see the reader empty before the new card arrives, or a
	// client may read the new card under the old card's reader state.
	if err := f.Daemon.WaitCard(f.ctx, i, false); err != nil {
		return nil, err
	}
	opts := Options{Serial: f.next, Firmware: f.fw, StatePath: filepath.Join(f.dir, fmt.Sprintf("key-%d.json", f.next))}
	y, err := New(opts)
	if err != nil {
		return nil, err
	}
	y.Key.Presence.SetMode(old.Key.Presence.Mode())
	kctx, cancel := context.WithCancel(f.ctx)
	slot, err := y.Run(kctx, f.Daemon.Addr(i), filepath.Join(f.dir, "hid", fmt.Sprintf("key-%d", y.Serial())))
	if err != nil {
		cancel()
		return nil, err
	}
	f.next++
	f.Keys[i], f.Slots[i], f.cancels[i] = y, slot, cancel
	if err := f.Daemon.WaitCard(f.ctx, i, true); err != nil {
		return nil, err
	}
	return y, nil
}

// Stop ends the keys' transports (ctx must already be cancelled), saves state
// and stops pcscd.
func (f *Fleet) Stop() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var first error
	for i, y := range f.Keys {
		<-f.Slots[i].Done()
		if err := y.Wait(); err != nil && first == nil {
			first = err
		}
	}
	if err := f.Daemon.Stop(); err != nil && first == nil {
		first = err
	}
	return first
}

func run(parent context.Context, dir string, n int, fw virtual.Version, mode virtual.TouchMode, out io.Writer) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	f, err := Start(ctx, dir, n, fw)
	if err != nil {
		return err
	}
	for _, y := range f.Keys {
		y.Key.Presence.SetMode(mode)
	}
	// This process's own PC/SC client (used to confirm insertions and
	// removals) talks to the fleet's pcscd.
	os.Setenv("PCSCLITE_CSOCK_NAME", f.Daemon.Socket())
	if err := f.Serve(ctx, dir); err != nil {
		cancel()
		f.Stop()
		return err
	}

	fmt.Fprintf(out, "keydesk-sim: %d virtual YubiKey(s) running (practice mode; not real hardware)\n\n", n)
	for i, y := range f.Keys {
		id := y.Key.Identity()
		fmt.Fprintf(out, "  serial %d  %s  firmware %s\n    PC/SC reader: %s\n    FIDO device:  %s\n", id.Serial, id.Name(), id.Firmware, f.Daemon.Reader(i), y.HID.Path())
	}
	fmt.Fprintf(out, "\nPoint PC/SC software at these keys with:\n  export %s\n", shellQuote(f.Daemon.Env()))
	// ykman -r matches readers by substring and refuses to choose when more
	// than one matches; the vpcd driver always gives pcscd two readers, so
	// only a full reader name picks one key.
	fmt.Fprintf(out, "for example:  %s ykman -r %s info\n", shellQuote(f.Daemon.Env()), shellQuote(f.Daemon.Reader(0)))
	fmt.Fprintf(out, "FIDO2 tools open the device path:  fido2-token -I %s\n", shellQuote(f.Keys[0].HID.Path()))
	fmt.Fprintf(out, "\nFrom another terminal:  keydesk-sim insert|remove|touch|power-cycle SERIAL --state %s\n", dir)
	fmt.Fprintf(out, "State is kept in %s. Ctrl-C stops the keys and pcscd.\n", dir)

	<-ctx.Done()
	err = f.Stop()
	fmt.Fprintln(out, "keydesk-sim: stopped; state saved")
	return err
}

// Serve answers keydesk-sim's control commands (list, insert, remove, touch,
// power-cycle) on dir/control.sock until ctx ends.
func (f *Fleet) Serve(ctx context.Context, dir string) error {
	sock := filepath.Join(dir, "control.sock")
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	os.Chmod(sock, 0o600)
	context.AfterFunc(ctx, func() { ln.Close(); os.Remove(sock) })
	go serveControl(ctx, ln, f)
	return nil
}

func serveControl(ctx context.Context, ln net.Listener, f *Fleet) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			line, err := bufio.NewReader(io.LimitReader(conn, 256)).ReadString('\n')
			if err != nil && line == "" {
				return
			}
			fmt.Fprint(conn, handle(ctx, f, strings.Fields(line)))
		}()
	}
}

func handle(ctx context.Context, f *Fleet, words []string) string {
	if len(words) == 1 && words[0] == "list" {
		f.mu.Lock()
		defer f.mu.Unlock()
		var b strings.Builder
		for i, y := range f.Keys {
			state := "inserted"
			if !y.Key.Inserted() {
				state = "removed"
			}
			fmt.Fprintf(&b, "%d\t%s\t%s\n", y.Serial(), state, f.Daemon.Reader(i))
		}
		return b.String()
	}
	if len(words) != 2 {
		return "error: expected COMMAND SERIAL\n"
	}
	n, err := strconv.ParseUint(words[1], 10, 32)
	if err != nil {
		return "error: serial must be a number\n"
	}
	y := f.Find(uint32(n))
	if y == nil {
		return fmt.Sprintf("error: no virtual key with serial %d\n", n)
	}
	// Insert, remove and power-cycle answer once pcscd has seen the change,
	// so the next command finds the readers as the person left them.
	settle := func(present bool) string {
		i := f.index(y)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := f.Daemon.WaitCard(wctx, i, present); err != nil {
			return fmt.Sprintf(" (pcscd has not seen it yet: %v)", err)
		}
		return ""
	}
	switch words[0] {
	case "insert":
		y.Key.Insert()
		return fmt.Sprintf("ok: insert %d%s\n", n, settle(true))
	case "remove":
		y.Key.Remove()
		return fmt.Sprintf("ok: remove %d%s\n", n, settle(false))
	case "power-cycle":
		y.Key.PowerCycle()
		return fmt.Sprintf("ok: power-cycle %d%s\n", n, settle(true))
	case "replace":
		ny, err := f.Replace(uint32(n))
		if err != nil {
			return fmt.Sprintf("error: %v\n", err)
		}
		return fmt.Sprintf("ok: replace %d %d\n", n, ny.Serial())
	case "touch":
		if !y.Key.Presence.Touch() {
			return fmt.Sprintf("error: key %d is not waiting for a touch\n", n)
		}
	default:
		return fmt.Sprintf("error: unknown command %q\n", words[0])
	}
	return fmt.Sprintf("ok: %s %d\n", words[0], n)
}

// index is y's position in the fleet, which is its reader's.
func (f *Fleet) index(y *YubiKey) int {
	for i := range f.Keys {
		if f.Keys[i] == y {
			return i
		}
	}
	return -1
}

// Control sends one control command (list, insert, remove, touch,
// power-cycle, replace SERIAL) to the keydesk-sim running with state in dir
// and returns its answer.
func Control(dir, line string) (string, error) { return control(dir, line) }

func control(dir, line string) (string, error) {
	conn, err := net.Dial("unix", filepath.Join(dir, "control.sock"))
	if err != nil {
		return "", fmt.Errorf("no running keydesk-sim with state in %s (start one with 'keydesk-sim run'): %w", dir, err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintln(conn, line); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(conn, 64<<10))
	if err != nil {
		return "", err
	}
	if s := string(b); strings.HasPrefix(s, "error: ") {
		return "", errors.New(strings.TrimSpace(strings.TrimPrefix(s, "error: ")))
	}
	return string(b), nil
}

// shellQuote quotes s for a POSIX shell when it holds anything but plain
// path characters, so a printed command line works when pasted.
func shellQuote(s string) string {
	plain := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-=+:,@", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
