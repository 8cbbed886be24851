package registry_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDeviceOrGUIImports keeps the registry free of the device stacks and
// the GUI toolkit: it must build without cgo and run on a server.
func TestNoDeviceOrGUIImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./...", "../cmd/keydesk-registry").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"fyne.io/", "github.com/go-piv/", "github.com/keys-pub/go-libfido2", "github.com/keydesk/keydesk/device"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("registry depends on %s", dep)
			}
		}
	}
}
