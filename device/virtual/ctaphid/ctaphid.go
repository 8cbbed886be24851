// Package ctaphid implements the authenticator side of CTAPHID, the framing
// FIDO authenticators speak over USB HID (CTAP 2.1 §11.2): 64-byte reports
// carrying initialization and continuation packets, channel allocation,
// PING, MSG, CBOR, WINK, LOCK, CANCEL, KEEPALIVE and ERROR.
//
// A Device knows nothing of the transport that carries its reports: feed it
// host-to-device reports with Receive and it writes device-to-host reports to
// the function given to New. It knows nothing of CTAP either: complete CBOR
// and MSG requests go to a Handler.
package ctaphid

import (
	"context"
	"encoding/binary"
	"sync"
	"time"
)

// ReportSize is the HID report size of a full-speed FIDO authenticator
// (CTAP 2.1 §11.2.4).
const ReportSize = 64

// MaxMessageSize is the largest message one initialization packet and 128
// continuation packets carry: 57 + 128×59 (CTAP 2.1 §11.2.4).
const MaxMessageSize = ReportSize - 7 + 128*(ReportSize-5)

// BroadcastCID is the channel on which INIT allocates new channels (CTAP 2.1 §11.2.3).
const BroadcastCID uint32 = 0xffffffff

// Commands (CTAP 2.1 §11.2.9).
const (
	CmdPing      byte = 0x01
	CmdMsg       byte = 0x03
	CmdLock      byte = 0x04
	CmdInit      byte = 0x06
	CmdWink      byte = 0x08
	CmdCBOR      byte = 0x10
	CmdCancel    byte = 0x11
	CmdKeepalive byte = 0x3b
	CmdError     byte = 0x3f
)

// Error codes carried by CTAPHID_ERROR (CTAP 2.1 §11.2.9.1.6).
const (
	ErrInvalidCmd     byte = 0x01
	ErrInvalidPar     byte = 0x02
	ErrInvalidLen     byte = 0x03
	ErrInvalidSeq     byte = 0x04
	ErrMsgTimeout     byte = 0x05
	ErrChannelBusy    byte = 0x06
	ErrLockRequired   byte = 0x0a
	ErrInvalidChannel byte = 0x0b
	ErrOther          byte = 0x7f
)

// Keepalive status codes (CTAP 2.1 §11.2.9.2.1).
const (
	StatusProcessing byte = 1
	StatusUPNeeded   byte = 2
)

// Capability flags of the INIT response (CTAP 2.1 §11.2.9.1.3).
const (
	CapWink byte = 0x01
	CapCBOR byte = 0x04
	CapNMsg byte = 0x08
)

// TransactionTimeout is how long the device waits for the next continuation
// packet before abandoning a message with ERR_MSG_TIMEOUT.
const TransactionTimeout = 500 * time.Millisecond

// Handler answers complete requests. CBOR and MSG run on their own goroutine
// so that CANCEL and other channels are served meanwhile; ctx ends when the
// host cancels. keepalive sends a KEEPALIVE with the given status.
type Handler interface {
	// CBOR answers a CTAP2 request (command byte then CBOR parameters)
	// with a CTAP2 response (status byte then CBOR).
	CBOR(ctx context.Context, req []byte, keepalive func(status byte)) []byte
	// MSG answers a CTAP1/U2F request APDU with a response APDU.
	MSG(ctx context.Context, apdu []byte, keepalive func(status byte)) []byte
	// Wink asks the device to identify itself visibly.
	Wink()
}

// VendorHandler is implemented by a Handler that also answers vendor
// commands (CTAP 2.1 §11.2.9.3: command values 0x40 to 0x7f). Vendor answers
// at once, on the CTAPHID goroutine; ok false means the command is unknown
// and the device replies ERR_INVALID_CMD.
type VendorHandler interface {
	Vendor(cmd byte, data []byte) (resp []byte, ok bool)
}

// Vendor command range (CTAP 2.1 §11.2.9.3).
const (
	CmdVendorFirst byte = 0x40
	CmdVendorLast  byte = 0x7f
)

// Version is what INIT reports as the device version (firmware).
type Version struct{ Major, Minor, Build byte }

// Device is the CTAPHID state machine of one authenticator. It is safe for
// concurrent use: Receive may be called while a request is being handled.
type Device struct {
	h       Handler
	out     func([]byte)
	version Version
	caps    byte

	outMu sync.Mutex // keeps the packets of one message together

	mu       sync.Mutex
	nextCID  uint32
	firstCID uint32 // channels below it were allocated before the last Reset
	// the message being assembled
	rx      *rxMessage
	rxTimer *time.Timer
	// the request being handled
	busyCID uint32
	cancel  context.CancelFunc
	busyGen uint64
	// CTAPHID_LOCK
	lockCID   uint32
	lockUntil time.Time
	now       func() time.Time
}

type rxMessage struct {
	cid  uint32
	cmd  byte
	bcnt int
	seq  byte
	data []byte
	gen  uint64
}

