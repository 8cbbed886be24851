//go:build unix && !darwin

package secrets

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoBusNoAutolaunch runs in a child process with no session bus and a
// dbus-launch on PATH that leaves a mark when run: the keyring reports
// itself unavailable in plain words and never runs dbus-launch (whose bus
// daemon would outlive keydesk).
func TestNoBusNoAutolaunch(t *testing.T) {
	if os.Getenv("KEYDESK_SECRETS_BARE") != "1" {
		for _, f := range []string{"bus", "dbus-session"} {
			if _, err := os.Stat(fmt.Sprintf("/run/user/%d/%s", os.Getuid(), f)); err == nil {
				t.Skipf("this desktop has a session bus at /run/user/%d/%s", os.Getuid(), f)
			}
		}
		bin := t.TempDir()
		mark := filepath.Join(t.TempDir(), "dbus-launch-ran")
		script := "#!/bin/sh\ntouch " + mark + "\nexit 1\n"
		if err := os.WriteFile(filepath.Join(bin, "dbus-launch"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestNoBusNoAutolaunch$", "-test.count=1", "-test.v")
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "DBUS_SESSION_BUS_ADDRESS=") && !strings.HasPrefix(e, "PATH=") {
				cmd.Env = append(cmd.Env, e)
			}
		}
		cmd.Env = append(cmd.Env, "KEYDESK_SECRETS_BARE=1", "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		if _, err := os.Stat(mark); err == nil {
			t.Fatal("the keyring ran dbus-launch")
		}
		return
	}
	k := New("keydesk-test-bare")
	for name, err := range map[string]error{
		"Get":    func() error { _, err := k.Get(RegistryTokenAccount("https://registry.example.org")); return err }(),
		"Put":    k.Put(HelpdeskIdentityAccount(), "AGE-SECRET-KEY-1"),
		"Delete": k.Delete("x"),
	} {
		var ue *UnavailableError
		if !errors.As(err, &ue) || !ue.NoService || !errors.Is(err, ErrNoSessionBus) {
			t.Fatalf("%s with no bus: %v, want *UnavailableError for no service", name, err)
		}
		if msg := err.Error() + ue.Hint(); strings.Contains(strings.ToLower(msg), "dbus") || strings.Contains(msg, "org.freedesktop") {
			t.Errorf("%s: the message shows library text: %s", name, msg)
		}
	}
	_, err := k.Get(RegistryTokenAccount("https://registry.example.org/"))
	if want := "reading the registry token for https://registry.example.org: this desktop has no keyring service (Secret Service) running"; err.Error() != want {
		t.Errorf("Get: %q, want %q", err, want)
	}
	PreventBusAutolaunch()
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != noBus {
		t.Errorf("after PreventBusAutolaunch the bus address is %q", a)
	}
}
