// Package mgmt reads and changes a YubiKey's device configuration through
// its management application over CCID: serial, firmware, form factor, and
// which applications are enabled over USB and NFC (Yubico management
// applet, READ CONFIG INS 0x1D and WRITE CONFIG INS 0x1C; the tags are
// yubikit.management's).
package mgmt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/pcsc"
)

const (
	insWriteConfig = 0x1C
	insReadConfig  = 0x1D

	tagUSBSupported = 0x01
	tagSerial       = 0x02
	tagUSBEnabled   = 0x03
	tagFormFactor   = 0x04
	tagVersion      = 0x05
	tagConfigLock   = 0x0A
	tagUnlock       = 0x0B
	tagReboot       = 0x0C
	tagNFCSupported = 0x0D
	tagNFCEnabled   = 0x0E
)

// VirtualReaderMark is in the reader name of keydesk's practice-mode keys.
const VirtualReaderMark = "(keydesk virtual)"

// ErrConfigLocked: the key's configuration is locked with a lock code.
var ErrConfigLocked = errors.New("the key's configuration is locked; the lock code is needed")

// Read returns what the key in reader says about itself. A key whose
// management application cannot be read (an old YubiKey) is returned with
// SerialUnknown set rather than as an error.
func Read(ctx context.Context, reader string) (*device.Key, error) {
	s, err := pcsc.Dial(ctx, reader)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return read(s, reader)
}

func read(s *pcsc.Session, reader string) (*device.Key, error) {
	k := &device.Key{Reader: reader, Transports: device.TransportUSB, Virtual: strings.Contains(reader, VirtualReaderMark)}
	if _, err := s.Select(pcsc.AIDMgmt); err != nil {
		if errors.Is(err, device.ErrKeyRemoved) {
			return nil, err
		}
		k.SerialUnknown = true
		return k, nil
	}
	resp, err := s.Command(insReadConfig, 0, 0, nil)
	if err != nil {
		if errors.Is(err, device.ErrKeyRemoved) {
			return nil, err
		}
		k.SerialUnknown = true
		return k, nil
	}
	if err := parse(k, resp); err != nil {
		return nil, err
	}
	return k, nil
}

// parse decodes READ CONFIG's answer: a length byte, then TLVs.
func parse(k *device.Key, resp []byte) error {
	if len(resp) == 0 || int(resp[0]) > len(resp)-1 {
		return errors.New("device information truncated")
	}
	b := resp[1 : 1+int(resp[0])]
	k.SerialUnknown = true
	for len(b) >= 2 {
		t, n := b[0], int(b[1])
		if len(b) < 2+n {
			return fmt.Errorf("device information tag %02x truncated", t)
		}
		v := b[2 : 2+n]
		b = b[2+n:]
		switch t {
		case tagSerial:
			if n == 4 {
				k.Serial, k.SerialUnknown = binary.BigEndian.Uint32(v), false
			}
		case tagVersion:
			if n == 3 {
				k.Firmware = device.Version{Major: v[0], Minor: v[1], Patch: v[2]}
			}
		case tagFormFactor:
			if n >= 1 {
				k.FormFactor = v[0] & 0x0F
			}
		case tagUSBSupported:
			k.SupportedUSB = app(v)
		case tagUSBEnabled:
			k.EnabledUSB = app(v)
		case tagNFCSupported:
			k.SupportedNFC = app(v)
			if k.SupportedNFC != 0 {
				k.Transports |= device.TransportNFC
			}
		case tagNFCEnabled:
			k.EnabledNFC = app(v)
		case tagConfigLock:
			k.ConfigLocked = n > 0 && v[0] != 0
		}
	}
	k.Model = ModelName(k)
	return nil
}

func app(v []byte) device.Application {
	var a uint16
	for _, x := range v {
		a = a<<8 | uint16(x)
	}
	return device.Application(a)
}

// ModelName names the key the way Yubico's tools do, from its form factor,
// firmware and NFC support.
func ModelName(k *device.Key) string {
	if k.SerialUnknown && k.Firmware == (device.Version{}) {
		return "YubiKey"
	}
	nfc := k.SupportedNFC != 0
	series := fmt.Sprintf("YubiKey %d", k.Firmware.Major)
	switch k.FormFactor {
	case 1:
		if nfc {
			return series + " NFC"
		}
		return series + "A"
	case 2:
		return series + " Nano"
	case 3:
		if nfc {
			return series + "C NFC"
		}
		return series + "C"
	case 4:
		return series + "C Nano"
	case 5:
		return series + "Ci"
	case 6:
		return "YubiKey Bio"
	case 7:
		return "YubiKey C Bio"
	}
	return series
}

// Change is a new application configuration. Nil fields stay as they are.
type Change struct {
	USB, NFC *device.Application
	// LockCode unlocks a locked configuration (16 bytes).
	LockCode []byte
}

// Apply writes the configuration to the key with serial (WRITE CONFIG) and
// asks it to restart, which it does when the set of USB interfaces changes
// (as ykman does). Turning every USB application off is refused: the key
// could not be reached to turn them back on.
func Apply(ctx context.Context, reader string, serial uint32, c Change) error {
	if c.USB != nil && *c.USB == 0 {
		return errors.New("refusing to turn off every USB application: the key could not be reconfigured afterwards")
	}
	s, err := pcsc.Dial(ctx, reader)
	if err != nil {
		return err
	}
	defer s.Close()
	k, err := read(s, reader)
	if err != nil {
		return err
	}
	if k.SerialUnknown {
		return fmt.Errorf("this key has no management application: %w", device.ErrNotSupported)
	}
	if k.Serial != serial {
		return &device.SerialMismatchError{Want: serial, Got: k.Serial}
	}
	var body []byte
	add := func(tag byte, v []byte) { body = append(append(body, tag, byte(len(v))), v...) }
	if c.USB != nil {
		if *c.USB&^k.SupportedUSB != 0 {
			return fmt.Errorf("the key does not support %s over USB", (*c.USB &^ k.SupportedUSB))
		}
		add(tagUSBEnabled, []byte{byte(*c.USB >> 8), byte(*c.USB)})
	}
	if c.NFC != nil {
		if *c.NFC&^k.SupportedNFC != 0 {
			return fmt.Errorf("the key does not support %s over NFC", (*c.NFC &^ k.SupportedNFC))
		}
		add(tagNFCEnabled, []byte{byte(*c.NFC >> 8), byte(*c.NFC)})
	}
	if len(body) == 0 {
		return nil
	}
	if c.LockCode != nil {
		add(tagUnlock, c.LockCode)
	}
	add(tagReboot, nil)
	_, sw, err := s.Transmit(insWriteConfig, 0, 0, append([]byte{byte(len(body))}, body...))
	if err != nil {
		return err
	}
	switch sw {
	case pcsc.SWOK:
		return nil
	case pcsc.SWSecurityStatus:
		return ErrConfigLocked
	}
	return &pcsc.StatusError{Ins: insWriteConfig, SW: sw}
}
