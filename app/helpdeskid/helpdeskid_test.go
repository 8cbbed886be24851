package helpdeskid

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
)

// noKeyring makes the OS keyring unreachable, as on a desktop with no
// session bus: asking it fails at once with *secrets.UnavailableError.
func noKeyring(t *testing.T) *secrets.Keyring {
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "disabled:")
	return secrets.New("keydesk-helpdeskid-test")
}

func practice(rcpts ...string) settings.Settings {
	s := settings.Default()
	s.Practice = true
	s.HelpdeskRecipients = rcpts
	return s
}

// TestRealDeskUsesKeyringOnly: a desk not in practice mode keeps its
// settings, makes no practice identity even with no recipient set, and
// asks the keyring alone, even when a practice identity file is there.
func TestRealDeskUsesKeyringOnly(t *testing.T) {
	kr := noKeyring(t)
	dir := t.TempDir()
	id, _, err := escrow.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if err := secrets.NewDir(dir).Put(PracticeFile, id); err != nil {
		t.Fatal(err)
	}
	for _, s := range []settings.Settings{settings.Default(), func() settings.Settings {
		s := settings.Default()
		s.HelpdeskRecipients = []string{mustRecipient(t, id)}
		return s
	}()} {
		got, src, err := Resolve(s, Options{DataDir: dir, Keyring: kr})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.HelpdeskRecipients) != len(s.HelpdeskRecipients) || src.Practice() || src.Path() != "" {
			t.Fatalf("real desk: recipients %v (had %v), practice %v", got.HelpdeskRecipients, s.HelpdeskRecipients, src.Practice())
		}
		_, err = src.Identity()
		var ue *secrets.UnavailableError
		if !errors.As(err, &ue) {
			t.Fatalf("real desk's identity with no keyring: %v, want the keyring unavailable", err)
		}
	}
	empty := t.TempDir()
	if _, _, err := Resolve(settings.Default(), Options{DataDir: empty, Keyring: kr}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(empty, PracticeFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a real desk made a practice identity: %v", err)
	}
}

// TestPracticeDeskMakesAndKeepsIdentity: a practice desk with no
// recipient gets one practice identity (mode 0600) that becomes its one
// recipient and opens what is sealed to it; the next run finds the same.
func TestPracticeDeskMakesAndKeepsIdentity(t *testing.T) {
	kr := noKeyring(t)
	dir := filepath.Join(t.TempDir(), "keydesk")
	got, src, err := Resolve(practice(), Options{DataDir: dir, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	if !src.Practice() || len(got.HelpdeskRecipients) != 1 || src.Path() != filepath.Join(dir, PracticeFile) {
		t.Fatalf("practice desk: recipients %v, practice %v, path %q", got.HelpdeskRecipients, src.Practice(), src.Path())
	}
	if err := got.ReadyToEnrol(); err != nil {
		t.Fatalf("practice settings not ready to enrol: %v", err)
	}
	fi, err := os.Stat(src.Path())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("practice identity file: %v, %v", fi, err)
	}
	id, err := src.Identity()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := escrow.Seal(escrow.PIVSecrets{Serial: 7, PUK: "12121212", ManagementKey: make([]byte, 24), Algorithm: "aes192"}, got.HelpdeskRecipients)
	if err != nil {
		t.Fatal(err)
	}
	if sec, err := escrow.Open(blob, id); err != nil || sec.PUK != "12121212" {
		t.Fatalf("opening with the practice identity: %v", err)
	}
	again, src2, err := Resolve(practice(), Options{DataDir: dir, Keyring: kr})
	if err != nil || again.HelpdeskRecipients[0] != got.HelpdeskRecipients[0] || !src2.Practice() {
		t.Fatalf("second run: %v, %v (first %v)", again.HelpdeskRecipients, err, got.HelpdeskRecipients)
	}
}

// TestPracticeDeskWithRecipients: a practice desk whose settings name the
// helpdesk's recipients keeps them and uses the keyring, unless the
// practice identity's own recipient is among them.
func TestPracticeDeskWithRecipients(t *testing.T) {
	kr := noKeyring(t)
	dir := t.TempDir()
	_, other, err := escrow.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	// No practice identity yet: none is made.
	got, src, err := Resolve(practice(other), Options{DataDir: dir, Keyring: kr})
	if err != nil || src.Practice() || len(got.HelpdeskRecipients) != 1 || got.HelpdeskRecipients[0] != other {
		t.Fatalf("practice desk with a recipient: %v, practice %v, %v", got.HelpdeskRecipients, src.Practice(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, PracticeFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a practice identity was made for a desk with a recipient: %v", err)
	}
	// One made earlier, its recipient not in the settings: the keyring.
	_, first, err := Resolve(practice(), Options{DataDir: dir, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := first.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if _, src, _ := Resolve(practice(other), Options{DataDir: dir, Keyring: kr}); src.Practice() {
		t.Fatal("the practice identity opens escrows sealed to another recipient")
	}
	// Its recipient saved into the settings: the practice file.
	got, src, err = Resolve(practice(other, " "+mustRecipient(t, pid)+" "), Options{DataDir: dir, Keyring: kr})
	if err != nil || !src.Practice() || len(got.HelpdeskRecipients) != 2 {
		t.Fatalf("practice recipient in the settings: %v, practice %v, %v", got.HelpdeskRecipients, src.Practice(), err)
	}
	if id, err := src.Identity(); err != nil || id != pid {
		t.Fatalf("identity: %v", err)
	}
}

// TestPracticeIdentityFaults: a data directory that cannot be made, or a
// practice identity file others can read, is an error and leaves the
// settings as they were.
func TestPracticeIdentityFaults(t *testing.T) {
	kr := noKeyring(t)
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, src, err := Resolve(practice(), Options{DataDir: filepath.Join(blocker, "keydesk"), Keyring: kr})
	if err == nil || src.Practice() || len(got.HelpdeskRecipients) != 0 {
		t.Fatalf("data directory under a file: %v, practice %v, recipients %v", err, src.Practice(), got.HelpdeskRecipients)
	}
	dir := t.TempDir()
	id, _, _ := escrow.NewIdentity()
	p := filepath.Join(dir, PracticeFile)
	if err := os.WriteFile(p, []byte(id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, src, err := Resolve(practice(), Options{DataDir: dir, Keyring: kr}); err == nil || src.Practice() {
		t.Fatalf("practice identity readable by others: %v, practice %v", err, src.Practice())
	}
	if err := os.WriteFile(p, []byte("not an identity\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Resolve(practice(), Options{DataDir: dir, Keyring: kr}); err == nil {
		t.Fatal("a practice identity file that holds no identity was accepted")
	}
}

func mustRecipient(t *testing.T, id string) string {
	t.Helper()
	ident, err := age.ParseX25519Identity(id)
	if err != nil {
		t.Fatal(err)
	}
	return ident.Recipient().String()
}
