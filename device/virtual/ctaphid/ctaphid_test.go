package ctaphid

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"
)

// echoHandler answers CBOR with 0x00 followed by the request, and blocks
// requests starting 0xff until cancelled, sending keepalives.
type echoHandler struct {
	winks   int
	started chan struct{}
}

func (h *echoHandler) CBOR(ctx context.Context, req []byte, ka func(byte)) []byte {
	if req[0] == 0xff {
		ka(StatusUPNeeded)
		close(h.started)
		<-ctx.Done()
		return []byte{0x2d}
	}
	return append([]byte{0}, req...)
}
func (h *echoHandler) MSG(ctx context.Context, apdu []byte, ka func(byte)) []byte {
	return []byte{0x6d, 0x00}
}
func (h *echoHandler) Wink() { h.winks++ }

type host struct {
	t   *testing.T
	d   *Device
	h   *echoHandler
	out chan []byte
}

func newHost(t *testing.T) *host {
	h := &host{t: t, h: &echoHandler{started: make(chan struct{})}, out: make(chan []byte, 1024)}
	h.d = New(h.h, func(p []byte) { h.out <- p }, Version{5, 7, 2}, CapWink|CapCBOR)
	return h
}

func initPacket(cid uint32, cmd byte, bcnt int, data []byte) []byte {
	p := make([]byte, ReportSize)
	binary.BigEndian.PutUint32(p, cid)
	p[4] = 0x80 | cmd
	binary.BigEndian.PutUint16(p[5:], uint16(bcnt))
	copy(p[7:], data)
	return p
}

func contPacket(cid uint32, seq byte, data []byte) []byte {
	p := make([]byte, ReportSize)
	binary.BigEndian.PutUint32(p, cid)
	p[4] = seq
	copy(p[5:], data)
	return p
}

// send frames a whole message.
func (h *host) send(cid uint32, cmd byte, data []byte) {
	n := min(len(data), ReportSize-7)
	h.d.Receive(initPacket(cid, cmd, len(data), data[:n]))
	rest := data[n:]
	for seq := byte(0); len(rest) > 0; seq++ {
		n = min(len(rest), ReportSize-5)
		h.d.Receive(contPacket(cid, seq, rest[:n]))
		rest = rest[n:]
	}
}

// recv reads one whole message.
func (h *host) recv() (cid uint32, cmd byte, data []byte) {
	h.t.Helper()
	next := func() []byte {
		select {
		case p := <-h.out:
			if len(p) != ReportSize {
				h.t.Fatalf("report of %d bytes", len(p))
			}
			return p
		case <-time.After(5 * time.Second):
			h.t.Fatal("no reply")
			return nil
		}
	}
	p := next()
	if p[4]&0x80 == 0 {
		h.t.Fatalf("reply starts with a continuation packet % x", p[:8])
	}
	cid, cmd = binary.BigEndian.Uint32(p), p[4]&0x7f
	bcnt := int(binary.BigEndian.Uint16(p[5:]))
	data = append(data, p[7:7+min(bcnt, ReportSize-7)]...)
	for seq := byte(0); len(data) < bcnt; seq++ {
		p = next()
		if binary.BigEndian.Uint32(p) != cid || p[4] != seq {
			h.t.Fatalf("continuation cid %08x seq %d, want %08x %d", binary.BigEndian.Uint32(p), p[4], cid, seq)
		}
		data = append(data, p[5:5+min(bcnt-len(data), ReportSize-5)]...)
	}
	return cid, cmd, data
}

func (h *host) expectErr(wantCID uint32, code byte) {
	h.t.Helper()
	cid, cmd, data := h.recv()
	if cid != wantCID || cmd != CmdError || !bytes.Equal(data, []byte{code}) {
		h.t.Fatalf("got cid %08x cmd %02x data % x, want error %02x on %08x", cid, cmd, data, code, wantCID)
	}
}

func (h *host) expectNothing() {
	h.t.Helper()
	select {
	case p := <-h.out:
		h.t.Fatalf("unexpected report % x", p[:8])
	default:
	}
}

func (h *host) alloc() uint32 {
	h.t.Helper()
	nonce := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	h.send(BroadcastCID, CmdInit, nonce)
	cid, cmd, data := h.recv()
	if cid != BroadcastCID || cmd != CmdInit || len(data) != 17 || !bytes.Equal(data[:8], nonce) {
		h.t.Fatalf("INIT reply cid %08x cmd %02x % x", cid, cmd, data)
	}
	if data[12] != 2 || data[13] != 5 || data[14] != 7 || data[15] != 2 || data[16] != CapWink|CapCBOR {
		h.t.Fatalf("INIT version/capabilities % x", data[12:])
	}
	return binary.BigEndian.Uint32(data[8:12])
}

