// Package pgtest starts a real, throwaway PostgreSQL server for tests and
// benchmarks: initdb into a temporary directory and postgres listening only
// on a unix socket there, stopped and removed on cleanup.
//
// PostgreSQL refuses to run as root; as root the server runs as the
// "postgres" system user (created by the Debian package) through runuser.
package pgtest

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
)

// ErrNoPostgres: no PostgreSQL server binaries were found.
var ErrNoPostgres = errors.New("postgresql binaries not found under /usr/lib/postgresql/*/bin")

// Server is a running throwaway PostgreSQL.
type Server struct {
	dir     string
	data    string
	command func(name string, args ...string) *exec.Cmd
	cmd     *exec.Cmd
	done    chan struct{}
	n       atomic.Int64
}

// BinDir returns the newest /usr/lib/postgresql/N/bin holding initdb.
func BinDir() (string, error) {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(m) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", ErrNoPostgres
	}
	sort.Slice(m, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m[i]))))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m[j]))))
		return a < b
	})
	return filepath.Dir(m[len(m)-1]), nil
}

// Start initialises and starts a server. Stop it with Stop.
func Start() (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "keydesk-pg-")
	if err != nil {
		return nil, fmt.Errorf("creating pg dir: %w", err)
	}
	var wrap []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running postgresql as root needs the postgres system user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("handing pg dir to postgres: %w", err)
		}
		wrap = []string{"runuser", "-u", "postgres", "--"}
	}
	command := func(name string, args ...string) *exec.Cmd {
		full := append(append(append([]string{}, wrap...), filepath.Join(bin, name)), args...)
		c := exec.Command(full[0], full[1:]...)
		c.Env = append(os.Environ(), "LC_ALL=C")
		return c
	}
	data := filepath.Join(dir, "data")
	if out, err := command("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	s := &Server{dir: dir, data: data, command: command}
	if err := s.run(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// run starts postgres on the data directory and waits until it accepts
// connections.
func (s *Server) run() error {
	s.done = make(chan struct{})
	s.cmd = s.command("postgres", "-D", s.data, "-k", s.dir, "-c", "listen_addresses=", "-c", "fsync=off",
		"-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "max_connections=200", "-p", "5432")
	// KEYDESK_PG_STATEMENTS=1 loads pg_stat_statements, for profiling.
	if os.Getenv("KEYDESK_PG_STATEMENTS") != "" {
		s.cmd.Args = append(s.cmd.Args, "-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track=all")
	}
	s.cmd.SysProcAttr = groupAttr()
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	ready := make(chan struct{})
	var log strings.Builder
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			if log.Len() < 8192 {
				log.WriteString(line + "\n")
			}
			mu.Unlock()
			if !once && strings.Contains(line, "ready to accept connections") {
				once = true
				close(ready)
			}
		}
	}()
	done := s.done
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-ready:
	case <-done:
		mu.Lock()
		defer mu.Unlock()
		return fmt.Errorf("postgres exited before it was ready: %s", log.String())
	case <-time.After(60 * time.Second):
		s.halt()
		return errors.New("postgres not ready after 60s")
	}
	return nil
}

// halt shuts postgres down (fast shutdown: open sessions are cut, committed
// work is kept) and waits for it to exit.
func (s *Server) halt() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	// To the whole group: runuser does not pass SIGINT on to postgres.
	// SIGINT is PostgreSQL's fast shutdown.
	signalGroup(s.cmd.Process, false)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		signalGroup(s.cmd.Process, true)
		<-s.done
	}
}

// Shutdown stops the server (fast shutdown: every open session is cut,
// committed work is kept) and keeps its data for Restart.
func (s *Server) Shutdown() { s.halt() }

// Restart shuts the server down if it is running and starts it again on the
// same data, at the same address.
func (s *Server) Restart() error {
	s.halt()
	return s.run()
}

// DSN is the URL of database db on the server.
func (s *Server) DSN(db string) string {
	return "postgres://postgres@/" + db + "?host=" + s.dir + "&port=5432&sslmode=disable"
}

// NewDatabase creates an empty database and returns its URL.
func (s *Server) NewDatabase() (string, error) {
	name := fmt.Sprintf("keydesk_%d_%d", os.Getpid(), s.n.Add(1))
	db, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("creating database: %w", err)
	}
	return s.DSN(name), nil
}

// Stop shuts the server down (fast shutdown) and removes its files.
func (s *Server) Stop() {
	s.halt()
	os.RemoveAll(s.dir)
}

var (
	shared     *Server
	sharedErr  error
	sharedOnce sync.Once
)

// Shared starts one server for the whole test binary; call StopShared from
// TestMain after m.Run.
func Shared() (*Server, error) {
	sharedOnce.Do(func() { shared, sharedErr = Start() })
	return shared, sharedErr
}

// StopShared stops the server Shared started, if any.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
}

// Database returns the URL of a fresh database on the shared server. When
// PostgreSQL is absent it skips tb, unless the CI variable is set, in which
// case it fails: CI must test PostgreSQL.
func Database(tb testing.TB) string {
	tb.Helper()
	s, err := Shared()
	if errors.Is(err, ErrNoPostgres) && os.Getenv("CI") == "" {
		tb.Skipf("skipping PostgreSQL: %v (install it with packaging/install-deps.sh)", err)
	}
	if err != nil {
		tb.Fatalf("starting PostgreSQL: %v", err)
	}
	dsn, err := s.NewDatabase()
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}
