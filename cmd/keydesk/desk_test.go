package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBareWithoutDesk: keydesk with no arguments and no keydesk-desk
// beside it says so and where it looked, and exits 1; with a command it
// works on its own.
func TestBareWithoutDesk(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "keydesk")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building keydesk: %v\n%s", err, out)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("keydesk with no arguments: %v, want exit 1; stderr: %s", err, stderr.String())
	}
	want := "keydesk: the desktop app " + filepath.Join(dir, "keydesk-desk") + " is not installed beside keydesk"
	if !strings.HasPrefix(stderr.String(), want) {
		t.Errorf("stderr %q, want it to start %q", stderr.String(), want)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "keydesk ") {
		t.Errorf("keydesk version: %q, %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keydesk-desk")); err == nil {
		t.Fatal("keydesk-desk exists; the test built only keydesk")
	}
}
