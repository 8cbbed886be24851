// Package settings holds a desk's keydesk settings: which registry it talks
// to, the organisation's FIDO2 and PIV enrolment policy, who escrowed
// secrets are sealed to, and which attestation roots it trusts. They live
// in one JSON file under the user's config directory
// ($XDG_CONFIG_HOME/keydesk/settings.json), mode 0600. Secrets are never
// kept here: the registry token and the helpdesk identity live in the OS
// keyring (app/secrets).
package settings

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/idp"
)

// PIV certificate modes: what enrolment does with the key generated in
// slot 9a (NIST SP 800-73-4 Part 1 §3.3.2, PIV Authentication).
const (
	// CertSelfSigned stores a self-signed certificate in slot 9a.
	CertSelfSigned = "self-signed"
	// CertCSR writes a PKCS#10 request for the organisation's CA into
	// CSRDir, named after the key's serial.
	CertCSR = "csr"
)

// Bounds of the FIDO2 PIN policy. CTAP 2.1 §6.5.1 allows PINs of 4 to 63
// bytes; a longer minimum than 63 could never be met.
const (
	MinPINFloor   = 4
	MinPINCeiling = 63
)

// Settings is one desk's configuration. The zero value is not valid; start
// from Default.
type Settings struct {
	// RegistryURL is the registry's base URL ("https://registry.example.org").
	// Empty means the embedded registry: an in-process registry over SQLite
	// in the user's data directory, for a desk that stands alone.
	RegistryURL string `json:"registry_url"`
	// RegistryCA is a PEM file of certificates to trust for the registry's
	// TLS (a self-signed registry's certificate, pinned). Empty uses the
	// system's roots.
	RegistryCA string `json:"registry_ca,omitempty"`

	// RPID is the WebAuthn relying party id of the organisation's FIDO2
	// credential (WebAuthn L2 §5.1.2): a domain such as "example.org".
	RPID string `json:"rp_id"`
	// RPName is shown by some platforms next to the credential.
	RPName string `json:"rp_name,omitempty"`
	// MinPINLength is the shortest FIDO2 PIN accepted at enrolment, in
	// Unicode code points (CTAP 2.1 §6.5.1 counts code points too).
	MinPINLength int `json:"min_pin_length"`
	// ForcePINChange makes the user change the PIN set at the desk at first
	// use (CTAP 2.1 §6.11 setMinPINLength with forceChangePin), for desks
	// where the admin types the first PIN.
	ForcePINChange bool `json:"force_pin_change"`
	// CredProtect is the credProtect level of the organisation's credential
	// (CTAP 2.1 §12.1): 2 (user verification optional with the credential
	// id) or 3 (user verification required). 1 is refused.
	CredProtect int `json:"cred_protect"`
	// Discoverable makes the credential discoverable (a resident key,
	// WebAuthn L2 §6.2.2), so the user signs in without typing a name.
	Discoverable bool `json:"discoverable"`

	// HelpdeskRecipients are the age recipients ("age1…") that escrowed
	// PUKs and management keys are sealed to; any one of their identities
	// can open them. Enrolment refuses to run with none.
	HelpdeskRecipients []string `json:"helpdesk_recipients"`
	// TrustRoots are PEM files of extra attestation roots to accept, for
	// FIDO2 and PIV, besides Yubico's.
	TrustRoots []string `json:"trust_roots,omitempty"`
	// Practice runs on keydesk-sim's virtual keys and accepts their
	// attestation root. Never on a production desk.
	Practice bool `json:"practice"`

	// PIVCertMode is CertSelfSigned or CertCSR.
	PIVCertMode string `json:"piv_cert_mode"`
	// CSRDir is where CertCSR writes requests; required in that mode.
	CSRDir string `json:"csr_dir,omitempty"`
	// CertValidityDays is how long a self-signed certificate is valid.
	CertValidityDays int `json:"cert_validity_days"`

	// Providers are the identity providers every enrolled key is also
	// registered with (docs/identity-providers.md), in order. Their secrets
	// (client secrets, admin tokens) are never here: connectors read them
	// from the OS keyring (idp.Secrets).
	Providers []idp.Config `json:"providers,omitempty"`
}

