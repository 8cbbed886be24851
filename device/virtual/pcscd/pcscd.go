//go:build linux

// Package pcscd runs a private pcscd (pcsc-lite) with vpcd readers for
// virtual YubiKeys, without disturbing a pcscd the machine already runs.
//
// pcsc-lite's daemon always creates its socket in /run/pcscd, but its client
// library honours PCSCLITE_CSOCK_NAME. So the daemon is started in its own
// mount namespace with a private directory bind-mounted over /run/pcscd, and
// clients (piv-go, ykman, yubico-piv-tool, OpenSC) are pointed at that
// directory's socket through the environment.
package pcscd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DriverPath is where Debian's vsmartcard-vpcd installs the reader driver.
const DriverPath = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"

// ReaderName is the friendly name of keydesk's virtual readers. It contains
// "Yubico YubiKey" so ykman and other tools treat the reader as a YubiKey's
// CCID interface, and says plainly that it is virtual.
const ReaderName = "Yubico YubiKey OTP+FIDO+CCID (keydesk virtual)"

// MaxReaders is how many virtual readers one daemon can have: the vpcd driver
// keeps its state per slot in globals shared by every reader.conf entry, so
// only one entry — with its two slots — works per pcscd.
const MaxReaders = 2

// Config describes the daemon to start.
type Config struct {
	// Readers is how many virtual readers to create: 1 (default) or 2.
	Readers int
	// Dir is where the socket, pid file and reader.conf go; a temporary
	// directory when empty.
	Dir string
	// Log, when not nil, receives pcscd's output (pcscd -f -a logs APDUs;
	// set APDULog for that).
	Log     *os.File
	APDULog bool
}

// Daemon is a running private pcscd.
type Daemon struct {
	dir     string
	ownDir  bool
	ports   []int
	names   []string
	cmd     *exec.Cmd
	args    []string // the command line that runs pcscd, for Restart
	log     *os.File
	exited  chan struct{}
	waitErr error
}

// ErrUnavailable means the machine lacks what a private pcscd needs.
var ErrUnavailable = errors.New("private pcscd unavailable")

// Start starts pcscd and waits until it accepts clients and its vpcd readers
// listen. Stop it with Stop.
func Start(ctx context.Context, cfg Config) (*Daemon, error) {
	if cfg.Readers <= 0 {
		cfg.Readers = 1
	}
	if cfg.Readers > MaxReaders {
		return nil, fmt.Errorf("%d virtual readers asked for; one pcscd with the vpcd driver has at most %d", cfg.Readers, MaxReaders)
	}
	pcscdPath, err := exec.LookPath("pcscd")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/pcscd"); e == nil {
			pcscdPath = "/usr/sbin/pcscd"
		} else {
			return nil, fmt.Errorf("%w: pcscd is not installed (packaging/install-deps.sh installs it)", ErrUnavailable)
		}
	}
	if _, err := os.Stat(DriverPath); err != nil {
		return nil, fmt.Errorf("%w: vpcd driver missing at %s (install vsmartcard-vpcd)", ErrUnavailable, DriverPath)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, fmt.Errorf("%w: unshare (util-linux) not found", ErrUnavailable)
	}

	d := &Daemon{dir: cfg.Dir, exited: make(chan struct{})}
	if d.dir == "" {
		if d.dir, err = os.MkdirTemp("", "keydesk-pcscd-"); err != nil {
			return nil, err
		}
		d.ownDir = true
	}
	run, confDir := filepath.Join(d.dir, "run"), filepath.Join(d.dir, "reader.conf.d")
	for _, p := range []string{run, confDir} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
	}
	// vpcd opens two readers per configuration entry, on PORT and PORT+1.
	port, err := freePortPair()
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("FRIENDLYNAME \"%s\"\nDEVICENAME /dev/null:0x%X\nLIBPATH %s\nCHANNELID 0x%X\n", ReaderName, port, DriverPath, port)
	for j := 0; j < cfg.Readers; j++ {
		d.ports = append(d.ports, port+j)
		// pcscd appends "XX YY": the reader's index among readers of the
		// same name, and the slot.
		d.names = append(d.names, fmt.Sprintf("%s 00 %02X", ReaderName, j))
	}
	if err := os.WriteFile(filepath.Join(confDir, "vpcd"), []byte(conf), 0o644); err != nil {
		return nil, err
	}

	flags := []string{"-m"}
	if os.Geteuid() != 0 {
		flags = []string{"-rm"} // an unprivileged user namespace maps us to root inside
	}
	pcscdArgs := "-f -c " + shellQuote(confDir)
	if cfg.APDULog {
		pcscdArgs += " -a -d"
	}
	script := fmt.Sprintf("mount --bind %s /run/pcscd 2>/dev/null || { mkdir -p /run/pcscd && mount --bind %s /run/pcscd; } && exec %s %s",
		shellQuote(run), shellQuote(run), shellQuote(pcscdPath), pcscdArgs)
	if !rootIsMount() {
		// In a chroot whose root is not a mount point, unshare cannot make
		// "/" private (EINVAL). Keep propagation as it is and make private
		// only the mount that holds /run, so the bind mount over
		// /run/pcscd stays in the new namespace.
		flags = append(flags, "--propagation", "unchanged")
		script = `mp=$(findmnt -n -o TARGET --target /run 2>/dev/null) && [ -n "$mp" ] && mount --make-rprivate "$mp"; ` + script
	}
	d.args, d.log = append(append([]string{unshare}, flags...), "sh", "-c", script), cfg.Log
	if err := d.run(ctx); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// rootIsMount reports whether "/" is a mount point of this process's view
