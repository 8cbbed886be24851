package fidokey

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/keydesk/keydesk/device"
)

// CTAPHID framing (CTAP 2.1 §11.2.4, §11.2.9).
const (
	hidReport     = 64
	hidBroadcast  = 0xffffffff
	hidInit       = 0x06
	hidKeepalive  = 0x3b
	hidError      = 0x3f
	hidInvalidCmd = 0x01
	// hidReadConfig is Yubico's vendor command READ_CONFIG (the first
	// vendor command 0x40, plus 2; yubikit.management): it returns the
	// management application's device information, the bytes READ CONFIG
	// (INS 0x1D) returns over CCID.
	hidReadConfig = 0x42
)

// Device information tags (yubikit.management).
const (
	tagSerial  = 0x02
	tagVersion = 0x05
)

// infoTimeout bounds Info when ctx has no deadline: a YubiKey answers in
// milliseconds, and a device that does not answer is not one.
const infoTimeout = 3 * time.Second

// Info reads the key's serial and firmware over its FIDO HID interface with
// Yubico's vendor CTAPHID command READ_CONFIG, so discovery can tell which
// PC/SC reader belongs to the same physical key. ok is false when the device
// does not answer the command (not a YubiKey, or one too old) or does not
// disclose its serial; firmware is then the CTAPHID INIT device version.
func (d *Device) Info(ctx context.Context) (serial uint32, firmware device.Version, ok bool, err error) {
	const op = "reading yubikey device info over fido hid"
	path := d.Path()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		if gone(path) {
			return 0, firmware, false, fmt.Errorf("%s: %w (%w)", op, device.ErrKeyRemoved, err)
		}
		return 0, firmware, false, fmt.Errorf("%s: %w", op, err)
	}
	defer f.Close()
	deadline, has := ctx.Deadline()
	if !has {
		deadline = time.Now().Add(infoTimeout)
	}
	f.SetDeadline(deadline) // devices without poller support just block
	stop := context.AfterFunc(ctx, func() { f.SetDeadline(time.Now()) })
	defer stop()
	h := &hidConn{rw: f}
	fail := func(err error) (uint32, device.Version, bool, error) {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		} else if gone(path) {
			err = fmt.Errorf("%w (%w)", device.ErrKeyRemoved, err)
		}
		return 0, firmware, false, fmt.Errorf("%s: %w", op, err)
	}

	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return fail(err)
	}
	if err := h.send(hidBroadcast, hidInit, nonce); err != nil {
		return fail(err)
	}
	var resp []byte
	for {
		cmd, data, err := h.recv(hidBroadcast)
		if err != nil {
			return fail(err)
		}
		if cmd == hidInit && len(data) >= 17 && string(data[:8]) == string(nonce) {
			resp = data
			break
		}
		// a reply to another client's INIT: keep reading
	}
	cid := binary.BigEndian.Uint32(resp[8:12])
	firmware = device.Version{Major: resp[13], Minor: resp[14], Patch: resp[15]}

	if err := h.send(cid, hidReadConfig, []byte{0}); err != nil { // page 0
		return fail(err)
	}
	cmd, data, err := h.recv(cid)
	if err != nil {
		return fail(err)
	}
	if cmd == hidError {
		if len(data) > 0 && data[0] == hidInvalidCmd {
			return 0, firmware, false, nil
		}
		return fail(fmt.Errorf("ctaphid error 0x%02x", data))
	}
	if cmd != hidReadConfig {
		return fail(fmt.Errorf("read config answered with command 0x%02x", cmd))
	}
	serial, ok, err = parseReadConfig(data, &firmware)
	if err != nil {
		return fail(err)
	}
	return serial, firmware, ok, nil
}

// parseReadConfig reads the serial and firmware from READ_CONFIG's answer:
// a length byte, then the management application's device-information TLVs
// (yubikit.management). firmware is replaced only when the answer carries
// one; ok is false when it carries no serial.
func parseReadConfig(data []byte, firmware *device.Version) (serial uint32, ok bool, err error) {
	if len(data) == 0 || int(data[0]) > len(data)-1 {
		return 0, false, errors.New("malformed read config reply")
	}
	body := data[1 : 1+int(data[0])]
	for len(body) >= 2 {
		tag, n := body[0], int(body[1])
		if len(body) < 2+n {
			return 0, false, errors.New("truncated device information")
		}
		v := body[2 : 2+n]
		switch {
		case tag == tagSerial && n == 4:
			serial, ok = binary.BigEndian.Uint32(v), true
		case tag == tagVersion && n == 3:
			*firmware = device.Version{Major: v[0], Minor: v[1], Patch: v[2]}
		}
		body = body[2+n:]
	}
	return serial, ok, nil
}

// hidConn speaks CTAPHID over a HID device file: 65-byte writes (report ID
// 0, then the report) and 64-byte reads.
type hidConn struct{ rw io.ReadWriter }

func (h *hidConn) send(cid uint32, cmd byte, data []byte) error {
	var p [1 + hidReport]byte
	binary.BigEndian.PutUint32(p[1:5], cid)
	p[5] = 0x80 | cmd
	binary.BigEndian.PutUint16(p[6:8], uint16(len(data)))
	n := copy(p[8:], data)
	if _, err := h.rw.Write(p[:]); err != nil {
		return err
	}
	data = data[n:]
	for seq := byte(0); len(data) > 0; seq++ {
		p = [1 + hidReport]byte{}
		binary.BigEndian.PutUint32(p[1:5], cid)
		p[5] = seq
		n = copy(p[6:], data)
		if _, err := h.rw.Write(p[:]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// recv reads one message on cid, skipping KEEPALIVE and other channels.
func (h *hidConn) recv(cid uint32) (byte, []byte, error) {
	var p [hidReport]byte
	for {
		if _, err := io.ReadFull(h.rw, p[:]); err != nil {
			return 0, nil, err
		}
		if binary.BigEndian.Uint32(p[0:4]) != cid || p[4]&0x80 == 0 {
			continue
		}
		cmd := p[4] &^ 0x80
		if cmd == hidKeepalive {
			continue
		}
		n := int(binary.BigEndian.Uint16(p[5:7]))
		data := append([]byte(nil), p[7:7+min(n, hidReport-7)]...)
		for seq := byte(0); len(data) < n; seq++ {
			if _, err := io.ReadFull(h.rw, p[:]); err != nil {
				return 0, nil, err
			}
			if binary.BigEndian.Uint32(p[0:4]) != cid {
				continue
			}
			if p[4] != seq {
				return 0, nil, fmt.Errorf("ctaphid continuation %d, want %d", p[4], seq)
			}
			data = append(data, p[5:5+min(n-len(data), hidReport-5)]...)
		}
		return cmd, data, nil
	}
}
