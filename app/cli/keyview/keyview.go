// Package keyview is how keydesk's command line shows a key and its
// applications' state: the text report and the JSON views (docs/cli.md,
// "JSON output"). The command line (app/cli) and cmd/keydesk's start-up
// path for status commands both print through it, so their output is the
// same byte for byte.
package keyview

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
)

// JSON writes v as keydesk's commands print JSON: indented by two spaces,
// one value per line.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// KeyView is a key as keydesk prints it in JSON.
type KeyView struct {
	Serial       uint32   `json:"serial,omitempty"`
	SerialKnown  bool     `json:"serial_known"`
	Model        string   `json:"model"`
	Firmware     string   `json:"firmware,omitempty"`
	FormFactor   uint8    `json:"form_factor,omitempty"`
	EnabledUSB   []string `json:"enabled_usb,omitempty"`
	EnabledNFC   []string `json:"enabled_nfc,omitempty"`
	SupportedUSB []string `json:"supported_usb,omitempty"`
	SupportedNFC []string `json:"supported_nfc,omitempty"`
	ConfigLocked bool     `json:"config_locked,omitempty"`
	NFC          bool     `json:"nfc"`
	Virtual      bool     `json:"virtual"`
	Reader       string   `json:"reader,omitempty"`
	FIDOPath     string   `json:"fido_path,omitempty"`
}

// ViewKey is k as JSON shows it.
func ViewKey(k device.Key) KeyView {
	v := KeyView{Serial: k.Serial, SerialKnown: !k.SerialUnknown, Model: k.Model, FormFactor: k.FormFactor,
		EnabledUSB: k.EnabledUSB.Names(), EnabledNFC: k.EnabledNFC.Names(), SupportedUSB: k.SupportedUSB.Names(),
		SupportedNFC: k.SupportedNFC.Names(), ConfigLocked: k.ConfigLocked, NFC: k.Transports&device.TransportNFC != 0,
		Virtual: k.Virtual, Reader: k.Reader, FIDOPath: k.FIDOPath}
	if k.Firmware != (device.Version{}) {
		v.Firmware = k.Firmware.String()
	}
	if v.Model == "" {
		v.Model = "FIDO security key"
	}
	return v
}

// Label is k on one line: serial (or "serial unknown"), model, firmware,
// and a mark on a practice key.
func Label(k device.Key) string {
	id := "serial unknown"
	if !k.SerialUnknown {
		id = fmt.Sprintf("%d", k.Serial)
	}
	model := k.Model
	if model == "" {
		model = "FIDO security key"
	}
	s := fmt.Sprintf("%-10s %s", id, model)
	if k.Firmware != (device.Version{}) {
		s += " (" + k.Firmware.String() + ")"
	}
	if k.Virtual {
		s += "  [VIRTUAL - practice mode]"
	}
	return s
}

// SlotView is one PIV slot in JSON.
type SlotView struct {
	Slot        string `json:"slot"`
	Empty       bool   `json:"empty,omitempty"`
	Algorithm   string `json:"algorithm,omitempty"`
	PINPolicy   string `json:"pin_policy,omitempty"`
	TouchPolicy string `json:"touch_policy,omitempty"`
	Origin      string `json:"origin,omitempty"`
	Subject     string `json:"certificate_subject,omitempty"`
	Issuer      string `json:"certificate_issuer,omitempty"`
	NotAfter    string `json:"certificate_not_after,omitempty"`
	Fingerprint string `json:"certificate_sha256,omitempty"`
}

// PIVView is the PIV status in JSON.
type PIVView struct {
	PINRetries       int        `json:"pin_retries"`
	PUKRetries       int        `json:"puk_retries"`
	PINDefault       bool       `json:"pin_default"`
	PUKDefault       bool       `json:"puk_default"`
	MgmtKeyAlgorithm string     `json:"management_key_algorithm"`
	MgmtKeyDefault   bool       `json:"management_key_default"`
	MgmtKeyProtected bool       `json:"management_key_protected"`
	Slots            []SlotView `json:"slots"`
}

// FIDOView is the FIDO2 status in JSON.
type FIDOView struct {
	AAGUID            string          `json:"aaguid"`
	Versions          []string        `json:"versions"`
	Options           map[string]bool `json:"options"`
	PINSet            bool            `json:"pin_set"`
	PINRetries        int             `json:"pin_retries"`
	RemainingResident int             `json:"remaining_discoverable_credentials"`
	MinPINLength      int             `json:"min_pin_length"`
	ForcePINChange    bool            `json:"force_pin_change"`
	LibraryLacks      []string        `json:"libfido2_lacks,omitempty"`
}

func origin(o device.KeyOrigin) string {
	switch o {
	case device.OriginGenerated:
		return "generated"
	case device.OriginImported:
		return "imported"
	}
	return ""
}

