package device_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the GUI toolkit and the key registry out of every device
// package (STYLE.md "Guard the shape").
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", "-f", "{{.ImportPath}}", "github.com/keydesk/keydesk/device/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	banned := []string{"fyne.io/fyne/v2", "github.com/keydesk/keydesk/registry"}
	for _, p := range strings.Fields(string(out)) {
		for _, b := range banned {
			if p == b || strings.HasPrefix(p, b+"/") {
				t.Errorf("device imports %s", p)
			}
		}
	}
}
