package mgmtapplet

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/iso7816"
	"github.com/keydesk/keydesk/device/virtual/tlv"
)

func transmit(t *testing.T, card *iso7816.Card, apdu ...byte) ([]byte, uint16) {
	t.Helper()
	r := card.Transmit(context.Background(), apdu)
	if len(r) < 2 {
		t.Fatalf("% x: response %x has no status word", apdu, r)
	}
	return r[:len(r)-2], uint16(r[len(r)-2])<<8 | uint16(r[len(r)-1])
}

func writeConfig(fields ...tlv.TLV) []byte {
	body := tlv.EncodeAll(fields...)
	data := append([]byte{byte(len(body))}, body...)
	return append([]byte{0, insWriteConfig, 0, 0, byte(len(data))}, data...)
}

func TestReadAndWriteConfig(t *testing.T) {
	key := virtual.NewKey(virtual.DefaultIdentity(31000042))
	card := iso7816.NewCard(nil, New(key))
	if _, sw := transmit(t, card, append([]byte{0, 0xA4, 4, 0, byte(len(AID))}, AID...)...); sw != iso7816.SWOK {
		t.Fatalf("select: %04x", sw)
	}

	info, sw := transmit(t, card, 0, insReadConfig, 0, 0, 0)
	if sw != iso7816.SWOK || len(info) == 0 || int(info[0]) != len(info)-1 {
		t.Fatalf("read config: % x %04x", info, sw)
	}
	f, err := tlv.Map(info[1:])
	if err != nil {
		t.Fatal(err)
	}
	id := key.Identity()
	if !bytes.Equal(f[tagSerial], binary.BigEndian.AppendUint32(nil, 31000042)) ||
		!bytes.Equal(f[tagVersion], []byte{id.Firmware.Major, id.Firmware.Minor, id.Firmware.Patch}) ||
		!bytes.Equal(f[tagUSBEnabled], u16(id.EnabledUSB)) || !bytes.Equal(f[tagNFCEnabled], u16(id.EnabledNFC)) {
		t.Fatalf("device info fields %x", f)
	}

	// Disable OATH over USB only.
	usb := id.EnabledUSB &^ virtual.CapOATH
	if _, sw := transmit(t, card, writeConfig(tlv.TLV{Tag: tagUSBEnabled, Value: u16(usb)})...); sw != iso7816.SWOK {
		t.Fatalf("write config: %04x", sw)
	}
	if got := key.Identity(); got.EnabledUSB != usb || got.EnabledNFC != id.EnabledNFC {
		t.Fatalf("after write: usb %v nfc %v", got.EnabledUSB, got.EnabledNFC)
	}

	// Malformed and refused writes leave the configuration alone.
	before := key.Identity()
	for _, tc := range []struct {
		name string
		apdu []byte
		want uint16
	}{
		{"length byte wrong", []byte{0, insWriteConfig, 0, 0, 3, 5, 0x03, 0x02}, iso7816.SWWrongLength},
		{"broken TLV", []byte{0, insWriteConfig, 0, 0, 3, 2, 0x03, 0x05}, iso7816.SWWrongData},
		{"every application off", writeConfig(tlv.TLV{Tag: tagUSBEnabled, Value: []byte{0, 0}}), iso7816.SWWrongData},
		{"unsupported application", writeConfig(tlv.TLV{Tag: tagUSBEnabled, Value: []byte{0x80, 0x00}}), iso7816.SWWrongData},
		{"short lock code", writeConfig(tlv.TLV{Tag: tagConfigLock, Value: []byte{1, 2}}), iso7816.SWWrongData},
		{"unknown instruction", []byte{0, 0x42, 0, 0, 0}, iso7816.SWInsNotSupported},
	} {
		if _, sw := transmit(t, card, tc.apdu...); sw != tc.want {
			t.Errorf("%s: %04x, want %04x", tc.name, sw, tc.want)
		}
	}
	if after := key.Identity(); after.EnabledUSB != before.EnabledUSB || after.EnabledNFC != before.EnabledNFC || after.ConfigLocked {
		t.Fatalf("refused writes changed the configuration: %+v", after)
	}

	// A lock code locks the configuration until it is given back.
	code := bytes.Repeat([]byte{7}, 16)
	if _, sw := transmit(t, card, writeConfig(tlv.TLV{Tag: tagConfigLock, Value: code})...); sw != iso7816.SWOK {
		t.Fatalf("set lock code: %04x", sw)
	}
	all := id.EnabledUSB
	if _, sw := transmit(t, card, writeConfig(tlv.TLV{Tag: tagUSBEnabled, Value: u16(all)})...); sw != iso7816.SWSecurityStatus {
		t.Fatalf("write while locked: %04x, want 6982", sw)
	}
	if _, sw := transmit(t, card, writeConfig(tlv.TLV{Tag: tagUSBEnabled, Value: u16(all)}, tlv.TLV{Tag: tagUnlock, Value: code})...); sw != iso7816.SWOK {
		t.Fatalf("write with lock code: %04x", sw)
	}
	if key.Identity().EnabledUSB != all {
		t.Fatal("write with the lock code did not apply")
	}
}

// FuzzProcess sends arbitrary APDUs to the selected management applet. The
// invariants: no panic, a status word the applet defines, and a configuration
// that stays within what the key supports with at least one USB application.
func FuzzProcess(f *testing.F) {
	f.Add([]byte{0, insReadConfig, 0, 0, 0})
	f.Add(writeConfig(tlv.TLV{Tag: tagUSBEnabled, Value: []byte{0x02, 0x3B}}))
	f.Add(writeConfig(tlv.TLV{Tag: tagNFCEnabled, Value: []byte{0x00}}, tlv.TLV{Tag: tagReboot}))
	f.Add(writeConfig(tlv.TLV{Tag: tagConfigLock, Value: bytes.Repeat([]byte{1}, 16)}))
	f.Add([]byte{0, insWriteConfig, 0, 0, 3, 5, 0x03, 0x02})
	f.Fuzz(func(t *testing.T, apdu []byte) {
		key := virtual.NewKey(virtual.DefaultIdentity(31000042))
		card := iso7816.NewCard(nil, New(key))
		card.Transmit(context.Background(), append([]byte{0, 0xA4, 4, 0, byte(len(AID))}, AID...))
		r := card.Transmit(context.Background(), apdu)
		if len(r) < 2 {
			t.Fatalf("% x: no status word in %x", apdu, r)
		}
		switch sw := uint16(r[len(r)-2])<<8 | uint16(r[len(r)-1]); {
		case sw == iso7816.SWOK, sw>>8 == 0x61, sw>>8 == 0x67, sw>>8 == 0x6A, sw>>8 == 0x69, sw>>8 == 0x6D, sw>>8 == 0x6E, sw>>8 == 0x6C:
		default:
			t.Fatalf("% x: status word %04x", apdu, sw)
		}
		id := key.Identity()
		if id.EnabledUSB == 0 || id.EnabledUSB&^id.SupportedUSB != 0 || id.EnabledNFC&^id.SupportedNFC != 0 {
			t.Fatalf("% x left configuration usb %v/%v nfc %v/%v", apdu, id.EnabledUSB, id.SupportedUSB, id.EnabledNFC, id.SupportedNFC)
		}
	})
}
