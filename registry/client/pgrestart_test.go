package client_test

import (
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"

	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/regtest"
)

// TestSyncSurvivesPostgresRestart replays an outbox into a registry on a
// real PostgreSQL that is shut down a quarter of the way through the replay
// and restarted mid-flight at three quarters: the flush stops with
// ErrUnreachable while the database is away, later flushes finish, and the
// database holds every enrolment exactly once, with an audit log that
// verifies.
func TestSyncSurvivesPostgresRestart(t *testing.T) {
	n := 100
	if *soak {
		n = 2000
	}
	pg, err := pgtest.Start()
	if errors.Is(err, pgtest.ErrNoPostgres) && os.Getenv("CI") == "" {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	dsn, err := pg.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	out, err := exec.Command(bin, "token", "create", "--state", state, "--db", dsn, "--role", "admin", "--name", "desk").Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	admin := strings.TrimSpace(string(out))
	regtest.Secret(admin)
	p, err := regtest.Start(bin, state, "--db", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	c, err := client.New(p.URL, admin, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range n {
		if _, err := c.QueueEnrolment(ctx, enrolment(i)); err != nil {
			t.Fatal(err)
		}
	}

	// A quarter through: PostgreSQL goes away.
	err = c.Flush(ctx, func(pr client.Progress) {
		if pr.Done == n/4 {
			pg.Shutdown()
		}
	})
	if !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("flush while PostgreSQL is down: %v", err)
	}
	settled := func() int { d, _ := c.Entries(ctx, client.Done); return len(d) }
	if d := settled(); d != n/4 {
		t.Fatalf("%d settled before the outage, want %d", d, n/4)
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	// At three quarters: restarted while requests are in flight. The
	// flush either stops with ErrUnreachable or, if the registry's requests
	// all fell between the stop and the start, finishes.
	restarted := make(chan error, 1)
	err = c.Flush(ctx, func(pr client.Progress) {
		if pr.Entry.Seq == int64(3*n/4) {
			go func() { restarted <- pg.Restart() }()
		}
	})
	if err != nil && !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("flush across the restart: %v", err)
	}
	t.Logf("flush across the restart: %v", err)
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	// PostgreSQL is back: the registry's pool drops the connections the
	// restart cut as it meets them (at most one failed request each).
	for i := 0; i < 10; i++ {
		if err = c.Flush(ctx, nil); err == nil {
			break
		}
		if !errors.Is(err, client.ErrUnreachable) {
			t.Fatal(err)
		}
		t.Logf("flush after the restart: %v", err)
	}
	if err != nil {
		t.Fatalf("flush after the restart: %v", err)
	}
	if d := settled(); d != n {
		t.Fatalf("%d of %d settled", d, n)
	}

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var users, distinct, keys int
	if err := db.QueryRow("SELECT count(*), count(DISTINCT external_id) FROM users").Scan(&users, &distinct); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT count(*) FROM keys").Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if users != n || distinct != n || keys != n {
		t.Fatalf("PostgreSQL holds %d users (%d distinct) and %d keys, want %d each", users, distinct, keys, n)
	}
	p.Stop()
	if out, err := exec.Command(bin, "audit", "verify", "--state", state, "--db", dsn).CombinedOutput(); err != nil {
		t.Fatalf("audit verify: %v %s", err, out)
	}
}