// New returns a device that writes its reports to out. out is called with one
// 64-byte report at a time and must not call back into the Device. caps is
// the INIT capability byte (a YubiKey 5 says CapWink|CapCBOR: it speaks MSG).
func New(h Handler, out func([]byte), v Version, caps byte) *Device {
	return &Device{h: h, out: out, version: v, caps: caps, nextCID: 1, firstCID: 1, now: time.Now}
}

// Reset forgets every channel and abandons any message or request in flight,
// as a power cycle does.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.abortRxLocked()
	if d.cancel != nil {
		d.cancel()
		d.cancel = nil
	}
	d.busyCID = 0
	d.busyGen++
	d.lockCID = 0
	d.firstCID = d.nextCID
}

// Abandon drops a message being assembled and cancels a request being
// handled, suppressing its reply, without forgetting channels: the
// transport's last client has gone and nobody would read the reply.
func (d *Device) Abandon() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.abortRxLocked()
	if d.cancel != nil {
		d.cancel()
		d.cancel = nil
	}
	d.busyCID = 0
	d.busyGen++
}

func (d *Device) abortRxLocked() {
	d.rx = nil
	if d.rxTimer != nil {
		d.rxTimer.Stop()
		d.rxTimer = nil
	}
}

func (d *Device) validCIDLocked(cid uint32) bool {
	return cid != 0 && cid != BroadcastCID && cid >= d.firstCID && cid < d.nextCID
}

func (d *Device) lockedByOtherLocked(cid uint32) bool {
	return d.lockCID != 0 && d.lockCID != cid && d.now().Before(d.lockUntil)
}

// Receive takes one host-to-device report. Reports shorter than 64 bytes are
// padded with zeros, longer ones truncated, as a HID stack would.
func (d *Device) Receive(report []byte) {
	var p [ReportSize]byte
	copy(p[:], report)
	cid := binary.BigEndian.Uint32(p[0:4])

	d.mu.Lock()
	defer d.mu.Unlock()

	if cid == 0 {
		d.sendErrLocked(cid, ErrInvalidChannel)
		return
	}
	if p[4]&0x80 == 0 {
		d.continuationLocked(cid, p)
		return
	}
	cmd := p[4] & 0x7f
	bcnt := int(binary.BigEndian.Uint16(p[5:7]))

	if cmd == CmdInit {
		d.initLocked(cid, bcnt, p[7:])
		return
	}
	if cid == BroadcastCID || !d.validCIDLocked(cid) {
		d.sendErrLocked(cid, ErrInvalidChannel)
		return
	}
	if cmd == CmdCancel {
		// CTAP 2.1 §11.2.9.1.5: no reply of its own; the cancelled request
		// answers CTAP2_ERR_KEEPALIVE_CANCEL.
		if d.busyCID == cid && d.cancel != nil {
			d.cancel()
		}
		if d.rx != nil && d.rx.cid == cid {
			d.abortRxLocked()
		}
		return
	}
	if d.busyCID != 0 {
		d.sendErrLocked(cid, ErrChannelBusy)
		return
	}
	if d.rx != nil {
		if d.rx.cid != cid {
			d.sendErrLocked(cid, ErrChannelBusy)
			return
		}
		// A new initialization packet while continuation packets were due.
		d.abortRxLocked()
		d.sendErrLocked(cid, ErrInvalidSeq)
		return
	}
	if d.lockedByOtherLocked(cid) {
		d.sendErrLocked(cid, ErrChannelBusy)
		return
	}
	if bcnt > MaxMessageSize {
		d.sendErrLocked(cid, ErrInvalidLen)
		return
	}
	first := bcnt
	if first > ReportSize-7 {
		first = ReportSize - 7
	}
	m := &rxMessage{cid: cid, cmd: cmd, bcnt: bcnt, data: append(make([]byte, 0, bcnt), p[7:7+first]...)}
	if len(m.data) == bcnt {
		d.dispatchLocked(m)
		return
	}
	d.rx = m
	d.armTimerLocked()
}

func (d *Device) armTimerLocked() {
	if d.rxTimer != nil {
		d.rxTimer.Stop()
	}
	rx := d.rx
	d.rxTimer = time.AfterFunc(TransactionTimeout, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.rx == rx {
			d.abortRxLocked()
			d.sendErrLocked(rx.cid, ErrMsgTimeout)
		}
	})
}

func (d *Device) continuationLocked(cid uint32, p [ReportSize]byte) {
	if d.rx == nil {
		return // a spurious continuation packet is ignored (CTAP 2.1 §11.2.4)
	}
	if d.rx.cid != cid {
		if d.validCIDLocked(cid) {
			d.sendErrLocked(cid, ErrChannelBusy)
		}
		return
	}
	seq := p[4]
	if seq != d.rx.seq {
		d.abortRxLocked()
		d.sendErrLocked(cid, ErrInvalidSeq)
		return
	}
	d.rx.seq++
	n := d.rx.bcnt - len(d.rx.data)
	if n > ReportSize-5 {
		n = ReportSize - 5
	}
	d.rx.data = append(d.rx.data, p[5:5+n]...)
	if len(d.rx.data) < d.rx.bcnt {
		d.armTimerLocked()
		return
	}
	m := d.rx
	d.abortRxLocked()
	d.dispatchLocked(m)
}

