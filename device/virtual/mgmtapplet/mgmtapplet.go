// Package mgmtapplet is a YubiKey 5's management application over CCID: the
// device information yubikey-manager reads for `ykman info` and the
// configuration `ykman config usb|nfc` writes (Yubico's management protocol:
// READ CONFIG INS 0x1D, WRITE CONFIG INS 0x1C, a length byte followed by
// BER-TLV fields).
package mgmtapplet

import (
	"context"
	"crypto/subtle"
	"time"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/iso7816"
	"github.com/keydesk/keydesk/device/virtual/tlv"
)

// AID is the management application identifier.
var AID = []byte{0xA0, 0x00, 0x00, 0x05, 0x27, 0x47, 0x11, 0x17}

const (
	insReadConfig  = 0x1D
	insWriteConfig = 0x1C
)

// Device information tags (yubikit.management).
const (
	tagUSBSupported = 0x01
	tagSerial       = 0x02
	tagUSBEnabled   = 0x03
	tagFormFactor   = 0x04
	tagVersion      = 0x05
	tagDeviceFlags  = 0x08
	tagConfigLock   = 0x0A
	tagUnlock       = 0x0B
	tagReboot       = 0x0C
	tagNFCSupported = 0x0D
	tagNFCEnabled   = 0x0E
)

// Applet is the management application of one virtual key.
type Applet struct {
	key *virtual.Key
}

// New returns the management applet of key.
func New(key *virtual.Key) *Applet { return &Applet{key: key} }

// AID implements iso7816.Applet.
func (a *Applet) AID() []byte { return AID }

// Select answers with the firmware version as text, as the hardware does.
func (a *Applet) Select() ([]byte, uint16) {
	return []byte(a.key.Identity().Firmware.String()), iso7816.SWOK
}

// Deselect implements iso7816.Applet.
func (a *Applet) Deselect() {}

func u16(c virtual.Capability) []byte { return []byte{byte(c >> 8), byte(c)} }

func capOf(b []byte) (virtual.Capability, bool) {
	if len(b) == 0 || len(b) > 2 {
		return 0, false
	}
	var c virtual.Capability
	for _, x := range b {
		c = c<<8 | virtual.Capability(x)
	}
	return c, true
}

// DeviceInfo encodes what READ CONFIG returns.
func DeviceInfo(id virtual.Identity) []byte {
	s := id.Serial
	locked := byte(0)
	if id.ConfigLocked {
		locked = 1
	}
	body := tlv.EncodeAll(
		tlv.TLV{Tag: tagUSBSupported, Value: u16(id.SupportedUSB)},
		tlv.TLV{Tag: tagSerial, Value: []byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}},
		tlv.TLV{Tag: tagUSBEnabled, Value: u16(id.EnabledUSB)},
		tlv.TLV{Tag: tagFormFactor, Value: []byte{byte(id.FormFactor)}},
		tlv.TLV{Tag: tagVersion, Value: []byte{id.Firmware.Major, id.Firmware.Minor, id.Firmware.Patch}},
		tlv.TLV{Tag: tagDeviceFlags, Value: []byte{0}},
		tlv.TLV{Tag: tagConfigLock, Value: []byte{locked}},
	)
	if id.SupportedNFC != 0 {
		body = append(body, tlv.EncodeAll(
			tlv.TLV{Tag: tagNFCSupported, Value: u16(id.SupportedNFC)},
			tlv.TLV{Tag: tagNFCEnabled, Value: u16(id.EnabledNFC)})...)
	}
	return append([]byte{byte(len(body))}, body...)
}

// Process implements iso7816.Applet.
func (a *Applet) Process(_ context.Context, c iso7816.Command) ([]byte, uint16) {
	switch c.INS {
	case insReadConfig:
		return DeviceInfo(a.key.Identity()), iso7816.SWOK
	case insWriteConfig:
		return a.writeConfig(c.Data)
	}
	return nil, iso7816.SWInsNotSupported
}

func (a *Applet) writeConfig(data []byte) ([]byte, uint16) {
	if len(data) == 0 || int(data[0]) != len(data)-1 {
		return nil, iso7816.SWWrongLength
	}
	f, err := tlv.Map(data[1:])
	if err != nil {
		return nil, iso7816.SWWrongData
	}
	id := a.key.Identity()
	if id.ConfigLocked {
		code, ok := f[tagUnlock]
		if !ok || subtle.ConstantTimeCompare(code, id.LockCode) != 1 {
			return nil, iso7816.SWSecurityStatus
		}
	}
	usb, setUSB := f[tagUSBEnabled]
	nfc, setNFC := f[tagNFCEnabled]
	var newUSB, newNFC virtual.Capability
	var ok bool
	if setUSB {
		if newUSB, ok = capOf(usb); !ok || newUSB&^id.SupportedUSB != 0 || newUSB == 0 {
			return nil, iso7816.SWWrongData // nothing unsupported, and never every application off
		}
	}
	if setNFC {
		if newNFC, ok = capOf(nfc); !ok || newNFC&^id.SupportedNFC != 0 {
			return nil, iso7816.SWWrongData
		}
	}
	lock, setLock := f[tagConfigLock]
	if setLock && len(lock) != 16 {
		return nil, iso7816.SWWrongData
	}
	a.key.UpdateIdentity(func(id *virtual.Identity) {
		if setUSB {
			id.EnabledUSB = newUSB
		}
		if setNFC {
			id.EnabledNFC = newNFC
		}
		if setLock {
			allZero := true
			for _, b := range lock {
				allZero = allZero && b == 0
			}
			id.ConfigLocked = !allZero
			id.LockCode = append([]byte(nil), lock...)
		}
	})
	if _, reboot := f[tagReboot]; reboot {
		// The key restarts after answering, as the hardware does.
		time.AfterFunc(20*time.Millisecond, a.key.PowerCycle)
	}
	return nil, iso7816.SWOK
}
