// Package virtual holds the state every applet of a virtual YubiKey 5 shares:
// its identity (serial, firmware, form factor, applications), its power and
// insertion state, and simulated user presence.
//
// The applets themselves live in sub-packages (pivapplet, mgmtapplet, ctap)
// and the transports that real stacks reach in others (vpcd, ptyhid). Nothing
// here knows about a transport or about keydesk's device layer.
package virtual

import "fmt"

// Version is a firmware version, as reported by GET VERSION (PIV INS 0xFD)
// and the management applet's device information.
type Version struct {
	Major, Minor, Patch uint8
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v is the same as or newer than major.minor.patch.
func (v Version) AtLeast(major, minor, patch uint8) bool {
	if v.Major != major {
		return v.Major > major
	}
	if v.Minor != minor {
		return v.Minor > minor
	}
	return v.Patch >= patch
}

// ParseVersion parses "5.7.2".
func ParseVersion(s string) (Version, error) {
	var v Version
	if _, err := fmt.Sscanf(s, "%d.%d.%d", &v.Major, &v.Minor, &v.Patch); err != nil {
		return Version{}, fmt.Errorf("parsing firmware version %q: want MAJOR.MINOR.PATCH", s)
	}
	return v, nil
}

// FormFactor is the management applet's form-factor byte (Yubico's
// "YubiKey 5 Series Technical Manual", device information tag 0x04).
type FormFactor uint8

const (
	FormFactorUnknown       FormFactor = 0x00
	FormFactorUSBAKeychain  FormFactor = 0x01
	FormFactorUSBANano      FormFactor = 0x02
	FormFactorUSBCKeychain  FormFactor = 0x03
	FormFactorUSBCNano      FormFactor = 0x04
	FormFactorUSBCLightning FormFactor = 0x05
	FormFactorUSBABio       FormFactor = 0x06
	FormFactorUSBCBio       FormFactor = 0x07
)

var formFactorNames = map[FormFactor]string{
	FormFactorUnknown:       "unknown",
	FormFactorUSBAKeychain:  "usb-a-keychain",
	FormFactorUSBANano:      "usb-a-nano",
	FormFactorUSBCKeychain:  "usb-c-keychain",
	FormFactorUSBCNano:      "usb-c-nano",
	FormFactorUSBCLightning: "usb-c-lightning",
	FormFactorUSBABio:       "usb-a-bio",
	FormFactorUSBCBio:       "usb-c-bio",
}

func (f FormFactor) String() string {
	if n, ok := formFactorNames[f]; ok {
		return n
	}
	return fmt.Sprintf("form-factor-0x%02x", uint8(f))
}

// ParseFormFactor accepts the names String returns.
func ParseFormFactor(s string) (FormFactor, error) {
	for f, n := range formFactorNames {
		if n == s {
			return f, nil
		}
	}
	return 0, fmt.Errorf("unknown form factor %q", s)
}

// Capability is a bit set of applications, encoded as in the management
// applet's device information (tags 0x01/0x03 supported, 0x02/0x04... enabled).
type Capability uint16

const (
	CapOTP     Capability = 0x0001
	CapU2F     Capability = 0x0002
	CapOpenPGP Capability = 0x0008
	CapPIV     Capability = 0x0010
	CapOATH    Capability = 0x0020
	CapHSMAuth Capability = 0x0100
	CapFIDO2   Capability = 0x0200
)

// CapAll is every application a YubiKey 5 with NFC ships with.
const CapAll = CapOTP | CapU2F | CapOpenPGP | CapPIV | CapOATH | CapFIDO2

// Has reports whether every bit of c2 is set in c.
func (c Capability) Has(c2 Capability) bool { return c&c2 == c2 }

// Identity is what a YubiKey says about itself. It is fixed at manufacture
// except for the enabled applications, which `ykman config` changes.
type Identity struct {
	Serial       uint32     `json:"serial"`
	Firmware     Version    `json:"firmware"`
	FormFactor   FormFactor `json:"form_factor"`
	SupportedUSB Capability `json:"supported_usb"`
	SupportedNFC Capability `json:"supported_nfc"`
	EnabledUSB   Capability `json:"enabled_usb"`
	EnabledNFC   Capability `json:"enabled_nfc"`
	// ConfigLocked mirrors the management applet's configuration lock, and
	// LockCode is the 16-byte code that unlocks it.
	ConfigLocked bool   `json:"config_locked"`
	LockCode     []byte `json:"lock_code,omitempty"`
}

// DefaultIdentity is a YubiKey 5C NFC on firmware 5.7.2 with every
// application enabled.
func DefaultIdentity(serial uint32) Identity {
	return Identity{
		Serial:       serial,
		Firmware:     Version{5, 7, 2},
		FormFactor:   FormFactorUSBCKeychain,
		SupportedUSB: CapAll,
		SupportedNFC: CapAll,
		EnabledUSB:   CapAll,
		EnabledNFC:   CapAll,
	}
}

// Name is the model name ykman derives for this identity, e.g. "YubiKey 5C NFC".
func (id Identity) Name() string {
	switch id.FormFactor {
	case FormFactorUSBANano:
		return "YubiKey 5 Nano"
	case FormFactorUSBCNano:
		return "YubiKey 5C Nano"
	case FormFactorUSBCLightning:
		return "YubiKey 5Ci"
	case FormFactorUSBCKeychain:
		if id.SupportedNFC != 0 {
			return "YubiKey 5C NFC"
		}
		return "YubiKey 5C"
	default:
		if id.SupportedNFC != 0 {
			return "YubiKey 5 NFC"
		}
		return "YubiKey 5A"
	}
}
