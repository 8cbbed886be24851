// Package packaging holds keydesk's install scripts and Linux packages; its
// tests check the assets the packages ship and, when asked, build the .debs
// and install them into a clean Debian root.
package packaging

import (
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestIconSet checks every PNG the packages install: it decodes, it is square
// at the size its hicolor directory names, and none is missing.
func TestIconSet(t *testing.T) {
	for _, n := range []int{16, 22, 24, 32, 48, 64, 128, 256, 512} {
		p := filepath.Join("..", "assets", "icons", "hicolor", fmt.Sprintf("%dx%d", n, n), "apps", "io.keydesk.Keydesk.png")
		f, err := os.Open(p)
		if err != nil {
			t.Error(err)
			continue
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if cfg.Width != n || cfg.Height != n {
			t.Errorf("%s: %dx%d, want %dx%d", p, cfg.Width, cfg.Height, n, n)
		}
	}
}

// binDst is an nfpm contents entry's destination in /usr/bin.
var binDst = regexp.MustCompile(`(?m)^\s+dst: /usr/bin/([^/\s]+)\s*$`)

// TestEveryProgramHasAManPage: every program a .deb installs in /usr/bin
// has a page in section 1 among the ones build-packages.sh puts in that
// package (Debian Policy 12.1; lintian's no-manual-page is a warning, which
// make package-check fails on): keydesk's generated pages in
// packaging/man/keydesk (app/cli/clidoc), another package's page
// packaging/man/PROGRAM.1.
func TestEveryProgramHasAManPage(t *testing.T) {
	configs, err := filepath.Glob(filepath.Join("nfpm", "*.yaml"))
	if err != nil || len(configs) == 0 {
		t.Fatalf("no nfpm configurations: %v", err)
	}
	programs := 0
	for _, c := range configs {
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		pkg := strings.TrimSuffix(filepath.Base(c), ".yaml")
		for _, m := range binDst.FindAllStringSubmatch(string(b), -1) {
			programs++
			page := filepath.Join("man", m[1]+".1")
			if pkg == "keydesk" {
				page = filepath.Join("man", "keydesk", m[1]+".1")
			}
			if _, err := os.Stat(page); err != nil {
				t.Errorf("%s installs /usr/bin/%s without a man page: %v", pkg, m[1], err)
			}
		}
	}
	// keydesk, keydesk-cli, keydesk-desk and keydesk-registry.
	if programs < 4 {
		t.Errorf("found %d programs in /usr/bin in %v, want at least 4", programs, configs)
	}
}

// TestPackageCheck runs `make package-check`: build both .debs and the fyne
// tarball, lint them, and install them into a clean Debian 12 root made with
// debootstrap (packaging/check-debs.sh says what it checks). It needs root,
// network access to deb.debian.org and a few minutes on the first run, so it
// runs only with KEYDESK_PACKAGE_TESTS=1.
func TestPackageCheck(t *testing.T) {
	if os.Getenv("KEYDESK_PACKAGE_TESTS") != "1" {
		t.Skip("set KEYDESK_PACKAGE_TESTS=1 to build the .debs and install them with debootstrap (root, network)")
	}
	cmd := exec.Command("make", "-C", "..", "package-check")
	out, err := cmd.CombinedOutput()
	t.Logf("make package-check:\n%s", out)
	if err != nil {
		t.Fatalf("make package-check: %v", err)
	}
}
