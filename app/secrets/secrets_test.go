package secrets

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// newKeyring returns a keyring on the real Secret Service under a service
// name unique to this test. `make test` runs tests inside a private session
// bus with an unlocked gnome-keyring (packaging/with-services.sh); outside it
// the test is skipped, but never under CI, where a missing keyring fails.
func newKeyring(t *testing.T) *Keyring {
	t.Helper()
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no session bus: CI runs tests through packaging/with-services.sh, which provides one")
		}
		t.Skip("no session bus; run through packaging/with-services.sh (make test) for a real Secret Service")
	}
	b := make([]byte, 6)
	rand.Read(b)
	return New("keydesk-test-" + hex.EncodeToString(b))
}

func TestRoundTripOnSecretService(t *testing.T) {
	k := newKeyring(t)
	acct := RegistryTokenAccount("https://registry.example.org/")
	if acct != "registry-token:https://registry.example.org" {
		t.Fatalf("account = %q", acct)
	}
	if _, err := k.Get(acct); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before Put: %v, want ErrNotFound", err)
	}
	tok := "kdr_" + strings.Repeat("x", 40)
	if err := k.Put(acct, tok); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Delete(acct) })
	got, err := k.Get(acct)
	if err != nil || got != tok {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if err := k.Put(acct, tok+"2"); err != nil {
		t.Fatal(err)
	}
	if got, _ := k.Get(acct); got != tok+"2" {
		t.Fatalf("after replace Get = %q", got)
	}
	if err := k.Delete(acct); err != nil {
		t.Fatal(err)
	}
	if err := k.Delete(acct); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	if err := k.Put(acct, ""); err == nil {
		t.Fatal("Put accepted an empty secret")
	}
}

// TestStoredBySecretService proves the secret went to the Secret Service and
// not somewhere else: secret-tool, a separate client, finds it.
func TestStoredBySecretService(t *testing.T) {
	k := newKeyring(t)
	if _, err := exec.LookPath("secret-tool"); err != nil {
		t.Skip("secret-tool (libsecret-tools) not installed")
	}
	if err := k.Put("probe", "s3cret-value"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Delete("probe") })
	out, err := exec.Command("secret-tool", "lookup", "service", k.service, "username", "probe").Output()
	if err != nil {
		t.Fatalf("secret-tool lookup: %v", err)
	}
	if string(out) != "s3cret-value" {
		t.Fatalf("secret-tool found %q", out)
	}
}

// TestUnavailableHasHint runs in a child process: godbus keeps one shared
// session-bus connection per process, so the parent cannot lose its bus.
func TestUnavailableHasHint(t *testing.T) {
	if os.Getenv("KEYDESK_SECRETS_NO_BUS") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestUnavailableHasHint$", "-test.count=1")
		cmd.Env = append(os.Environ(), "KEYDESK_SECRETS_NO_BUS=1", "DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent/keydesk-bus")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	k := New("keydesk-test-unavailable")
	_, err := k.Get("x")
	var ue *UnavailableError
	if !errors.As(err, &ue) {
		t.Fatalf("Get with no bus: %v, want *UnavailableError", err)
	}
	if errors.Is(err, ErrNotFound) || ue.Hint() == "" {
		t.Fatalf("Get with no bus: %v (hint %q)", err, ue.Hint())
	}
}

func TestDefaultHonoursServiceEnv(t *testing.T) {
	t.Setenv(ServiceEnv, "")
	if Default().service != Service {
		t.Fatalf("Default service = %q", Default().service)
	}
	t.Setenv(ServiceEnv, "keydesk-other-profile")
	if Default().service != "keydesk-other-profile" {
		t.Fatalf("Default service with %s set = %q", ServiceEnv, Default().service)
	}
}

func TestDirStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	d := NewDir(dir)
	if _, err := d.Get("desk-token"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get before Put: %v", err)
	}
	if err := d.Put("desk-token", "kdr_one"); err != nil {
		t.Fatal(err)
	}
	if err := d.Put("desk-token", "kdr_two"); err != nil {
		t.Fatal(err)
	}
	if s, err := d.Get("desk-token"); err != nil || s != "kdr_two" {
		t.Fatalf("Get = %q, %v", s, err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "desk-token"))
	di, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Fatalf("modes: file %v, dir %v", fi.Mode().Perm(), di.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("the directory holds %d entries, want only the secret", len(ents))
	}
	os.Chmod(filepath.Join(dir, "desk-token"), 0o640)
	if _, err := d.Get("desk-token"); err == nil {
		t.Fatal("Get read a secret file others can read")
	}
	for _, bad := range []string{"", "../x", ".hidden", "a/b"} {
		if err := d.Put(bad, "s"); err == nil {
			t.Errorf("Put(%q) accepted", bad)
		}
	}
	if err := d.Put("x", ""); err == nil {
		t.Error("Put accepted an empty secret")
	}
	if err := d.Delete("desk-token"); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete("desk-token"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
}
