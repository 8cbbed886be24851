package ctaphid

import (
	"bytes"
	"context"
	"testing"
)

type quickHandler struct{}

func (quickHandler) CBOR(ctx context.Context, req []byte, ka func(byte)) []byte {
	ka(StatusProcessing)
	return []byte{0}
}
func (quickHandler) MSG(ctx context.Context, apdu []byte, ka func(byte)) []byte {
	return []byte{0x6d, 0}
}
func (quickHandler) Wink() {}

// FuzzFraming feeds arbitrary host reports to a device. Invariants: no
// panic; every report out is 64 bytes; every error is a CTAPHID error code;
// and after a power cycle (Reset) INIT and PING work as on a fresh device.
func FuzzFraming(f *testing.F) {
	init := initPacket(BroadcastCID, CmdInit, 8, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	ping := append(initPacket(1, CmdPing, 100, bytes.Repeat([]byte{7}, 57)), contPacket(1, 0, bytes.Repeat([]byte{8}, 43))...)
	f.Add(init)
	f.Add(append(append([]byte{}, init...), ping...))
	f.Add(append(append([]byte{}, init...), initPacket(1, CmdCBOR, 1, []byte{4})...))
	f.Add(append(append([]byte{}, init...), initPacket(1, CmdLock, 1, []byte{3})...))
	f.Add(append(append([]byte{}, init...), contPacket(1, 5, nil)...))
	f.Add(initPacket(0, CmdPing, 0xffff, nil))
	f.Add(append(append([]byte{}, init...), initPacket(1, CmdCancel, 0, nil)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		out := make(chan []byte, 4096)
		d := New(quickHandler{}, func(p []byte) {
			select {
			case out <- p:
			default:
			}
		}, Version{5, 7, 2}, CapWink|CapCBOR)
		for len(data) > 0 {
			n := min(len(data), ReportSize)
			d.Receive(data[:n])
			data = data[n:]
		}
		d.Reset()
		check := func() {
			for {
				select {
				case p := <-out:
					if len(p) != ReportSize {
						t.Fatalf("report of %d bytes", len(p))
					}
					if p[4] == 0x80|CmdError {
						switch p[7] {
						case ErrInvalidCmd, ErrInvalidPar, ErrInvalidLen, ErrInvalidSeq, ErrMsgTimeout, ErrChannelBusy, ErrInvalidChannel:
						default:
							t.Fatalf("error code 0x%02x", p[7])
						}
					}
				default:
					return
				}
			}
		}
		check()
		h := &host{t: t, d: d, out: make(chan []byte, 64)}
		d.mu.Lock()
		d.out = func(p []byte) { h.out <- p }
		d.mu.Unlock()
		cid := h.alloc()
		h.send(cid, CmdPing, []byte("still standing"))
		if rc, cmd, got := h.recv(); rc != cid || cmd != CmdPing || string(got) != "still standing" {
			t.Fatalf("ping after fuzzing: %08x %02x %q", rc, cmd, got)
		}
	})
}
