//go:build linux

// Package ptyhid carries a virtual key's CTAPHID reports over a Linux
// pseudo-terminal, so real libfido2 (which opens FIDO devices as character
// devices by path) reaches the virtual authenticator: pass Path to
// libfido2.NewDevice or to the fido2-* tools.
//
// libfido2 writes 65-byte reports (report ID 0, then 64 bytes) and reads
// 64-byte ones; the report-descriptor ioctls fail with ENOTTY on a pty and
// libfido2 falls back to 64-byte reports. The slave is in raw mode with
// VMIN=64, VTIME=0 so a client's read returns one whole report.
//
// The transport holds a slave descriptor of its own so that reading the
// master never fails while no client is connected, and watches the slave
// with inotify: when the last client closes it, replies nobody read are
// drained, a request in flight is cancelled and a half-received one is
// dropped, so the next client does not see a stale report. One window
// remains, which hidraw's per-open queues do not have: when a client leaves
// with an unread reply and another opens before the transport has noticed
// (within microseconds), the reports of the two cannot be told apart in the
// pty's single stream. The transport then clears nothing, so the newcomer
// never loses a reply of its own, but it may read the stale one first
// (libfido2 then fails the open with an rx error on the nonce mismatch).
package ptyhid

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/ctaphid"
)

const hostReport = 1 + ctaphid.ReportSize // report ID 0 + 64 bytes

// Device is the pseudo-terminal transport of one virtual key. Remove on the
// key makes it vanish (clients get I/O errors and the link disappears);
// Insert brings it back under the same link path.
type Device struct {
	key  *virtual.Key
	hid  *ctaphid.Device
	link string

	mu     sync.Mutex
	pty    *pty // nil while the key is removed
	closed bool
	unsub  func()
}

// Open starts the transport for key, handing complete requests to h (a
// *ctap.Authenticator). link, when not empty, is a path kept as a symbolic
// link to the current slave device; its directory must exist.
func Open(key *virtual.Key, h ctaphid.Handler, link string) (*Device, error) {
	d := &Device{key: key, link: link}
	fw := key.Identity().Firmware
	d.hid = ctaphid.New(h, d.write, ctaphid.Version{Major: fw.Major, Minor: fw.Minor, Build: fw.Patch}, ctaphid.CapWink|ctaphid.CapCBOR)
	if key.Inserted() {
		if err := d.attach(); err != nil {
			return nil, err
		}
	}
	d.unsub = key.Subscribe(d.event)
	return d, nil
}

// Path is the path clients open: the link when one was given, else the
// slave device. It is empty while the key is removed and no link was given.
func (d *Device) Path() string {
	if d.link != "" {
		return d.link
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pty == nil {
		return ""
	}
	return d.pty.slavePath
}

// SlavePath is the /dev/pts device the link points to now ("" when removed).
func (d *Device) SlavePath() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pty == nil {
		return ""
	}
	return d.pty.slavePath
}

// Departed returns a channel closed the next time the last client closes
// the device and the transport has cleared what it left behind (nil while
// the key is removed). Tests use it instead of sleeping.
func (d *Device) Departed() <-chan struct{} {
	d.mu.Lock()
	p := d.pty
	d.mu.Unlock()
	if p == nil {
		return nil
	}
	p.depMu.Lock()
	defer p.depMu.Unlock()
	return p.dep
}

// Close stops the transport and removes the link.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	p := d.pty
	d.pty = nil
	d.mu.Unlock()
	d.unsub()
	d.hid.Reset()
	if p != nil {
		p.close()
	}
	if d.link != "" {
		os.Remove(d.link)
	}
	return nil
}

func (d *Device) event(e virtual.Event) {
	switch e {
	case virtual.Removed:
		d.mu.Lock()
		p := d.pty
		d.pty = nil
		d.mu.Unlock()
		d.hid.Reset()
		if p != nil {
			p.close()
		}
		if d.link != "" {
			os.Remove(d.link)
		}
	case virtual.Inserted:
		d.attach() // an error leaves the key unreachable, as a broken port would
	case virtual.PowerCycled:
		d.hid.Reset()
	}
}

func (d *Device) attach() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.pty != nil {
		return nil
	}
	p, err := openPTY(d.hid)
	if err != nil {
		return err
	}
	if d.link != "" {
		os.Remove(d.link)
		if err := os.Symlink(p.slavePath, d.link); err != nil {
			p.close()
			return fmt.Errorf("linking %s: %w", d.link, err)
		}
	}
	d.pty = p
	return nil
}

// write sends one device-to-host report; it never blocks the CTAPHID state
// machine (reports for a vanished device are dropped).
func (d *Device) write(report []byte) {
	d.mu.Lock()
	p := d.pty
	d.mu.Unlock()
	if p != nil {
		p.send(report)
	}
}

// pty is one master/slave pair and its loops.
type pty struct {
	hid       *ctaphid.Device
	master    int
	keeper    int // our own slave descriptor
	inotify   int
	stopR     int
	stopW     int
	slavePath string
	out       chan outItem
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	depMu     sync.Mutex
	dep       chan struct{}
}

