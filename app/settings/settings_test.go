package settings

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/app/escrow"
)

func TestMissingFileGivesDefaults(t *testing.T) {
	s, err := Load(filepath.Join(t.TempDir(), "nope", "settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Embedded() || s.CredProtect != 2 || s.MinPINLength != 8 || s.PIVCertMode != CertSelfSigned {
		t.Fatalf("defaults = %+v", s)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if err := s.ReadyToEnrol(); !errors.Is(err, ErrNoRecipients) {
		t.Fatalf("ReadyToEnrol with no recipients: %v", err)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	_, rcpt, err := escrow.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "keydesk", "settings.json")
	s := Default()
	s.RegistryURL = "https://registry.example.org"
	s.RPID = "example.org"
	s.MinPINLength = 6
	s.ForcePINChange = true
	s.CredProtect = 3
	s.Discoverable = false
	s.HelpdeskRecipients = []string{rcpt}
	s.TrustRoots = []string{"/etc/keydesk/roots.pem"}
	s.PIVCertMode = CertCSR
	s.CSRDir = filepath.Join(dir, "csr")
	if err := Save(path, s); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", fi.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.RegistryURL != s.RegistryURL || got.RPID != s.RPID || got.MinPINLength != 6 || !got.ForcePINChange ||
		got.CredProtect != 3 || got.Discoverable || len(got.HelpdeskRecipients) != 1 || got.HelpdeskRecipients[0] != rcpt ||
		got.PIVCertMode != CertCSR || got.CSRDir != s.CSRDir || len(got.TrustRoots) != 1 {
		t.Fatalf("round trip: got %+v, want %+v", got, s)
	}
	if err := got.ReadyToEnrol(); err != nil {
		t.Fatal(err)
	}
	// Nothing but the settings file is left in the directory.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only settings.json", len(ents))
	}
}

func TestSaveRefusesInvalidAndKeepsOld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "settings.json")
	if err := Save(path, Default()); err != nil {
		t.Fatal(err)
	}
	bad := Default()
	bad.CredProtect = 1
	if err := Save(path, bad); err == nil {
		t.Fatal("saved credProtect 1")
	}
	got, err := Load(path)
	if err != nil || got.CredProtect != 2 {
		t.Fatalf("after refused save: %+v, %v", got, err)
	}
}

func TestValidateNamesEveryField(t *testing.T) {
	s := Default()
	s.RegistryURL = "http://registry.example.org"
	s.RPID = "Example.ORG"
	s.MinPINLength = 3
	s.CredProtect = 1
	s.HelpdeskRecipients = []string{"not-a-recipient"}
	s.PIVCertMode = CertCSR
	s.CertValidityDays = 0
	err := s.Validate()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Validate = %v, want Errors", err)
	}
	want := []string{"registry_url", "rp_id", "min_pin_length", "cred_protect", "helpdesk_recipients", "csr_dir", "cert_validity_days"}
	if len(es) != len(want) {
		t.Fatalf("got %d errors (%v), want %d", len(es), err, len(want))
	}
	for i, f := range want {
		if es[i].Field != f {
			t.Errorf("error %d is about %s, want %s (%v)", i, es[i].Field, f, es[i])
		}
	}
	if !strings.Contains(err.Error(), "setting cred_protect: 1 must be 2 or 3") {
		t.Errorf("message: %v", err)
	}
}

func TestValidateAcceptsLoopbackHTTP(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:1", "https://r.example.org/base"} {
		s := Default()
		s.RegistryURL = u
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"ftp://x", "https://", "https://u:p@x.example.org", "10.0.0.1:8443"} {
		s := Default()
		s.RegistryURL = u
		if err := s.Validate(); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

func TestLoadRefusesUnknownFieldAndBadValue(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.json")
	os.WriteFile(p, []byte(`{"rp_id":"example.org","cred_protekt":2}`), 0o600)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "cred_protekt") {
		t.Fatalf("unknown field: %v", err)
	}
	os.WriteFile(p, []byte(`{"cred_protect":1}`), 0o600)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "cred_protect") {
		t.Fatalf("bad value: %v", err)
	}
	// Fields absent from the file keep their defaults.
	os.WriteFile(p, []byte(`{"rp_id":"example.org"}`), 0o600)
	s, err := Load(p)
	if err != nil || s.RPID != "example.org" || s.CredProtect != 2 {
		t.Fatalf("partial file: %+v, %v", s, err)
	}
}

func TestDefaultPathUnderConfigDir(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/tmp/cfg-test")
	p, err := DefaultPath()
	if err != nil || p != "/tmp/cfg-test/keydesk/settings.json" {
		t.Fatalf("DefaultPath = %q, %v", p, err)
	}
}

// TestPlainNamesNoFileField: every problem Validate finds reads, in the
// desktop app's words (Plain), without a setting's name in the file, a
// parser's text or a specification section.
func TestPlainNamesNoFileField(t *testing.T) {
	bads := []Settings{
		{RegistryCA: "ca.pem", RPID: "", MinPINLength: 99, CredProtect: 1, HelpdeskRecipients: []string{"age1nope"},
			TrustRoots: []string{" "}, PIVCertMode: CertCSR, CertValidityDays: 0},
		{RegistryURL: "https://exa mple.org", RPID: "10.0.0.1", MinPINLength: 8, CredProtect: 2, PIVCertMode: "pem", CertValidityDays: 1},
		{RegistryURL: "ftp://example.org", RPID: "Example.org", MinPINLength: 8, CredProtect: 2, PIVCertMode: CertSelfSigned, CertValidityDays: 1},
		{RegistryURL: "http://example.org", RPID: "example.org", MinPINLength: 8, CredProtect: 2, PIVCertMode: CertSelfSigned, CertValidityDays: 1},
	}
	n := 0
	for _, s := range bads {
		var es Errors
		if !errors.As(s.Validate(), &es) {
			t.Fatalf("%+v validated", s)
		}
		for _, e := range es {
			n++
			p := e.Plain()
			for name := range labels {
				if strings.Contains(p, name) {
					t.Errorf("%s: %q names %s", e.Field, p, name)
				}
			}
			for _, raw := range []string{"§", "CTAP", "parse ", "malformed", "invalid character"} {
				if strings.Contains(p, raw) {
					t.Errorf("%s: %q has %q", e.Field, p, raw)
				}
			}
		}
	}
	if n < 12 {
		t.Fatalf("only %d problems found", n)
	}
}