// initLocked handles CTAPHID_INIT (CTAP 2.1 §11.2.9.1.3).
func (d *Device) initLocked(cid uint32, bcnt int, data []byte) {
	if bcnt != 8 {
		d.sendErrLocked(cid, ErrInvalidLen)
		return
	}
	if cid != BroadcastCID && !d.validCIDLocked(cid) {
		d.sendErrLocked(cid, ErrInvalidChannel)
		return
	}
	newCID := cid
	if cid == BroadcastCID {
		newCID = d.nextCID
		d.nextCID++
		if d.nextCID == BroadcastCID {
			d.nextCID, d.firstCID = 1, 1
		}
	} else {
		// Resynchronise the channel: drop whatever it had in flight.
		if d.rx != nil && d.rx.cid == cid {
			d.abortRxLocked()
		}
		if d.busyCID == cid {
			// The abandoned request's reply is suppressed.
			if d.cancel != nil {
				d.cancel()
			}
			d.busyCID, d.cancel = 0, nil
			d.busyGen++
		}
	}
	resp := make([]byte, 17)
	copy(resp[0:8], data[:8])
	binary.BigEndian.PutUint32(resp[8:12], newCID)
	resp[12] = 2 // CTAPHID protocol version
	resp[13], resp[14], resp[15] = d.version.Major, d.version.Minor, d.version.Build
	resp[16] = d.caps
	d.sendLocked(cid, CmdInit, resp)
}

func (d *Device) dispatchLocked(m *rxMessage) {
	switch m.cmd {
	case CmdPing:
		d.sendLocked(m.cid, CmdPing, m.data)
	case CmdWink:
		if m.bcnt != 0 {
			d.sendErrLocked(m.cid, ErrInvalidLen)
			return
		}
		d.h.Wink()
		d.sendLocked(m.cid, CmdWink, nil)
	case CmdLock:
		// CTAP 2.1 §11.2.9.2.2: lock the device to this channel for up to 10 s.
		if m.bcnt != 1 {
			d.sendErrLocked(m.cid, ErrInvalidLen)
			return
		}
		if m.data[0] > 10 {
			d.sendErrLocked(m.cid, ErrInvalidPar)
			return
		}
		if m.data[0] == 0 {
			d.lockCID = 0
		} else {
			d.lockCID = m.cid
			d.lockUntil = d.now().Add(time.Duration(m.data[0]) * time.Second)
		}
		d.sendLocked(m.cid, CmdLock, nil)
	case CmdCBOR, CmdMsg:
		if m.bcnt == 0 {
			d.sendErrLocked(m.cid, ErrInvalidLen)
			return
		}
		d.startLocked(m)
	default:
		if vh, ok := d.h.(VendorHandler); ok && m.cmd >= CmdVendorFirst && m.cmd <= CmdVendorLast {
			if resp, ok := vh.Vendor(m.cmd, m.data); ok {
				d.sendLocked(m.cid, m.cmd, resp)
				return
			}
		}
		d.sendErrLocked(m.cid, ErrInvalidCmd)
	}
}

// startLocked hands a CBOR or MSG request to the handler on its own goroutine.
func (d *Device) startLocked(m *rxMessage) {
	ctx, cancel := context.WithCancel(context.Background())
	d.busyCID, d.cancel = m.cid, cancel
	d.busyGen++
	gen := d.busyGen
	live := func() bool { return d.busyGen == gen }
	keepalive := func(status byte) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if live() {
			d.sendLocked(m.cid, CmdKeepalive, []byte{status})
		}
	}
	go func() {
		var resp []byte
		if m.cmd == CmdCBOR {
			resp = d.h.CBOR(ctx, m.data, keepalive)
		} else {
			resp = d.h.MSG(ctx, m.data, keepalive)
		}
		cancel()
		d.mu.Lock()
		defer d.mu.Unlock()
		if !live() {
			return // the device was reset meanwhile
		}
		d.busyCID, d.cancel = 0, nil
		d.busyGen++
		d.sendLocked(m.cid, m.cmd, resp)
	}()
}

func (d *Device) sendErrLocked(cid uint32, code byte) {
	d.sendLocked(cid, CmdError, []byte{code})
}

// sendLocked splits a message into reports (CTAP 2.1 §11.2.4).
func (d *Device) sendLocked(cid uint32, cmd byte, data []byte) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	var p [ReportSize]byte
	binary.BigEndian.PutUint32(p[0:4], cid)
	p[4] = 0x80 | cmd
	binary.BigEndian.PutUint16(p[5:7], uint16(len(data)))
	n := copy(p[7:], data)
	d.out(append([]byte(nil), p[:]...))
	data = data[n:]
	for seq := byte(0); len(data) > 0; seq++ {
		p = [ReportSize]byte{}
		binary.BigEndian.PutUint32(p[0:4], cid)
		p[4] = seq
		n = copy(p[5:], data)
		d.out(append([]byte(nil), p[:]...))
		data = data[n:]
	}
}

// Busy reports whether a request is being handled (tests use it).
func (d *Device) Busy() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.busyCID != 0
}