func openPTY(hid *ctaphid.Device) (*pty, error) {
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	p := &pty{hid: hid, master: master, keeper: -1, inotify: -1, stopR: -1, stopW: -1, out: make(chan outItem, 1024), done: make(chan struct{}), dep: make(chan struct{})}
	fail := func(err error) (*pty, error) {
		p.closeFDs()
		return nil, err
	}
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return fail(fmt.Errorf("unlocking pty: %w", err))
	}
	n, err := unix.IoctlGetInt(master, unix.TIOCGPTN)
	if err != nil {
		return fail(fmt.Errorf("reading pty number: %w", err))
	}
	p.slavePath = fmt.Sprintf("/dev/pts/%d", n)
	if p.keeper, err = unix.Open(p.slavePath, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0); err != nil {
		return fail(fmt.Errorf("opening %s: %w", p.slavePath, err))
	}
	if err := rawMode(p.keeper); err != nil {
		return fail(err)
	}
	if p.inotify, err = unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK); err != nil {
		return fail(fmt.Errorf("inotify: %w", err))
	}
	if _, err := unix.InotifyAddWatch(p.inotify, p.slavePath, unix.IN_OPEN|unix.IN_CLOSE); err != nil {
		return fail(fmt.Errorf("watching %s: %w", p.slavePath, err))
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return fail(err)
	}
	p.stopR, p.stopW = fds[0], fds[1]
	p.wg.Add(2)
	go p.readLoop()
	go p.writeLoop()
	return p, nil
}

// rawMode is cfmakeraw with VMIN=64, VTIME=0.
func rawMode(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("reading termios: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = ctaphid.ReportSize
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("setting raw mode: %w", err)
	}
	return nil
}

func (p *pty) closeFDs() {
	for _, fd := range []int{p.master, p.keeper, p.inotify, p.stopR, p.stopW} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

func (p *pty) close() {
	p.closeOnce.Do(func() {
		close(p.done)
		unix.Write(p.stopW, []byte{0})
		p.wg.Wait()
		p.closeFDs()
	})
}

// outItem is a report to write, or (done set) a flush marker.
type outItem struct {
	report []byte
	done   chan struct{}
}

func (p *pty) send(report []byte) {
	select {
	case p.out <- outItem{report: report}:
	case <-p.done:
	default:
		// A client that stopped reading while 1024 reports queued up:
		// drop, as a USB host controller would once its buffers overflow.
	}
}

// readLoop reassembles 65-byte host reports and watches for clients leaving.
func (p *pty) readLoop() {
	defer p.wg.Done()
	var buf []byte
	chunk := make([]byte, 4096)
	opens := 0
	ev := make([]byte, 4096)
	readMaster := func() bool {
		for {
			n, err := unix.Read(p.master, chunk)
			if n > 0 {
				buf = append(buf, chunk[:n]...)
				for len(buf) >= hostReport {
					p.hid.Receive(buf[1:hostReport])
					buf = buf[hostReport:]
				}
			}
			if err != nil {
				return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EIO) || errors.Is(err, unix.EINTR)
			}
			if n == 0 {
				return true
			}
		}
	}
	for {
		fds := []unix.PollFd{{Fd: int32(p.inotify), Events: unix.POLLIN}, {Fd: int32(p.master), Events: unix.POLLIN}, {Fd: int32(p.stopR), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if fds[2].Revents != 0 {
			return
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			if !readMaster() {
				return
			}
			continue
		}
		// Clients came or went. Collect the batch of events first.
		n, _ := unix.Read(p.inotify, ev)
		var masks []uint32
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			e := (*unix.InotifyEvent)(unsafePointer(&ev[off]))
			masks = append(masks, e.Mask)
			off += unix.SizeofInotifyEvent + int(e.Len)
		}
		for i, m := range masks {
			switch {
			case m&unix.IN_OPEN != 0:
				opens++
			case m&(unix.IN_CLOSE_WRITE|unix.IN_CLOSE_NOWRITE) != 0:
				opens--
				if opens > 0 {
					continue
				}
				opens = 0
				laterOpen := false
				for _, m2 := range masks[i+1:] {
					laterOpen = laterOpen || m2&unix.IN_OPEN != 0
				}
				if laterOpen {
					// Another client is already there and its reports
					// may be mixed with the leaver's: clearing anything
					// now could swallow its replies, so leave it.
					continue
				}
				// Everything still in the master came from the client
				// that left: handle it so its replies are queued, then
				// clear them, unless someone opened meanwhile.
				if !readMaster() {
					return
				}
				if p.eventsPending() {
					continue
				}
				buf = buf[:0]
				p.hid.Abandon()
				p.flush()
				p.drain()
				p.departed()
			}
		}
		if !readMaster() {
			return
		}
	}
}

// eventsPending reports whether inotify has events not yet read.
func (p *pty) eventsPending() bool {
	fds := []unix.PollFd{{Fd: int32(p.inotify), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err != nil || n > 0
}

// departed signals that the last client has gone and its leftovers are
// cleared.
func (p *pty) departed() {
	p.depMu.Lock()
	close(p.dep)
	p.dep = make(chan struct{})
	p.depMu.Unlock()
}

// flush waits until every report queued so far is in the slave's queue.
func (p *pty) flush() {
	done := make(chan struct{})
	select {
	case p.out <- outItem{done: done}:
	case <-p.done:
		return
	}
	select {
	case <-done:
	case <-p.done:
	}
}

// drain discards replies queued for a client that has gone.
func (p *pty) drain() {
	b := make([]byte, 4096)
	for {
		n, err := unix.Read(p.keeper, b)
		if n <= 0 || err != nil {
			return
		}
	}
}

func (p *pty) writeLoop() {
	defer p.wg.Done()
	for {
		select {
		case <-p.done:
			return
		case it := <-p.out:
			if it.done != nil {
				close(it.done)
				continue
			}
			r := it.report
			for len(r) > 0 {
				n, err := unix.Write(p.master, r)
				if n > 0 {
					r = r[n:]
				}
				if err == nil {
					continue
				}
				if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
					break
				}
				fds := []unix.PollFd{{Fd: int32(p.master), Events: unix.POLLOUT}, {Fd: int32(p.stopR), Events: unix.POLLIN}}
				unix.Poll(fds, -1)
				if fds[1].Revents != 0 {
					return
				}
			}
		}
	}
}