func TestInitAllocatesDistinctChannels(t *testing.T) {
	h := newHost(t)
	a, b := h.alloc(), h.alloc()
	if a == b || a == 0 || a == BroadcastCID {
		t.Fatalf("channels %08x %08x", a, b)
	}
	// INIT on an allocated channel answers on that channel with the same CID.
	h.send(a, CmdInit, make([]byte, 8))
	cid, cmd, data := h.recv()
	if cid != a || cmd != CmdInit || binary.BigEndian.Uint32(data[8:]) != a {
		t.Fatalf("re-INIT: cid %08x cmd %02x % x", cid, cmd, data)
	}
}

func TestPingLongMessage(t *testing.T) {
	h := newHost(t)
	cid := h.alloc()
	for _, n := range []int{0, 1, 57, 58, 116, 1000, MaxMessageSize} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		for i := range msg {
			msg[i] = byte(i * 7)
		}
		h.send(cid, CmdPing, msg)
		rc, cmd, data := h.recv()
		if rc != cid || cmd != CmdPing || !bytes.Equal(data, msg) {
			t.Fatalf("ping %d: cid %08x cmd %02x len %d", n, rc, cmd, len(data))
		}
	}
}

func TestCBORAndWinkAndMsg(t *testing.T) {
	h := newHost(t)
	cid := h.alloc()
	h.send(cid, CmdCBOR, []byte{0x04})
	if _, cmd, data := h.recv(); cmd != CmdCBOR || !bytes.Equal(data, []byte{0, 4}) {
		t.Fatalf("CBOR reply %02x % x", cmd, data)
	}
	h.send(cid, CmdWink, nil)
	if _, cmd, _ := h.recv(); cmd != CmdWink || h.h.winks != 1 {
		t.Fatalf("WINK reply %02x winks %d", cmd, h.h.winks)
	}
	h.send(cid, CmdMsg, []byte{0, 3, 0, 0})
	if _, cmd, data := h.recv(); cmd != CmdMsg || !bytes.Equal(data, []byte{0x6d, 0}) {
		t.Fatalf("MSG reply %02x % x", cmd, data)
	}
}

func TestErrors(t *testing.T) {
	h := newHost(t)
	cid := h.alloc()

	// CID 0 and unallocated channels.
	h.send(0, CmdPing, []byte{1})
	h.expectErr(0, ErrInvalidChannel)
	h.send(cid+100, CmdPing, []byte{1})
	h.expectErr(cid+100, ErrInvalidChannel)
	// Anything but INIT on the broadcast channel.
	h.send(BroadcastCID, CmdPing, []byte{1})
	h.expectErr(BroadcastCID, ErrInvalidChannel)
	// INIT with a wrong length.
	h.d.Receive(initPacket(BroadcastCID, CmdInit, 7, nil))
	h.expectErr(BroadcastCID, ErrInvalidLen)
	// Unknown command.
	h.send(cid, 0x22, []byte{1})
	h.expectErr(cid, ErrInvalidCmd)
	// Length beyond what 128 continuation packets carry.
	h.d.Receive(initPacket(cid, CmdPing, MaxMessageSize+1, nil))
	h.expectErr(cid, ErrInvalidLen)
	// Empty CBOR.
	h.send(cid, CmdCBOR, nil)
	h.expectErr(cid, ErrInvalidLen)
	// WINK with data, LOCK with bad length and bad parameter.
	h.send(cid, CmdWink, []byte{1})
	h.expectErr(cid, ErrInvalidLen)
	h.send(cid, CmdLock, nil)
	h.expectErr(cid, ErrInvalidLen)
	h.send(cid, CmdLock, []byte{11})
	h.expectErr(cid, ErrInvalidPar)

	// Wrong sequence number.
	h.d.Receive(initPacket(cid, CmdPing, 100, nil))
	h.d.Receive(contPacket(cid, 1, nil))
	h.expectErr(cid, ErrInvalidSeq)
	// A new initialization packet while continuation packets are due.
	h.d.Receive(initPacket(cid, CmdPing, 100, nil))
	h.d.Receive(initPacket(cid, CmdPing, 1, nil))
	h.expectErr(cid, ErrInvalidSeq)
	// Another channel while one is being assembled.
	other := h.alloc()
	h.d.Receive(initPacket(cid, CmdPing, 100, nil))
	h.send(other, CmdPing, []byte{1})
	h.expectErr(other, ErrChannelBusy)
	h.d.Receive(contPacket(other, 0, nil))
	h.expectErr(other, ErrChannelBusy)
	// The first message still completes.
	h.d.Receive(contPacket(cid, 0, make([]byte, 59)))
	if rc, cmd, data := h.recv(); rc != cid || cmd != CmdPing || len(data) != 100 {
		t.Fatalf("ping after interleaving: %08x %02x %d", rc, cmd, len(data))
	}
	// A spurious continuation packet is ignored.
	h.d.Receive(contPacket(cid, 0, nil))
	h.expectNothing()
}

