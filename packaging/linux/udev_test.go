// Package linux holds the files keydesk installs on Linux desks (udev rules,
// desktop entry); its tests check them against the devices they are for.
package linux

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// usbInterfaces is every YubiKey USB product id with the interfaces it
// exposes, from yubikey-manager's PID table (ykman/base.py).
var usbInterfaces = map[string]string{
	"0010": "OTP", "0110": "OTP", "0111": "OTP+CCID", "0112": "CCID",
	"0113": "FIDO", "0114": "OTP+FIDO", "0115": "FIDO+CCID", "0116": "OTP+FIDO+CCID",
	"0120": "FIDO",
	"0401": "OTP", "0402": "FIDO", "0403": "OTP+FIDO", "0404": "CCID", "0405": "OTP+CCID",
	"0406": "FIDO+CCID", "0407": "OTP+FIDO+CCID", "0410": "OTP+FIDO",
}

// device is what udev knows about a hidraw node when it evaluates rules.
type device struct {
	action, subsystem, vendor, product string
}

var keyRe = regexp.MustCompile(`^(ACTION|SUBSYSTEM|ATTRS\{idVendor\}|ATTRS\{idProduct\}|TAG|GOTO|LABEL)(==|!=|\+=|=)"([^"]*)"$`)

// evaluate runs the rules file for d the way udev does for the keys used in
// it, returning the tags added. Any key it does not understand fails the test,
// so the file cannot grow beyond what is checked.
func evaluate(t *testing.T, path string, d device) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tags []string
	skipTo := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ok := true
		var add []string
		var gotoLabel, label string
		for _, field := range strings.Split(line, ", ") {
			m := keyRe.FindStringSubmatch(strings.TrimSpace(field))
			if m == nil {
				t.Fatalf("%s:%d: unrecognised rule key %q", path, n, field)
			}
			key, op, val := m[1], m[2], m[3]
			var have string
			switch key {
			case "ACTION":
				have = d.action
			case "SUBSYSTEM":
				have = d.subsystem
			case "ATTRS{idVendor}":
				have = d.vendor
			case "ATTRS{idProduct}":
				have = d.product
			case "TAG":
				add = append(add, val)
				continue
			case "GOTO":
				gotoLabel = val
				continue
			case "LABEL":
				label = val
				continue
			}
			match := false
			for _, alt := range strings.Split(val, "|") {
				match = match || alt == have
			}
			if (op == "==") != match {
				ok = false
			}
		}
		if label != "" {
			if skipTo == label {
				skipTo = ""
			}
			continue
		}
		if skipTo != "" || !ok {
			continue
		}
		tags = append(tags, add...)
		if gotoLabel != "" {
			skipTo = gotoLabel
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return tags
}

func has(tags []string, tag string) bool {
	for _, x := range tags {
		if x == tag {
			return true
		}
	}
	return false
}

func TestUdevRulesMatchYubiKeyFIDOInterfaces(t *testing.T) {
	const rules = "70-keydesk.rules"
	for pid, ifaces := range usbInterfaces {
		wantAccess := strings.Contains(ifaces, "FIDO")
		got := has(evaluate(t, rules, device{"add", "hidraw", "1050", pid}), "uaccess")
		if got != wantAccess {
			t.Errorf("YubiKey 1050:%s (%s): uaccess = %v, want %v", pid, ifaces, got, wantAccess)
		}
	}
	for _, d := range []device{
		{"add", "hidraw", "046d", "0407"}, // another vendor, same product id
		{"add", "usb", "1050", "0407"},    // the USB device node, not hidraw
		{"remove", "hidraw", "1050", "0407"},
	} {
		if tags := evaluate(t, rules, d); len(tags) != 0 {
			t.Errorf("%+v: tagged %v, want nothing", d, tags)
		}
	}
}

// TestUdevRulesAgreeWithYkman cross-checks the product-id table above with the
// installed yubikey-manager, when it is there, so the two cannot drift apart.
func TestUdevRulesAgreeWithYkman(t *testing.T) {
	src, err := os.ReadFile("/usr/lib/python3/dist-packages/ykman/base.py")
	if err != nil {
		t.Skip("yubikey-manager is not installed here:", err)
	}
	re := regexp.MustCompile(`(?m)^\s+([A-Z0-9]+)_([A-Z_]+) = 0x([0-9a-fA-F]{4})$`)
	found := 0
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		pid := strings.ToLower(m[3])
		want := strings.ReplaceAll(m[2], "_", "+")
		if got, ok := usbInterfaces[pid]; !ok || got != want {
			t.Errorf("ykman lists %s_%s = 0x%s; table has %q", m[1], m[2], pid, got)
		}
		found++
	}
	if found != len(usbInterfaces) {
		t.Errorf("ykman lists %d product ids, table has %d", found, len(usbInterfaces))
	}
}

// rulesDir is where udev (systemd 252 and later, Debian 12's) reads packaged
// rules; on a merged-/usr system /lib/udev/rules.d is the same directory.
const rulesDir = "/usr/lib/udev/rules.d/"

// TestUdevRulesInstalledPath checks that the .deb's nfpm configuration
// installs the rules under their own name in udev's directory: a rules file
// placed anywhere else, or renamed past 73-seat-late.rules, silently grants
// nothing.
func TestUdevRulesInstalledPath(t *testing.T) {
	src, err := os.ReadFile("../nfpm/keydesk.yaml")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^  - src: packaging/linux/70-keydesk\.rules\n    dst: (\S+)$`)
	m := re.FindAllStringSubmatch(string(src), -1)
	if len(m) != 1 {
		t.Fatalf("packaging/nfpm/keydesk.yaml installs 70-keydesk.rules %d times, want once", len(m))
	}
	if want := rulesDir + "70-keydesk.rules"; m[0][1] != want {
		t.Errorf("70-keydesk.rules installed at %s, want %s", m[0][1], want)
	}
}

// TestUdevRulesInDeb checks a built keydesk .deb (KEYDESK_DEB, else the one
// `make package` left in dist/): the rules are at udev's path, byte for byte
// the file the other tests evaluate.
func TestUdevRulesInDeb(t *testing.T) {
	deb := os.Getenv("KEYDESK_DEB")
	if deb == "" {
		m, _ := filepath.Glob("../../dist/keydesk_*_amd64.deb")
		if len(m) != 1 {
			t.Skip("no .deb to check: run make package, or set KEYDESK_DEB")
		}
		deb = m[0]
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed:", err)
	}
	got, err := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -xOf - ".$2"`, "sh", deb, rulesDir+"70-keydesk.rules").Output()
	if err != nil {
		t.Fatalf("%s: reading .%s70-keydesk.rules: %v", deb, rulesDir, err)
	}
	want, err := os.ReadFile("70-keydesk.rules")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %s70-keydesk.rules differs from packaging/linux/70-keydesk.rules", deb, rulesDir)
	}
}
