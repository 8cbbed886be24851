package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// bareEnv is the environment of a desktop with no session bus and no
// keyring: the test's own environment without D-Bus or keyring variables,
// with HOME and the XDG directories in dir, and mark set so that every
// process started from it can be found afterwards.
func bareEnv(dir, mark string) []string {
	var env []string
	for _, e := range os.Environ() {
		name, _, _ := strings.Cut(e, "=")
		switch name {
		case "DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL", "SSH_AUTH_SOCK", "HOME", "KEYDESK_KEYRING_SERVICE", "KEYDESK_PRACTICE", "KEYDESK_SIM_DIR":
			continue
		}
		if strings.HasPrefix(name, "XDG_") {
			continue
		}
		env = append(env, e)
	}
	return append(env,
		"HOME="+dir,
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_STATE_HOME="+filepath.Join(dir, "state"),
		"KEYDESK_BARE_MARK="+mark,
	)
}

// marked lists the running processes whose environment holds mark, as
// "pid command" lines.
func marked(mark string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, []byte("KEYDESK_BARE_MARK="+mark+"\x00")) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil {
			// A zombie waiting for the test to reap it is not running.
			if f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:])); len(f) > 0 && f[0] == "Z" {
				continue
			}
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " ")))
	}
	return out
}

// TestBareDesktop is `make run` on a desktop with no session bus and no
// keyring (a fresh VM, a minimal window manager): the real binary under
// Xvfb, in practice mode. Its embedded registry connects (its token is
// kept in its state directory, mode 0600); a key is enrolled against the
// same embedded registry and practice keys from the CLI while the window
// is open; and once the window is closed no process it started — a
// dbus-daemon, a keyring daemon, pcscd — is still running.
func TestBareDesktop(t *testing.T) {
	for _, f := range []string{"bus", "dbus-session"} {
		if _, err := os.Stat(fmt.Sprintf("/run/user/%d/%s", os.Getuid(), f)); err == nil {
			t.Skipf("this machine has a session bus at /run/user/%d/%s: it is no bare desktop", os.Getuid(), f)
		}
	}
	display := xvfb(t)
	dir := t.TempDir()
	bin := build(t, dir)
	b := make([]byte, 8)
	rand.Read(b)
	mark := hex.EncodeToString(b)
	env := bareEnv(dir, mark)

	gui := &app{mark: filepath.Join(dir, "first-frame"), stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	gui.cmd = exec.Command(bin)
	gui.cmd.Dir = dir
	gui.cmd.Env = append(env, "DISPLAY="+display, "KEYDESK_PRACTICE=auto", "KEYDESK_STARTUP_MARK="+gui.mark)
	gui.cmd.Stderr = gui.stderr
	gui.started = time.Now()
	if err := gui.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { gui.exited <- gui.cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			gui.stop()
		}
	}()
	if _, err := gui.firstFrame(60 * time.Second); err != nil {
		t.Fatal(err)
	}

	// The embedded registry opens with its token beside its database, and
	// the practice desk's helpdesk identity is made: what enrolment needs.
	data := filepath.Join(dir, "data", "keydesk")
	token := filepath.Join(data, "registry", "desk-token")
	ident := filepath.Join(data, "practice-helpdesk-identity")
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, e1 := os.Stat(token)
		_, e2 := os.Stat(ident)
		if e1 == nil && e2 == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no embedded registry token or practice identity after 60 s: %v, %v\n%s", e1, e2, gui.stderr.String())
		}
		select {
		case err := <-gui.exited:
			stopped = true
			t.Fatalf("keydesk exited: %v\n%s", err, gui.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, p := range []string{token, ident} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", p, fi, err)
		}
	}

	// Enrol the first practice key for a new user, from the CLI, against
	// the embedded registry and the practice keys of the open window. The
	// settings name no helpdesk recipient: the CLI seals the escrow to the
	// practice identity the window made (app/helpdeskid), as the window
	// would.
	cli := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(env, "KEYDESK_PRACTICE=1")
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	out, err := cli("ada-fido-pin-7731\nAd4pivQ1\n", "enrol", "--user", "u1001", "--name", "Ada Lovelace", "--email", "ada@example.org", "--no-backup", "--yes", "--wait", "30s")
	if err != nil || !strings.Contains(out, "enrolled for Ada Lovelace (u1001) as primary") {
		t.Fatalf("keydesk enrol on a bare desktop: %v\n%s", err, out)
	}
	if strings.Contains(strings.ToLower(out), "dbus") || strings.Contains(out, "org.freedesktop") || strings.Contains(out, "keyring") {
		t.Errorf("the enrolment mentions D-Bus or a keyring:\n%s", out)
	}

	if err := gui.stop(); err != nil {
		t.Fatalf("%v\n%s", err, gui.stderr.String())
	}
	stopped = true
	if s := gui.stderr.String(); s != "" {
		t.Errorf("keydesk wrote to stderr:\n%s", s)
	}
	// Whatever the app or the CLI started has ended with them.
	if left := marked(mark); len(left) > 0 {
		t.Errorf("still running after keydesk exited:\n%s", strings.Join(left, "\n"))
	}
	if _, err := os.Stat(filepath.Join(dir, ".dbus")); err == nil {
		t.Error("something ran dbus-launch (it left ~/.dbus)")
	}
}
