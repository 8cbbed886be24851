package sim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/device/mgmt"
	"github.com/keydesk/keydesk/device/virtual"
)

// TestReplace swaps a key for a fresh one over the control socket: the
// reader then holds the new serial at once, over real PC/SC, and the FIDO
// device link follows.
func TestReplace(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	old, _ := filepath.Glob(filepath.Join(stateDir, "key-*.json"))
	for _, p := range old {
		os.Remove(p)
	}
	f, err := Start(ctx, stateDir, 2, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	defer func() { cancel(); f.Stop() }()
	if err := f.Serve(ctx, stateDir); err != nil {
		t.Fatal(err)
	}
	os.Setenv("PCSCLITE_CSOCK_NAME", f.Daemon.Socket())
	wctx, done := context.WithTimeout(ctx, 20*time.Second)
	defer done()
	for i := range f.Keys {
		if err := f.Daemon.WaitCard(wctx, i, true); err != nil {
			t.Fatal(err)
		}
	}
	reply, err := Control(stateDir, "replace 31000001")
	if err != nil || reply != "ok: replace 31000001 31000003\n" {
		t.Fatalf("replace: %q, %v", reply, err)
	}
	k, err := mgmt.Read(ctx, f.Daemon.Reader(0))
	if err != nil || k.Serial != 31000003 {
		t.Fatalf("reader 0 after replace: %+v, %v", k, err)
	}
	if _, err := os.Lstat(filepath.Join(stateDir, "hid", "key-31000001")); err == nil {
		t.Error("the old key's FIDO device is still there")
	}
	if _, err := os.Lstat(filepath.Join(stateDir, "hid", "key-31000003")); err != nil {
		t.Errorf("the new key's FIDO device: %v", err)
	}
	list, _ := Control(stateDir, "list")
	if !strings.Contains(list, "31000003\tinserted") || strings.Contains(list, "31000001") {
		t.Fatalf("list after replace: %q", list)
	}
	if _, err := Control(stateDir, "replace 31000001"); err == nil || !strings.Contains(err.Error(), "no virtual key with serial 31000001") {
		t.Fatalf("replacing a key that left: %v", err)
	}
}
