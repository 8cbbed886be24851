package client_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/regtest"
)

// mountTmpfs mounts a tmpfs of the given size on a temporary directory;
// it skips the test when not root or when the mount fails (a container
// without CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a size-limited tmpfs needs root (make test runs as root in CI)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "keydesk-registry-test", dir).CombinedOutput(); err != nil {
		t.Skipf("mounting a tmpfs failed (no CAP_SYS_ADMIN here?): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("unmounting %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file at path until the file system answers ENOSPC and
// returns how many bytes fitted.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, err := f.Write(buf)
		n += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatalf("filling %s: %v", path, err)
		}
	}
}

// rawCreateUser posts a user with a fresh idempotency key and returns the
// answer's status, code, Retry-After and X-Request-Id.
func rawCreateUser(t *testing.T, base, tok, ext string) (status int, code, retry, reqID string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/users", strings.NewReader(fmt.Sprintf(`{"external_id":%q,"display_name":"Disk Full"}`, ext)))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Idempotency-Key", "raw-"+ext)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var e struct{ Code string }
	json.Unmarshal(b, &e)
	return res.StatusCode, e.Code, res.Header.Get("Retry-After"), res.Header.Get("X-Request-Id")
}

// TestRegistryDiskFull runs the real keydesk-registry with its state
// directory on a 16 MiB tmpfs and fills the file system. Writes are
// answered 503 storage_full with a Retry-After, the registry logs each
// one, the desk's client names the cause and keeps a queued write queued;
// GET /v1/export, GET /v1/audit/verify and keydesk-registry audit verify
// still work; and once the filler is deleted the next write succeeds with
// no restart.
func TestRegistryDiskFull(t *testing.T) {
	disk := mountTmpfs(t, "16m")
	state := filepath.Join(disk, "state")
	admin, err := regtest.Token(bin, state, "admin", "desk", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.Start(bin, state)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(p.URL)
	c, err := client.New(p.URL, admin, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var first client.Enrolled
	for i := 0; i < 5; i++ {
		if first, err = c.Enrol(ctx, enrolment(i)); err != nil {
			t.Fatal(err)
		}
	}
	// Audit entries left pending, as a crash leaves them: a verification
	// is chained by the sequencer after its commit, so a SIGKILL right
	// after the answer leaves its entry in audit_pending. Reading the
	// audit log then has to chain it first, which needs a write.
	pending := 0
	for try := 0; try < 20 && pending == 0; try++ {
		ch, err := c.Challenge(ctx, first.Key.ID, "fido2", first.FIDO2[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.VerifyFIDO2(ctx, ch.Challenge.ID, credential.Assertion{AuthenticatorData: []byte("x"), ClientDataJSON: []byte("{}"), Signature: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		p.Kill()
		pending = countPending(t, filepath.Join(state, "registry.db"))
		if p, err = regtest.Start(bin, state, "--listen", u.Host); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			continue
		}
		p.Kill()
		break
	}
	if pending == 0 {
		t.Fatal("no audit entry left pending after 20 verifications each followed by SIGKILL")
	}
	filled := fill(t, filepath.Join(disk, "filler"))
	if p, err = regtest.Start(bin, state, "--listen", u.Host, "--log-format", "json"); err != nil {
		t.Fatalf("starting on the full disk: %v", err)
	}
	defer p.Stop()

	// SQLite reuses its write-ahead log's pages once checkpointed, so a
	// few writes may still fit on the full disk: write until one is
	// refused.
	var status int
	var code, retry, reqID string
	fitted := 0
	for ; fitted < 2000; fitted++ {
		status, code, retry, reqID = rawCreateUser(t, p.URL, admin, fmt.Sprintf("full-%d", fitted))
		if status != http.StatusCreated {
			break
		}
	}
	t.Logf("filler %d bytes; %d writes fitted after it; then %d %s (Retry-After %s)", filled, fitted, status, code, retry)
	if status != http.StatusServiceUnavailable || code != "storage_full" || retry == "" || reqID == "" {
		t.Fatalf("write on a full disk: %d %q, Retry-After %q, X-Request-Id %q; want 503 storage_full with both headers", status, code, retry, reqID)
	}
	// The log line: a JSON record with the request id, route, code and cause.
	var logged map[string]any
	line := waitLog(t, p, reqID)
	if err := json.Unmarshal([]byte(line), &logged); err != nil {
		t.Fatalf("log line %q: %v", line, err)
	}
	t.Logf("log: %s", line)
	if logged == nil || logged["code"] != "storage_full" || logged["route"] != "/v1/users" || logged["level"] != "ERROR" || !strings.Contains(fmt.Sprint(logged["cause"]), "full") {
		t.Fatalf("no log record for request %s with code storage_full, route and cause: %v\n%s", reqID, logged, p.Log())
	}

	// The desk: a plain cause, and a queued write stays queued.
	_, err = c.Enrol(ctx, enrolment(100))
	if !errors.Is(err, registry.ErrStorageFull) || !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("client on a full disk: %v, want ErrStorageFull (and ErrUnreachable for retries)", err)
	}
	if msg, ok := client.Storage(err); !ok || !strings.Contains(msg, "disk is full") || strings.Contains(client.Cause(err), "reach") {
		t.Fatalf("client.Storage = %q, %v; Cause = %q", msg, ok, client.Cause(err))
	}
	if _, err := c.QueueEnrolment(ctx, enrolment(101)); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(ctx, nil); !errors.Is(err, registry.ErrStorageFull) {
		t.Fatalf("flush on a full disk: %v, want ErrStorageFull", err)
	}
	if pend, err := c.Entries(ctx, client.Pending); err != nil || len(pend) != 1 {
		t.Fatalf("%d pending after the refused flush (%v), want 1", len(pend), err)
	}

	// Reads work on the full disk.
	x, err := c.Export(ctx, "")
	if err != nil || len(x.Users) < 5 || len(x.Audit) == 0 {
		t.Fatalf("export on a full disk: %d users, %d audit entries, %v", len(x.Users), len(x.Audit), err)
	}
	rep, err := c.AuditVerify(ctx)
	if err != nil || !rep.OK || rep.Pending != pending {
		t.Fatalf("GET /v1/audit/verify on a full disk: %+v, %v; want ok with %d pending", rep, err, pending)
	}
	out, err := regtest.AuditVerify(bin, state)
	if err != nil || !strings.Contains(out, "audit ok") || !strings.Contains(out, fmt.Sprintf("%d audit entries are committed but not yet chained", pending)) {
		t.Fatalf("keydesk-registry audit verify on a full disk: %v %s", err, out)
	}
	t.Logf("on the full disk: export %d users, %d audit entries; verify %+v; %s", len(x.Users), len(x.Audit), rep, strings.TrimSpace(out))

	// Recovery without restart: free the space, the next write succeeds.
	if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
		t.Fatal(err)
	}
	if status, code, _, _ := rawCreateUser(t, p.URL, admin, "after-full"); status != http.StatusCreated {
		t.Fatalf("first write after freeing space: %d %s, want 201", status, code)
	}
	if err := c.Flush(ctx, nil); err != nil {
		t.Fatalf("flush after freeing space: %v", err)
	}
	if done, err := c.Entries(ctx, client.Done); err != nil || len(done) != 1 {
		t.Fatalf("%d done after the flush (%v), want 1", len(done), err)
	}
	if _, err := c.FindUser(ctx, enrolment(101).User.ExternalID); err != nil {
		t.Fatalf("the queued enrolment after recovery: %v", err)
	}
	if rep, err := c.AuditVerify(ctx); err != nil || !rep.OK || rep.Pending != 0 {
		t.Fatalf("audit verify after recovery: %+v, %v", rep, err)
	}
	p.Stop()
	if out, err := regtest.AuditVerify(bin, state); err != nil {
		t.Fatalf("audit verify after stop: %v %s", err, out)
	}
}

// waitLog returns the first line of p's output that holds s, waiting up to
// 10 s for it: a record is written before the answer, but its copy from
// the process's stderr pipe may lag behind. "" when none came.
func waitLog(t *testing.T, p *regtest.Process, s string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, line := range strings.Split(p.Log(), "\n") {
			if strings.Contains(line, s) {
				return line
			}
		}
	}
	return ""
}

// countPending counts the rows of audit_pending in the SQLite database at
// path, opened read-only while no registry runs.
func countPending(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM audit_pending").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRegistryReadOnlyState starts the real keydesk-registry on a state
// directory whose file system was remounted read-only: it refuses to
// start, and its message names the directory, the read-only file system
// and what to do.
func TestRegistryReadOnlyState(t *testing.T) {
	disk := mountTmpfs(t, "16m")
	state := filepath.Join(disk, "state")
	if _, err := regtest.Token(bin, state, "admin", "desk", ""); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "remount,ro", disk).CombinedOutput(); err != nil {
		t.Skipf("remounting read-only failed: %v %s", err, out)
	}
	defer exec.Command("mount", "-o", "remount,rw", disk).Run()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "serve", "--dev-plain-http", "--listen", "127.0.0.1:0", "--state", state)
	cmd.Stderr = &stderr
	err := cmd.Run()
	msg := stderr.String()
	t.Logf("start on a read-only state dir: %v: %s", err, msg)
	if err == nil || !strings.Contains(msg, state) || !strings.Contains(msg, "read-only file system") || !strings.Contains(msg, "remount it read-write") {
		t.Fatalf("start on a read-only state dir: %v, %q; want a refusal naming %s, the read-only file system and the remedy", err, msg, state)
	}
}
