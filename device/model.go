// Package device defines keydesk's model of a YubiKey, the typed errors its
// operations return, and the callbacks through which an operation asks the
// person at the desk for a PIN, a touch or a reinsertion. Adapters over piv-go
// and go-libfido2 plug in beneath it; the layer never prompts, prints or exits.
package device

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"strings"
)

// Version is a firmware version (YubiKey GET VERSION, INS 0xFD).
type Version struct{ Major, Minor, Patch uint8 }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v is the same as or newer than o.
func (v Version) AtLeast(o Version) bool {
	if v.Major != o.Major {
		return v.Major > o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor > o.Minor
	}
	return v.Patch >= o.Patch
}

// Application is one YubiKey application as the management applet names it.
type Application uint16

// Capability bits of the YubiKey management applet.
const (
	AppOTP     Application = 0x0001
	AppU2F     Application = 0x0002
	AppOpenPGP Application = 0x0008
	AppPIV     Application = 0x0010
	AppOATH    Application = 0x0020
	AppHSMAuth Application = 0x0100
	AppFIDO2   Application = 0x0200
)

var appNames = []struct {
	a    Application
	name string
}{{AppOTP, "OTP"}, {AppU2F, "U2F"}, {AppFIDO2, "FIDO2"}, {AppOATH, "OATH"}, {AppPIV, "PIV"}, {AppOpenPGP, "OpenPGP"}, {AppHSMAuth, "YubiHSM Auth"}}

// Names lists the applications in a, in the order ykman prints them.
func (a Application) Names() []string {
	var out []string
	for _, n := range appNames {
		if a&n.a != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func (a Application) String() string {
	n := a.Names()
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

// ParseApplication reads an application name as ykman spells it.
func ParseApplication(s string) (Application, error) {
	for _, n := range appNames {
		if strings.EqualFold(n.name, s) || (n.a == AppHSMAuth && strings.EqualFold(s, "HSMAUTH")) {
			return n.a, nil
		}
	}
	return 0, fmt.Errorf("application %q unknown (OTP, U2F, FIDO2, OATH, PIV, OpenPGP, HSMAUTH)", s)
}

// Transport is a way a key is reached.
type Transport uint8

const (
	TransportUSB Transport = 1 << iota
	TransportNFC
)

// Key is one physical key as discovery saw it. Serial is zero and
// SerialUnknown true when no interface let keydesk read it.
type Key struct {
	Serial        uint32
	SerialUnknown bool
	Model         string
	Firmware      Version
	FormFactor    uint8
	SupportedUSB  Application
	SupportedNFC  Application
	EnabledUSB    Application
	EnabledNFC    Application
	ConfigLocked  bool
	Transports    Transport
	// Virtual is set for keydesk's practice-mode keys, which are software
	// and must never be taken for hardware.
	Virtual  bool
	Reader   string // PC/SC reader name, empty when not reachable over PC/SC
	FIDOPath string // FIDO HID device path, empty when not reachable over HID
}

// MgmtKeyAlgorithm is the PIV management key's algorithm (SP 800-78-4
// table 6-1 identifiers).
type MgmtKeyAlgorithm uint8

const (
	Mgmt3DES   MgmtKeyAlgorithm = 0x03
	MgmtAES128 MgmtKeyAlgorithm = 0x08
	MgmtAES192 MgmtKeyAlgorithm = 0x0A
	MgmtAES256 MgmtKeyAlgorithm = 0x0C
)

func (a MgmtKeyAlgorithm) String() string {
	switch a {
	case Mgmt3DES:
		return "TDES"
	case MgmtAES128:
		return "AES128"
	case MgmtAES192:
		return "AES192"
	case MgmtAES256:
		return "AES256"
	}
	return fmt.Sprintf("0x%02X", uint8(a))
}

// KeyOrigin says whether a slot's key was generated on the key or imported.
type KeyOrigin uint8

const (
	OriginUnknown KeyOrigin = iota
	OriginGenerated
	OriginImported
)

// SlotStatus is what the key reports about one PIV slot.
type SlotStatus struct {
	Slot        uint8
	Empty       bool // no key (a certificate may still be stored)
	Algorithm   string
	PINPolicy   string
	TouchPolicy string
	Origin      KeyOrigin
	PublicKey   crypto.PublicKey
	Certificate *x509.Certificate
	// CertificateError says why a stored certificate could not be parsed.
	CertificateError string
}

// PIVStatus is the PIV applet's state (NIST SP 800-73-4 plus YubiKey
// extensions).
type PIVStatus struct {
	Serial           uint32
	Firmware         Version
	PINRetries       int // -1 when the key cannot say
	PUKRetries       int // -1 before firmware 5.3
	PINDefault       bool
	PUKDefault       bool
	MgmtKeyAlgorithm MgmtKeyAlgorithm
	MgmtKeyDefault   bool
	MgmtKeyProtected bool // PIVMAN 0x5FFF00 bit 0x02: the key is stored in PRINTED 0x5FC109
	// PUKBlockedByPIVMAN is the deprecated PIN-derived mode (PIVMAN bit 0x01).
	PUKBlockedByPIVMAN bool
	Slots              []SlotStatus
}

// FIDOStatus is the authenticator's state (CTAP 2.1 §6.4 getInfo and
// §6.5 clientPIN getRetries).
type FIDOStatus struct {
	AAGUID            [16]byte
	Versions          []string
	Options           map[string]bool
	PINSet            bool
	PINRetries        int
	RemainingResident int
	MinPINLength      int
	ForcePINChange    bool
	// Firmware is the authenticator's firmwareVersion (getInfo 0x0E), or the
	// CTAPHID INIT device version when the key does not report it.
	Firmware   Version
	Extensions []string
	// EnterpriseAttestation is true when the key supports enterprise
	// attestation (getInfo option "ep" present, CTAP 2.1 §7.1);
	// EnterpriseAttestationEnabled is that option's value.
	EnterpriseAttestation        bool
	EnterpriseAttestationEnabled bool
	// LibraryLacks names the FIDO library functions keydesk uses that the
	// libfido2 on this computer lacks (on Windows, the one go-libfido2
	// bundles predates authenticatorConfig). The features that need them
	// fail with ErrLibraryLacks; the figures they read are unknown.
	LibraryLacks []string
}
