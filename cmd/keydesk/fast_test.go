package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/cli"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/sim"
)

// TestParseStatus: the start-up path takes exactly the command lines it
// can answer as keydesk-cli would, and leaves every other one (help,
// other flags, a refused value, another command) to keydesk-cli.
func TestParseStatus(t *testing.T) {
	env := func(string) string { return "" }
	for _, tc := range []struct {
		args   []string
		ok     bool
		app    string
		serial uint32
		json   bool
	}{
		{[]string{"version"}, true, "version", 0, false},
		{[]string{"--version"}, true, "version", 0, false},
		{[]string{"piv", "status"}, true, "piv", 0, false},
		{[]string{"fido", "status", "--serial", "31000001", "--json"}, true, "fido", 31000001, true},
		{[]string{"--serial=7", "piv", "status"}, true, "piv", 7, false},
		{[]string{"piv", "status", "--serial", "1", "--serial", "2"}, true, "piv", 2, false},
		{[]string{"piv", "status", "--days", "3"}, false, "", 0, false},
		{[]string{"piv", "status", "--help"}, false, "", 0, false},
		{[]string{"piv", "status", "-h"}, false, "", 0, false},
		{[]string{"piv", "status", "extra"}, false, "", 0, false},
		{[]string{"piv", "status", "--serial"}, false, "", 0, false},
		{[]string{"piv", "status", "--serial", "010"}, false, "", 0, false},
		{[]string{"piv", "status", "--serial", "4294967296"}, false, "", 0, false},
		{[]string{"piv", "status", "--json=true"}, false, "", 0, false},
		{[]string{"piv", "status", "--", "x"}, false, "", 0, false},
		{[]string{"piv", "info"}, false, "", 0, false},
		{[]string{"info"}, false, "", 0, false},
		{[]string{"version", "--json"}, false, "", 0, false},
		{[]string{"help", "piv"}, false, "", 0, false},
	} {
		c, ok := parseStatus(tc.args, env)
		if ok != tc.ok || ok && (c.app != tc.app || c.serial != tc.serial || c.json != tc.json) {
			t.Errorf("parseStatus(%q) = %+v, %v; want app %q serial %d json %v, %v", tc.args, c, ok, tc.app, tc.serial, tc.json, tc.ok)
		}
	}
	if c, _ := parseStatus([]string{"piv", "status"}, func(k string) string {
		if k == "KEYDESK_PRACTICE" {
			return "1"
		}
		return ""
	}); !c.practice {
		t.Error("KEYDESK_PRACTICE=1 is not practice mode")
	}
}

// TestStatusSameAsCLI: on a practice key behind a real pcscd and a FIDO
// HID device, what the start-up path prints for each status command line
// is byte for byte what keydesk-cli prints for it.
func TestStatusSameAsCLI(t *testing.T) {
	if err := virtual.PracticeSupported(); err != nil {
		t.Skip(err)
	}
	dir := filepath.Join(t.TempDir(), "sim")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := sim.Start(ctx, dir, 1, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); f.Stop() }()
	t.Setenv("PCSCLITE_CSOCK_NAME", f.Daemon.Socket())
	wctx, done := context.WithTimeout(ctx, 20*time.Second)
	defer done()
	if err := f.Daemon.WaitCard(wctx, 0, true); err != nil {
		t.Fatal(err)
	}
	serial := strconv.FormatUint(uint64(f.Keys[0].Serial()), 10)
	lines := [][]string{
		{"version"},
		{"piv", "status"},
		{"piv", "status", "--json", "--serial", serial},
		{"fido", "status"},
		{"fido", "status", "--serial=" + serial, "--json"},
	}
	same(ctx, t, dir, lines)
	// With a FIDO2 PIN set, the status carries its retries (getPINRetries).
	var out bytes.Buffer
	if code := cli.Run(ctx, []string{"fido", "set-pin", "--practice", "--sim-dir", dir}, strings.NewReader("fast-path-pin-4417\n"), &out, &out); code != 0 {
		t.Fatalf("keydesk fido set-pin: exit %d\n%s", code, out.String())
	}
	same(ctx, t, dir, lines[3:])
	c, _ := parseStatus([]string{"fido", "status", "--practice", "--sim-dir", dir}, func(string) string { return "" })
	out.Reset()
	if err := c.run(ctx, &out); err != nil || !strings.Contains(out.String(), "PIN:              set, 8 tries left") {
		t.Errorf("fido status with a PIN set: %v\n%s", err, out.String())
	}
}

// same runs each command line through the start-up path and through
// keydesk-cli (in practice mode, keys in dir) and compares their output.
func same(ctx context.Context, t *testing.T, dir string, lines [][]string) {
	t.Helper()
	for _, args := range lines {
		if args[0] != "version" {
			args = append(args, "--practice", "--sim-dir", dir)
		}
		c, ok := parseStatus(args, func(string) string { return "" })
		if !ok {
			t.Fatalf("%q is not answered by the start-up path", args)
		}
		var fast, full, stderr bytes.Buffer
		if err := c.run(ctx, &fast); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if code := cli.Run(ctx, args, nil, &full, &stderr); code != 0 {
			t.Fatalf("keydesk-cli %q: exit %d\n%s", args, code, stderr.String())
		}
		if !bytes.Equal(fast.Bytes(), full.Bytes()) {
			t.Errorf("%q: the start-up path prints\n%s\nkeydesk-cli prints\n%s", args, fast.Bytes(), full.Bytes())
		}
	}
}