func TestTransactionTimeout(t *testing.T) {
	h := newHost(t)
	cid := h.alloc()
	h.d.Receive(initPacket(cid, CmdPing, 100, nil))
	h.expectErr(cid, ErrMsgTimeout) // recv waits up to 5 s; the device gives up after 500 ms
	h.send(cid, CmdPing, []byte{9})
	if _, cmd, _ := h.recv(); cmd != CmdPing {
		t.Fatalf("ping after timeout: %02x", cmd)
	}
}

func TestCancelAndBusy(t *testing.T) {
	h := newHost(t)
	cid, other := h.alloc(), h.alloc()
	h.send(cid, CmdCBOR, []byte{0xff})
	<-h.h.started
	if _, cmd, data := h.recv(); cmd != CmdKeepalive || !bytes.Equal(data, []byte{StatusUPNeeded}) {
		t.Fatalf("keepalive %02x % x", cmd, data)
	}
	h.send(other, CmdPing, []byte{1})
	h.expectErr(other, ErrChannelBusy)
	h.send(cid, CmdPing, []byte{1})
	h.expectErr(cid, ErrChannelBusy)
	h.send(cid, CmdCancel, nil)
	if rc, cmd, data := h.recv(); rc != cid || cmd != CmdCBOR || !bytes.Equal(data, []byte{0x2d}) {
		t.Fatalf("after cancel: %08x %02x % x", rc, cmd, data)
	}
	h.send(other, CmdPing, []byte{1})
	if _, cmd, _ := h.recv(); cmd != CmdPing {
		t.Fatalf("ping after cancel: %02x", cmd)
	}
}

func TestLock(t *testing.T) {
	h := newHost(t)
	cid, other := h.alloc(), h.alloc()
	h.send(cid, CmdLock, []byte{5})
	if _, cmd, _ := h.recv(); cmd != CmdLock {
		t.Fatalf("lock reply %02x", cmd)
	}
	h.send(other, CmdPing, []byte{1})
	h.expectErr(other, ErrChannelBusy)
	h.send(cid, CmdLock, []byte{0})
	h.recv()
	h.send(other, CmdPing, []byte{1})
	if _, cmd, _ := h.recv(); cmd != CmdPing {
		t.Fatalf("ping after unlock: %02x", cmd)
	}
}

func TestResetForgetsChannels(t *testing.T) {
	h := newHost(t)
	cid := h.alloc()
	h.d.Reset()
	h.send(cid, CmdPing, []byte{1})
	h.expectErr(cid, ErrInvalidChannel)
	if n := h.alloc(); n == cid {
		t.Fatalf("channel %08x reused after reset", n)
	}
}

func TestInitAbandonsRequest(t *testing.T) {
	h := newHost(t)
	cid := h.alloc()
	h.send(cid, CmdCBOR, []byte{0xff})
	<-h.h.started
	h.recv() // keepalive
	h.send(cid, CmdInit, make([]byte, 8))
	if rc, cmd, _ := h.recv(); rc != cid || cmd != CmdInit {
		t.Fatalf("re-INIT reply %08x %02x", rc, cmd)
	}
	h.send(cid, CmdPing, []byte{5})
	if rc, cmd, data := h.recv(); rc != cid || cmd != CmdPing || !bytes.Equal(data, []byte{5}) {
		t.Fatalf("after re-INIT: %08x %02x % x (the abandoned request must not answer)", rc, cmd, data)
	}
}

// vendorHandler answers one vendor command, as a YubiKey answers
// READ_CONFIG.
type vendorHandler struct{ echoHandler }

func (h *vendorHandler) Vendor(cmd byte, data []byte) ([]byte, bool) {
	if cmd != 0x42 {
		return nil, false
	}
	return append([]byte{0xaa}, data...), true
}

func TestVendorCommands(t *testing.T) {
	// A handler without vendor commands: ERR_INVALID_CMD.
	h := newHost(t)
	cid := h.alloc()
	h.send(cid, 0x42, []byte{0})
	h.expectErr(cid, ErrInvalidCmd)

	vh := &vendorHandler{echoHandler{started: make(chan struct{})}}
	h.h = &vh.echoHandler
	h.d = New(vh, func(p []byte) { h.out <- p }, Version{5, 7, 2}, CapWink|CapCBOR)
	cid = h.alloc()
	h.send(cid, 0x42, []byte{7})
	if gotCID, cmd, data := h.recv(); gotCID != cid || cmd != 0x42 || !bytes.Equal(data, []byte{0xaa, 7}) {
		t.Fatalf("vendor reply on %08x: cmd 0x%02x data %x", gotCID, cmd, data)
	}
	// Unknown vendor commands and non-vendor commands stay invalid.
	h.send(cid, 0x43, nil)
	h.expectErr(cid, ErrInvalidCmd)
	h.send(cid, 0x22, []byte{1})
	h.expectErr(cid, ErrInvalidCmd)
}
