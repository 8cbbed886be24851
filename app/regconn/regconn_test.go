package regconn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

var bin string

func TestMain(m *testing.M) { regtest.RunTests(m, &bin) }

// testKeyring is the real Secret Service (packaging/with-services.sh starts
// a session bus with an unlocked gnome-keyring) under a service name of
// this test's own, so no person's entries are touched.
func testKeyring(t *testing.T) *secrets.Keyring {
	t.Helper()
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no session bus: CI runs tests through packaging/with-services.sh")
		}
		t.Skip("no session bus; run through packaging/with-services.sh for a real Secret Service")
	}
	b := make([]byte, 6)
	rand.Read(b)
	return secrets.New("keydesk-test-" + hex.EncodeToString(b))
}

// TestEmbeddedRegistry runs with or without a session bus: the embedded
// registry's token lives in its state directory, never in the keyring.
func TestEmbeddedRegistry(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	// A keyring that cannot be used: the embedded registry must not need it.
	t.Setenv(secrets.ServiceEnv, "keydesk-test-never-used")
	opt := Options{Settings: settings.Default(), DataDir: data}
	c, err := Open(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Embedded || !strings.HasPrefix(c.URL, "http://127.0.0.1:") {
		t.Fatalf("conn = %+v", c)
	}
	tokFile := filepath.Join(c.StateDir, EmbeddedTokenFile)
	fi, err := os.Stat(tokFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, %v", fi, err)
	}
	if di, err := os.Stat(c.StateDir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v, %v", di, err)
	}
	b, _ := os.ReadFile(tokFile)
	tok := strings.TrimSpace(string(b))
	if !strings.HasPrefix(tok, "kdr_") {
		t.Fatalf("token file holds %q", tok)
	}
	// The token is an admin's: it creates users and verifies the audit.
	if _, err := c.Client.Enrol(ctx, client.Enrolment{User: client.EnrolUser{ExternalID: "u1", DisplayName: "Ada", Email: "ada@example.org"},
		Key: client.EnrolKey{Serial: "123", Role: "primary"}}); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Client.AuditVerify(ctx)
	if err != nil || !rep.OK {
		t.Fatalf("audit: %+v, %v", rep, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// The token is in its file and nowhere else under the data directory.
	filepath.Walk(data, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && p != tokFile {
			b, _ := os.ReadFile(p)
			if strings.Contains(string(b), tok) {
				t.Errorf("%s holds the token", p)
			}
		}
		return nil
	})
	// Stopped: the listener is gone.
	if _, _, err := c.Client.Users(ctx, "", 1); err == nil {
		t.Fatal("embedded registry still answers after Close")
	}

	// The second start reuses the token and sees the first start's data.
	c, err = Open(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(tokFile); strings.TrimSpace(string(again)) != tok {
		t.Fatal("second start replaced a working token")
	}
	us, _, err := c.Client.Users(ctx, "", 10)
	if err != nil || len(us) != 1 || us[0].ExternalID != "u1" {
		t.Fatalf("users after restart: %+v, %v", us, err)
	}
	c.Close()

	// A token file others can read is refused, not used.
	os.Chmod(tokFile, 0o644)
	if _, err := Open(ctx, opt); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Open with a token file of mode 0644: %v", err)
	}
	os.Chmod(tokFile, 0o600)

	// A lost token file: a new token is made, the old one revoked.
	if err := os.Remove(tokFile); err != nil {
		t.Fatal(err)
	}
	c, err = Open(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err = os.ReadFile(tokFile)
	fresh := strings.TrimSpace(string(b))
	if err != nil || fresh == tok || !strings.HasPrefix(fresh, "kdr_") {
		t.Fatalf("after losing the token file: %v (same token: %v)", err, fresh == tok)
	}
	old, _ := client.New(c.URL, tok, client.Options{OutboxPath: filepath.Join(t.TempDir(), "o.db")})
	defer old.Close()
	var ae *client.APIError
	if _, _, err := old.Users(ctx, "", 1); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("old token after replacement: %v", err)
	}
	if rep, err := c.Client.AuditVerify(ctx); err != nil || !rep.OK {
		t.Fatalf("audit: %+v, %v", rep, err)
	}
}

func TestRemoteRegistryTokenFromKeyring(t *testing.T) {
	ctx := context.Background()
	kr := testKeyring(t)
	state := t.TempDir()
	tok, err := regtest.Token(bin, state, "admin", "desk", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.Start(bin, state)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	s := settings.Default()
	s.RegistryURL = p.URL + "/"
	opt := Options{Settings: s, Keyring: kr, DataDir: t.TempDir()}

	_, err = Open(ctx, opt)
	var nt *NoTokenError
	if !errors.As(err, &nt) || !errors.Is(err, secrets.ErrNotFound) || !strings.Contains(nt.Hint(), "keydesk login --registry "+p.URL) {
		t.Fatalf("Open with no token: %v", err)
	}
	if err := Login(ctx, kr, p.URL, "", "kdr_"+strings.Repeat("A", 43)); !errors.Is(err, ErrTokenRefused) {
		t.Fatalf("Login with a wrong token: %v", err)
	}
	if err := Login(ctx, kr, p.URL, "", "hunter2"); err == nil {
		t.Fatal("Login accepted a string that is no token")
	}
	if err := Login(ctx, kr, s.RegistryURL, "", tok+"\n"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kr.Delete(secrets.RegistryTokenAccount(p.URL)) })
	c, err := Open(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Embedded || c.URL != p.URL {
		t.Fatalf("conn = %+v", c)
	}
	if _, _, err := c.Client.Users(ctx, "", 1); err != nil {
		t.Fatal(err)
	}
	// A registry that is down: Login says so and stores nothing new.
	u, _ := url.Parse(p.URL)
	p.Stop()
	if err := Login(ctx, kr, "http://"+u.Host, "", tok); !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("Login to a stopped registry: %v", err)
	}
}
