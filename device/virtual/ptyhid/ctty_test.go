//go:build linux

package ptyhid_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/device/virtual/fidotest"
)

// setsid runs name under setsid(1) (a new session with no controlling
// terminal), with stdin, and fails the test if it does not end: a client
// that took the key as its controlling terminal waits for a PIN from the
// key itself. The limit only detects that hang; it times nothing.
func setsid(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	needTool(t, "setsid")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setsid", append([]string{"-w"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("setsid %s hung: the key became its controlling terminal\n%s", strings.Join(args, " "), out)
	}
	if err != nil {
		t.Fatalf("setsid %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestSetsidClientGetsNoControllingTerminal: a session leader with no
// terminal that opens the key's path without O_NOCTTY does not get the key
// as its controlling terminal, so fido2-token started with setsid reads
// its PINs from standard input instead of hanging on the key. The holder
// process that prevents it follows the key out and back in, and is gone
// when the transport closes.
func TestSetsidClientGetsNoControllingTerminal(t *testing.T) {
	k := fidotest.Start(t, 2000099)
	if !k.Dev.Held() {
		t.Fatal("no holder process keeps the slave as its controlling terminal (is sleep(1) installed?)")
	}
	probe := `exec 3<>"$0" || exit 9; if (exec 4</dev/tty) 2>/dev/null; then echo "controlling terminal: the key"; else echo "controlling terminal: none"; fi`
	if out := setsid(t, "", "sh", "-c", probe, k.Path); !strings.Contains(out, "controlling terminal: none") {
		t.Fatalf("a setsid client opening %s: %s", k.Path, out)
	}
	needTool(t, "fido2-token")
	out := setsid(t, testPIN+"\n"+testPIN+"\n", "fido2-token", "-S", k.Path)
	if !strings.Contains(out, "Enter new PIN") {
		t.Fatalf("fido2-token -S did not prompt on stderr:\n%s", out)
	}
	if out := setsid(t, "", "fido2-token", "-I", k.Path); !strings.Contains(out, "clientPin,") {
		t.Fatalf("no PIN set by the setsid client:\n%s", out)
	}

	pid := k.Dev.HolderPID()
	k.Key.Remove()
	if k.Dev.Held() || processAlive(pid) {
		t.Fatalf("holder %d still there after the key was removed", pid)
	}
	k.Key.Insert()
	if !k.Dev.Held() || k.Dev.HolderPID() == pid {
		t.Fatal("no new holder after reinsertion")
	}
	if out := setsid(t, "", "sh", "-c", probe, k.Path); !strings.Contains(out, "controlling terminal: none") {
		t.Fatalf("after reinsertion: %s", out)
	}
	pid = k.Dev.HolderPID()
	k.Dev.Close()
	if processAlive(pid) {
		t.Fatalf("holder %d outlived the transport", pid)
	}
}

// processAlive reports whether pid names a live (not zombie) process.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}