// Default returns the settings a new desk starts from: the embedded
// registry, an 8-character FIDO2 PIN changed at first use, credProtect 2,
// discoverable credentials, self-signed PIV certificates.
func Default() Settings {
	return Settings{
		RPID:             "keydesk.localhost",
		RPName:           "keydesk",
		MinPINLength:     8,
		ForcePINChange:   false,
		CredProtect:      2,
		Discoverable:     true,
		PIVCertMode:      CertSelfSigned,
		CertValidityDays: 365,
	}
}

// FieldError is a setting with a value that can't be used.
type FieldError struct {
	Field string // the JSON name, as written in the file
	Msg   string
	Err   error // a sentinel the problem matches (ErrNoRecipients), or nil
}

func (e *FieldError) Error() string { return fmt.Sprintf("setting %s: %s", e.Field, e.Msg) }
func (e *FieldError) Unwrap() error { return e.Err }

// Label is the field's name in words, as a person reads it on the desktop
// app's Settings screen ("Helpdesk recipients" for helpdesk_recipients).
func (e *FieldError) Label() string { return Label(e.Field) }

// Label names a setting (by its JSON name) in words.
func Label(field string) string {
	if l, ok := labels[field]; ok {
		return l
	}
	return field
}

var labels = map[string]string{
	"registry_url":        "Registry URL",
	"registry_ca":         "Registry CA",
	"rp_id":               "RP id",
	"rp_name":             "RP name",
	"min_pin_length":      "Minimum PIN length",
	"force_pin_change":    "Force PIN change",
	"cred_protect":        "credProtect",
	"discoverable":        "Discoverable",
	"helpdesk_recipients": "Helpdesk recipients",
	"trust_roots":         "Trust roots",
	"practice":            "Practice mode",
	"piv_cert_mode":       "PIV certificate",
	"csr_dir":             "CSR directory",
	"cert_validity_days":  "Certificate days",
}

// Plain is the problem in the desktop app's words: other settings named
// by their labels rather than their names in the file, and no
// specification section.
func (e *FieldError) Plain() string { return Plain(e.Msg) }

// Plain is msg with every setting's name in the file replaced by its label
// ("PIV certificate" for piv_cert_mode) and a "(CTAP …)" citation dropped.
func Plain(msg string) string {
	if i := strings.Index(msg, " (CTAP"); i >= 0 {
		if j := strings.Index(msg[i:], ")"); j >= 0 {
			msg = msg[:i] + msg[i+j+1:]
		}
	}
	return plainNames.Replace(msg)
}

var plainNames = func() *strings.Replacer {
	var olds []string
	for name, label := range labels {
		olds = append(olds, name, label)
	}
	return strings.NewReplacer(olds...)
}()