// (/proc/self/mountinfo, proc(5)); in a chroot into a plain directory it
// is not.
func rootIsMount() bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return true
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == "/" {
			return true
		}
	}
	return false
}

// run starts pcscd and waits until it is ready.
func (d *Daemon) run(ctx context.Context) error {
	d.exited = make(chan struct{})
	d.cmd = exec.Command(d.args[0], d.args[1:]...)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if d.log != nil {
		d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	}
	if err := d.cmd.Start(); err != nil {
		close(d.exited)
		return fmt.Errorf("starting pcscd: %w", err)
	}
	exited := d.exited
	go func() { d.waitErr = d.cmd.Wait(); close(exited) }()
	return d.waitReady(ctx)
}

// halt ends pcscd (SIGTERM, then SIGKILL after 3 s) and waits for it.
func (d *Daemon) halt() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(3 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// Restart stops pcscd and starts it again on the same socket and reader
// ports, as a system's pcscd restarts under running applications: every
// PC/SC context and card handle open in a client is lost, and virtual cards
// reconnect to the readers on their own. It returns once the new daemon is
// ready.
func (d *Daemon) Restart(ctx context.Context) error {
	d.halt()
	os.Remove(d.Socket())
	return d.run(ctx)
}

func (d *Daemon) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ready := true
		// The socket file appears at bind(2); only a connection proves
		// pcscd is listening on it.
		if c, err := net.DialTimeout("unix", d.Socket(), time.Second); err != nil {
			ready = false
		} else {
			c.Close()
		}
		for _, p := range d.ports {
			ready = ready && listening(p)
		}
		if ready {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("%w: pcscd exited during start-up: %v", ErrUnavailable, d.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pcscd not ready after 10s (socket %s, ports %v)", d.Socket(), d.ports)
		}
	}
}

// Socket is the path clients reach the daemon at.
func (d *Daemon) Socket() string { return filepath.Join(d.dir, "run", "pcscd.comm") }

// Env is the environment entry that points PC/SC clients at this daemon.
func (d *Daemon) Env() string { return "PCSCLITE_CSOCK_NAME=" + d.Socket() }

// Readers is how many virtual readers the daemon has.
func (d *Daemon) Readers() int { return len(d.ports) }

// Reader is the full PC/SC name of reader i.
func (d *Daemon) Reader(i int) string { return d.names[i] }

// Addr is where a virtual card for reader i connects.
func (d *Daemon) Addr(i int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(d.ports[i])) }

// Stop ends the daemon and removes its directory if Start created it.
func (d *Daemon) Stop() error {
	d.halt()
	if d.ownDir {
		return os.RemoveAll(d.dir)
	}
	return nil
}

// Exited is closed if the daemon stops (for example, killed by a test).
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

func freePortPair() (int, error) {
	for try := 0; try < 50; try++ {
		p := 20000 + rand.IntN(40000)
		l1, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", fmt.Sprintf(":%d", p+1))
		l1.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return p, nil
	}
	return 0, errors.New("no free pair of TCP ports for vpcd")
}

// listening reports whether something listens on TCP port p, from
// /proc/net/tcp and tcp6 (connecting would look like a card insertion).
func listening(p int) bool {
	want := fmt.Sprintf(":%04X", p)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 3 && strings.HasSuffix(fields[1], want) && fields[3] == "0A" {
				fh.Close()
				return true
			}
		}
		fh.Close()
	}
	return false
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// RunTests is a TestMain for packages whose tests talk PC/SC: it starts one
// private daemon with the given readers, points this process's PC/SC client
// at it, runs the tests, stops the daemon and exits. One daemon per test
// binary, because libpcsclite reads PCSCLITE_CSOCK_NAME once per process.
func RunTests(m interface{ Run() int }, readers int, daemon **Daemon) {
	d, err := Start(context.Background(), Config{Readers: readers})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting a private pcscd for the tests:", err)
		os.Exit(1)
	}
	*daemon = d
	os.Setenv("PCSCLITE_CSOCK_NAME", d.Socket())
	code := m.Run()
	d.Stop()
	os.Exit(code)
}
