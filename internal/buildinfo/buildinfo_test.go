package buildinfo

import (
	gobuildinfo "debug/buildinfo"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMakeBuildStampsVersion builds every binary the way `make build` does,
// with a chosen version and commit, and checks that each one's --version
// prints them: the Makefile's -X flags must name this package's variables.
func TestMakeBuildStampsVersion(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed:", err)
	}
	bin := t.TempDir()
	out, err := exec.Command("make", "-C", filepath.Join("..", ".."), "--no-print-directory", "build",
		"BIN="+bin, "VERSION=9.8.7-test", "COMMIT=abcdef0").CombinedOutput()
	if err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	for _, prog := range []string{"keydesk", "keydesk-registry", "keydesk-sim"} {
		got, err := exec.Command(filepath.Join(bin, prog), "--version").Output()
		if err != nil {
			t.Errorf("%s --version: %v", prog, err)
			continue
		}
		if want := prog + " 9.8.7-test (commit abcdef0)"; strings.TrimSpace(string(got)) != want {
			t.Errorf("%s --version = %q, want %q", prog, got, want)
		}
	}
	// The desktop app is built without Fyne's emoji font (docs/packaging.md).
	info, err := gobuildinfo.ReadFile(filepath.Join(bin, "keydesk"))
	if err != nil {
		t.Fatal(err)
	}
	tags := ""
	for _, s := range info.Settings {
		if s.Key == "-tags" {
			tags = s.Value
		}
	}
	if !slices.Contains(strings.Split(tags, ","), "no_emoji") {
		t.Errorf("make build: keydesk built with tags %q, want no_emoji among them", tags)
	}
}

func TestStringWithoutStamp(t *testing.T) {
	v, c := Version, Commit
	t.Cleanup(func() { Version, Commit = v, c })
	Version, Commit = "1.2.3", "0123456"
	if got, want := String("keydesk"), "keydesk 1.2.3 (commit 0123456)"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	// A test binary has no VCS stamp and its main module reports (devel).
	Version, Commit = "", ""
	if got := String("keydesk"); !strings.HasPrefix(got, "keydesk dev (commit ") {
		t.Errorf("unstamped String = %q, want keydesk dev (commit …)", got)
	}
}
