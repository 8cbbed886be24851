package client_test

import (
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

// tinyDisk mounts a 2 MiB tmpfs (a real file system that fills up) on a
// temporary directory; it needs root, as make test runs.
func tinyDisk(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a size-limited tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "keydesk-outbox-test", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("unmounting %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// TestOutboxDiskFull queues enrolments into an outbox on a 2 MiB file
// system until it is full: the failing queue call says so (ErrOutboxFull)
// and every enrolment queued before is still there. A flush on the full
// disk may fail to record results (ErrOutboxFull again, the entry stays
// pending); once there is room, the flush completes and the registry holds
// each enrolment exactly once.
func TestOutboxDiskFull(t *testing.T) {
	dir := tinyDisk(t)
	// Room to give back once the disk has filled.
	spare := filepath.Join(dir, "spare")
	if err := os.WriteFile(spare, make([]byte, 1536<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	admin, err := regtest.Token(bin, state, "admin", "desk", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.Start(bin, state)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(p.URL)
	p.Kill() // the registry is down while the desk queues
	c, err := client.New(p.URL, admin, client.Options{OutboxPath: filepath.Join(dir, "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	queued := 0
	var qerr error
	for queued < 100000 {
		if _, qerr = c.QueueEnrolment(ctx, enrolment(queued)); qerr != nil {
			break
		}
		queued++
	}
	if !errors.Is(qerr, client.ErrOutboxFull) {
		t.Fatalf("after %d enrolments: %v, want ErrOutboxFull", queued, qerr)
	}
	t.Logf("%d enrolments queued, then: %v", queued, qerr)
	if queued == 0 {
		t.Fatal("nothing fitted")
	}
	pend, err := c.Entries(ctx, client.Pending)
	if err != nil || len(pend) != queued {
		t.Fatalf("%d pending on the full disk (%v), want %d", len(pend), err, queued)
	}

	p, err = regtest.Start(bin, state, "--listen", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if err := c.Flush(ctx, nil); err != nil && !errors.Is(err, client.ErrOutboxFull) {
		t.Fatalf("flush on a full disk: %v", err)
	} else {
		t.Logf("flush on the full disk: %v", err)
	}
	if err := os.Remove(spare); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx, nil); err != nil {
		t.Fatalf("flush with room: %v", err)
	}
	if done, err := c.Entries(ctx, client.Done); err != nil || len(done) != queued {
		t.Fatalf("%d done (%v), want %d", len(done), err, queued)
	}
	seen := map[string]int{}
	for after := ""; ; {
		users, next, err := c.Users(ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			seen[u.ExternalID]++
		}
		if next == "" || len(users) == 0 {
			break
		}
		after = next
	}
	if len(seen) != queued {
		t.Fatalf("%d users in the registry, want %d", len(seen), queued)
	}
	for id, k := range seen {
		if k != 1 || !strings.HasPrefix(id, "user-") {
			t.Fatalf("user %s seen %d times", id, k)
		}
	}
	p.Stop()
	if out, err := regtest.AuditVerify(bin, state); err != nil {
		t.Fatalf("audit verify: %v %s", err, out)
	}
}