// Errors are every problem Validate found, in field order.
type Errors []*FieldError

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// Validate checks every field and returns nil or Errors naming each bad
// one. It checks form only (a recipient parses, a file is named); whether
// a trust-root file is readable is checked when it is loaded.
func (s Settings) Validate() error {
	var es Errors
	bad := func(field, format string, a ...any) {
		es = append(es, &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	if s.RegistryURL != "" {
		u, err := url.Parse(s.RegistryURL)
		switch {
		case err != nil:
			bad("registry_url", "%q is not a web address; give one such as https://registry.example.org", s.RegistryURL)
		case u.Scheme != "https" && u.Scheme != "http":
			bad("registry_url", "%q must start with https://", s.RegistryURL)
		case u.Host == "":
			bad("registry_url", "%q has no host", s.RegistryURL)
		case u.Scheme == "http" && !loopback(u.Hostname()):
			bad("registry_url", "plain http is allowed only on a loopback address; use https://")
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			bad("registry_url", "give only scheme, host and path")
		}
	} else if s.RegistryCA != "" {
		bad("registry_ca", "is set but registry_url is empty (the embedded registry needs no certificate)")
	}
	if err := checkDomain(s.RPID); err != nil {
		bad("rp_id", "%v", err)
	}
	if s.MinPINLength < MinPINFloor || s.MinPINLength > MinPINCeiling {
		bad("min_pin_length", "%d must be from %d to %d (CTAP 2.1 §6.5.1)", s.MinPINLength, MinPINFloor, MinPINCeiling)
	}
	if s.CredProtect != 2 && s.CredProtect != 3 {
		bad("cred_protect", "%d must be 2 or 3: an organisation's credential needs at least UV-optional-with-credential-id", s.CredProtect)
	}
	for i, r := range s.HelpdeskRecipients {
		if strings.TrimSpace(r) == "" {
			continue
		}
		if _, err := escrow.ParseRecipients([]string{r}); err != nil {
			bad("helpdesk_recipients", "line %d is not an age recipient (one starts with age1 and is 62 characters long)", i+1)
		}
	}
	for i, p := range s.TrustRoots {
		if strings.TrimSpace(p) == "" {
			bad("trust_roots", "entry %d is empty", i+1)
		}
	}
	switch s.PIVCertMode {
	case CertSelfSigned:
	case CertCSR:
		if s.CSRDir == "" {
			bad("csr_dir", "is required when piv_cert_mode is %q", CertCSR)
		}
	default:
		bad("piv_cert_mode", "%q must be %q or %q", s.PIVCertMode, CertSelfSigned, CertCSR)
	}
	names := map[string]bool{}
	for i, p := range s.Providers {
		switch {
		case p.Name == "" || p.Kind == "":
			bad("providers", "entry %d needs a kind and a name", i+1)
		case names[p.Name]:
			bad("providers", "the name %q is used twice", p.Name)
		}
		names[p.Name] = true
	}
	if s.CertValidityDays < 1 || s.CertValidityDays > 3650 {
		bad("cert_validity_days", "%d must be from 1 to 3650", s.CertValidityDays)
	}
	if len(es) == 0 {
		return nil
	}
	return es
}

// ErrNoRecipients: enrolment needs somebody to seal the escrow to.
var ErrNoRecipients = escrow.ErrNoRecipients

// ReadyToEnrol is Validate plus what enrolment needs beyond a valid file:
// at least one helpdesk recipient.
func (s Settings) ReadyToEnrol() error {
	if err := s.Validate(); err != nil {
		return err
	}
	if len(s.HelpdeskRecipients) == 0 {
		return &FieldError{Field: "helpdesk_recipients", Err: ErrNoRecipients,
			Msg: "none is set: add the helpdesk's age recipient (age1…) so PUKs and management keys can be recovered"}
	}
	return nil
}

// Embedded reports whether the desk uses the embedded registry.
func (s Settings) Embedded() bool { return s.RegistryURL == "" }

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkDomain accepts a WebAuthn RP ID: a lowercase DNS name of labels of
// letters, digits and hyphens (WebAuthn L2 §5.1.2 uses a registrable
// domain suffix; an IP address is not allowed).
func checkDomain(d string) error {
	if d == "" {
		return errors.New("is empty; give the organisation's domain, such as example.org")
	}
	if len(d) > 253 {
		return errors.New("is longer than 253 characters")
	}
	if net.ParseIP(d) != nil {
		return fmt.Errorf("%q is an IP address; an rp id is a domain name", d)
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("%q is not a domain name", d)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a lowercase domain name", d)
			}
		}
	}
	return nil
}

// DefaultPath is settings.json in keydesk's directory under the user's
// config directory (os.UserConfigDir: $XDG_CONFIG_HOME or ~/.config).
func DefaultPath() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the config directory: %w", err)
	}
	return filepath.Join(d, "keydesk", "settings.json"), nil
}

// Load reads the settings at path. A missing file gives Default (and no
// error), so a new desk starts working at once. An unknown field is an
// error, so a typo is caught rather than silently ignored. The result is
// validated.
func Load(path string) (Settings, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Default(), nil
	}
	if err != nil {
		return Settings{}, fmt.Errorf("reading settings: %w", err)
	}
	s := Default()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Settings{}, fmt.Errorf("reading settings %s: %w", path, err)
	}
	if err := s.Validate(); err != nil {
		return Settings{}, fmt.Errorf("settings %s: %w", path, err)
	}
	return s, nil
}

// Save validates s and writes it to path atomically: a temporary file in
// the same directory, mode 0600, synced, then renamed over path, so a
// crash leaves the old settings or the new, never half of either.
func Save(path string, s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("saving settings: %w", err)
	}
	f, err := os.CreateTemp(dir, ".settings-*.json")
	if err != nil {
		return fmt.Errorf("saving settings: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("saving settings: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("saving settings: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("saving settings: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("saving settings: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("saving settings: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
