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