// ViewPIV is the PIV status as JSON shows it; nil for nil.
func ViewPIV(st *device.PIVStatus) *PIVView {
	if st == nil {
		return nil
	}
	v := &PIVView{PINRetries: st.PINRetries, PUKRetries: st.PUKRetries, PINDefault: st.PINDefault, PUKDefault: st.PUKDefault,
		MgmtKeyAlgorithm: st.MgmtKeyAlgorithm.String(), MgmtKeyDefault: st.MgmtKeyDefault, MgmtKeyProtected: st.MgmtKeyProtected,
		Slots: []SlotView{}}
	for _, s := range st.Slots {
		sv := SlotView{Slot: fmt.Sprintf("%02x", s.Slot), Empty: s.Empty, Algorithm: s.Algorithm, PINPolicy: s.PINPolicy,
			TouchPolicy: s.TouchPolicy, Origin: origin(s.Origin)}
		if c := s.Certificate; c != nil {
			sv.Subject, sv.Issuer, sv.NotAfter = c.Subject.String(), c.Issuer.String(), c.NotAfter.UTC().Format("2006-01-02")
			sv.Fingerprint = fingerprint(c)
		}
		v.Slots = append(v.Slots, sv)
	}
	return v
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// ViewFIDO is the FIDO2 status as JSON shows it; nil for nil.
func ViewFIDO(st *device.FIDOStatus) *FIDOView {
	if st == nil {
		return nil
	}
	return &FIDOView{AAGUID: FormatAAGUID(st.AAGUID), Versions: st.Versions, Options: st.Options, PINSet: st.PINSet,
		PINRetries: st.PINRetries, RemainingResident: st.RemainingResident, MinPINLength: st.MinPINLength, ForcePINChange: st.ForcePINChange,
		LibraryLacks: st.LibraryLacks}
}

// FormatAAGUID writes an AAGUID in the 8-4-4-4-12 form.
func FormatAAGUID(a [16]byte) string {
	h := hex.EncodeToString(a[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// PrintReport writes the text report of a key and the applications read
// in r.
func PrintReport(w io.Writer, r *keys.Report) {
	k := r.Key
	fmt.Fprintf(w, "Key:        %s\n", Label(k))
	if k.Virtual {
		fmt.Fprintln(w, "            This is a VIRTUAL practice key, not hardware.")
	}
	if len(k.EnabledUSB.Names()) > 0 {
		fmt.Fprintf(w, "USB:        %s\n", k.EnabledUSB)
	}
	if k.SupportedNFC != 0 {
		fmt.Fprintf(w, "NFC:        %s\n", k.EnabledNFC)
	}
	if k.ConfigLocked {
		fmt.Fprintln(w, "            Configuration locked with a lock code.")
	}
	if r.PIV != nil {
		printPIVReport(w, r.PIV)
	} else if r.PIVError != "" {
		fmt.Fprintf(w, "\nPIV: could not be read: %s\n", r.PIVError)
	}
	if r.FIDO != nil {
		printFIDOReport(w, r.FIDO)
	} else if r.FIDOError != "" {
		fmt.Fprintf(w, "\nFIDO2: could not be read: %s\n", r.FIDOError)
	}
}

func printPIVReport(w io.Writer, p *device.PIVStatus) {
	fmt.Fprintf(w, "\nPIV\n  PIN tries left:   %s%s\n", Tries(p.PINRetries), defaultNote(p.PINDefault, "PIN"))
	fmt.Fprintf(w, "  PUK tries left:   %s%s\n", Tries(p.PUKRetries), defaultNote(p.PUKDefault, "PUK"))
	mk := p.MgmtKeyAlgorithm.String()
	switch {
	case p.MgmtKeyProtected:
		mk += ", stored on the key, protected by the PIN"
	case p.MgmtKeyDefault:
		mk += ", FACTORY DEFAULT (change it)"
	}
	fmt.Fprintf(w, "  Management key:   %s\n", mk)
	if len(p.Slots) == 0 {
		fmt.Fprintln(w, "  Slots:            all empty")
	}
	for _, s := range p.Slots {
		line := fmt.Sprintf("  Slot %02X:          ", s.Slot)
		if s.Empty {
			line += "no key"
		} else {
			line += strings.TrimSpace(fmt.Sprintf("%s, %s, PIN %s, touch %s", s.Algorithm, origin(s.Origin), s.PINPolicy, s.TouchPolicy))
		}
		if s.Certificate != nil {
			line += "; certificate " + s.Certificate.Subject.String() + ", expires " + s.Certificate.NotAfter.Format("2006-01-02")
		}
		fmt.Fprintln(w, line)
	}
}

func printFIDOReport(w io.Writer, f *device.FIDOStatus) {
	fmt.Fprintf(w, "\nFIDO2\n  AAGUID:           %s\n  Versions:         %s\n", FormatAAGUID(f.AAGUID), strings.Join(f.Versions, ", "))
	if f.PINSet {
		fmt.Fprintf(w, "  PIN:              set, %d tries left\n", f.PINRetries)
	} else {
		fmt.Fprintln(w, "  PIN:              NOT SET (set one: keydesk fido set-pin)")
	}
	fmt.Fprintf(w, "  Minimum PIN:      %d\n", f.MinPINLength)
	if f.ForcePINChange {
		fmt.Fprintln(w, "  PIN must be changed before next use.")
	}
	fmt.Fprintf(w, "  Free discoverable credential slots: %d\n", f.RemainingResident)
	if len(f.LibraryLacks) > 0 {
		fmt.Fprintf(w, "  Not supported by the libfido2 present (a newer fido2.dll beside keydesk.exe adds them): %s\n", strings.Join(f.LibraryLacks, ", "))
	}
}

// Tries is a retry counter as the report says it.
func Tries(n int) string {
	if n < 0 {
		return "unknown"
	}
	if n == 0 {
		return "0 (BLOCKED)"
	}
	return fmt.Sprint(n)
}

func defaultNote(def bool, what string) string {
	if def {
		return "  (factory default " + what + ": change it)"
	}
	return ""
}
