package ctap

import "github.com/keydesk/keydesk/device/virtual/mgmtapplet"

// cmdReadConfig is Yubico's vendor CTAPHID command READ_CONFIG (the first
// vendor command, 0x40, plus 2; yubikit.management). It answers with the
// same length-prefixed device-information TLVs as the management
// application's READ CONFIG over CCID, so a host can learn a key's serial
// over its FIDO HID interface. The request carries an optional one-byte
// page number; the virtual key has only page 0.
const cmdReadConfig byte = 0x42

// Vendor answers Yubico's vendor CTAPHID commands (ctaphid.VendorHandler).
func (a *Authenticator) Vendor(cmd byte, data []byte) ([]byte, bool) {
	if cmd != cmdReadConfig || len(data) > 1 {
		return nil, false
	}
	if len(data) == 1 && data[0] != 0 {
		return []byte{0}, true // no further pages: an empty TLV list
	}
	return mgmtapplet.DeviceInfo(a.key.Identity()), true
}
