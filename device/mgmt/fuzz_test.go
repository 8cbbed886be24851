package mgmt

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/keydesk/keydesk/device"
)

// deviceInfo builds READ CONFIG's answer from TLVs: a length byte, then the
// TLVs (yubikit.management).
func deviceInfo(tlvs ...[]byte) []byte {
	b := bytes.Join(tlvs, nil)
	return append([]byte{byte(len(b))}, b...)
}

func tv(tag byte, v ...byte) []byte { return append([]byte{tag, byte(len(v))}, v...) }

// TestParseDeviceInfo reads a YubiKey 5 NFC's answer.
func TestParseDeviceInfo(t *testing.T) {
	var k device.Key
	err := parse(&k, deviceInfo(tv(tagUSBSupported, 0x02, 0x3B), tv(tagSerial, 0x01, 0x02, 0x03, 0x04), tv(tagUSBEnabled, 0x02, 0x3B),
		tv(tagFormFactor, 0x01), tv(tagVersion, 5, 7, 1), tv(tagNFCSupported, 0x02, 0x3B), tv(tagNFCEnabled, 0x02, 0x3B), tv(tagConfigLock, 0x00)))
	if err != nil {
		t.Fatal(err)
	}
	if k.Serial != 0x01020304 || k.SerialUnknown || k.Firmware != (device.Version{Major: 5, Minor: 7, Patch: 1}) || k.EnabledUSB != 0x023B ||
		k.Transports&device.TransportNFC == 0 || k.ConfigLocked || k.Model == "" {
		t.Fatalf("%+v", k)
	}
	for _, bad := range [][]byte{nil, {0x05, 0x02}, deviceInfo(tv(tagSerial, 1, 2, 3, 4))[:4]} {
		if err := parse(&device.Key{}, bad); err == nil {
			t.Errorf("%x parsed", bad)
		}
	}
}

// FuzzParseDeviceInfo: whatever a key answers to READ CONFIG, parse returns
// an error or a key whose serial and firmware are the ones it sent.
func FuzzParseDeviceInfo(f *testing.F) {
	f.Add(deviceInfo(tv(tagUSBSupported, 0x02, 0x3B), tv(tagSerial, 0x01, 0x02, 0x03, 0x04), tv(tagUSBEnabled, 0x02, 0x3B),
		tv(tagFormFactor, 0x01), tv(tagVersion, 5, 7, 1), tv(tagNFCSupported, 0x02, 0x3B), tv(tagNFCEnabled, 0x02, 0x3B), tv(tagConfigLock, 0x00)))
	f.Add(deviceInfo(tv(tagSerial, 0, 0, 0, 1), tv(tagVersion, 4, 3, 7)))
	f.Add(deviceInfo(tv(tagFormFactor, 0x83), tv(tagConfigLock, 0x01)))
	f.Add(deviceInfo(tv(tagSerial, 1, 2)))
	f.Add([]byte{0x00})
	f.Add([]byte{0x03, 0x02, 0x04, 0x00})
	f.Fuzz(func(t *testing.T, resp []byte) {
		var k device.Key
		if err := parse(&k, resp); err != nil {
			return
		}
		if k.Model == "" {
			t.Fatal("a parsed key without a model name")
		}
		if !k.SerialUnknown {
			var s [4]byte
			binary.BigEndian.PutUint32(s[:], k.Serial)
			if !bytes.Contains(resp, append([]byte{tagSerial, 4}, s[:]...)) {
				t.Fatalf("serial %d is not in %x", k.Serial, resp)
			}
		}
		if k.FormFactor > 0x0F {
			t.Fatalf("form factor %#x", k.FormFactor)
		}
	})
}
