package client_test

import (
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/regtest"
)

// TestRegistryPostgresDiskFull is TestRegistryDiskFull on PostgreSQL: the
// registry's database keeps its tables and indexes in a tablespace on a
// 16 MiB tmpfs (its default_tablespace), while PostgreSQL's own write-ahead
// log and catalogs stay where they were. Once the tmpfs is full, a write
// that needs a new page gets PostgreSQL's 53100 disk_full: the registry
// answers 503 storage_full; exports and audit verification still work;
// with the filler deleted the next write succeeds without a restart of
// either process.
func TestRegistryPostgresDiskFull(t *testing.T) {
	disk := mountTmpfs(t, "16m")
	pg, err := pgtest.Start()
	if errors.Is(err, pgtest.ErrNoPostgres) && os.Getenv("CI") == "" {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	// PostgreSQL runs as the postgres user: it must reach the tablespace.
	for d := disk; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ts := filepath.Join(disk, "tablespace")
	if err := os.Mkdir(ts, 0o700); err != nil {
		t.Fatal(err)
	}
	if u, err := user.Lookup("postgres"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(ts, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	dsn, err := pg.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	su, err := sql.Open("pgx", pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close()
	name := strings.TrimPrefix(dsn[:strings.Index(dsn, "?")], "postgres://postgres@/")
	for _, q := range []string{"CREATE TABLESPACE tiny LOCATION '" + ts + "'", "ALTER DATABASE " + name + " SET default_tablespace = tiny"} {
		if _, err := su.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	defer su.Exec("DROP TABLESPACE IF EXISTS tiny")
	state := t.TempDir()
	out, err := exec.Command(bin, "token", "create", "--state", state, "--db", dsn, "--role", "admin", "--name", "desk").Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	admin := strings.TrimSpace(string(out))
	regtest.Secret(admin)
	p, err := regtest.Start(bin, state, "--db", dsn, "--log-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	c, err := client.New(p.URL, admin, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 5; i++ {
		if _, err := c.Enrol(ctx, enrolment(i)); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	var inTiny int
	err = reg.QueryRow("SELECT count(*) FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace WHERE t.spcname = 'tiny'").Scan(&inTiny)
	reg.Close()
	if err != nil || inTiny == 0 {
		t.Fatalf("%d relations in the tmpfs tablespace (%v)", inTiny, err)
	}
	filled := fill(t, filepath.Join(disk, "filler"))
	var status int
	var code, retry string
	fitted := 0
	for ; fitted < 5000; fitted++ {
		status, code, retry, _ = rawCreateUser(t, p.URL, admin, fmt.Sprintf("full-%d", fitted))
		if status != http.StatusCreated {
			break
		}
	}
	t.Logf("%d relations on the tmpfs; filler %d bytes; %d writes fitted in pages already there; then %d %s (Retry-After %s)", inTiny, filled, fitted, status, code, retry)
	if status != http.StatusServiceUnavailable || code != "storage_full" || retry == "" {
		t.Fatalf("write on a full tablespace: %d %q, want 503 storage_full\n%s", status, code, p.Log())
	}
	line := waitLog(t, p, `"code":"storage_full"`)
	if !strings.Contains(line, "53100") {
		t.Fatalf("no log record with code storage_full and SQLSTATE 53100:\n%s", p.Log())
	}
	t.Logf("log: %s", line)
	x, err := c.Export(ctx, "")
	if err != nil || len(x.Users) < 5 {
		t.Fatalf("export on a full disk: %d users, %v", len(x.Users), err)
	}
	rep, err := c.AuditVerify(ctx)
	if err != nil || !rep.OK {
		t.Fatalf("audit verify on a full disk: %+v, %v", rep, err)
	}
	t.Logf("on the full disk: export %d users, %d audit entries; verify %+v", len(x.Users), len(x.Audit), rep)
	if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
		t.Fatal(err)
	}
	if status, code, _, _ := rawCreateUser(t, p.URL, admin, "after-full"); status != http.StatusCreated {
		t.Fatalf("first write after freeing space: %d %s, want 201", status, code)
	}
	p.Stop()
	if out, err := exec.Command(bin, "audit", "verify", "--state", state, "--db", dsn).CombinedOutput(); err != nil {
		t.Fatalf("audit verify: %v %s", err, out)
	}
	// The tablespace must be empty before it can be dropped.
	if _, err := su.Exec("DROP DATABASE " + name + " WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
}
