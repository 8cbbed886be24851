// Package sqlstore is the registry's store over database/sql: SQLite through
// modernc.org/sqlite (no cgo) by default, PostgreSQL through pgx when given a
// postgres:// URL. Schemas are goose migrations embedded per dialect.
//
// Every write runs in one transaction that also appends the change-feed rows,
// the hash-chained audit entries and a signed checkpoint, and records the
// idempotency key: either all of it is committed or none of it.
package sqlstore

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keydesk/keydesk/registry/audit"
)

//go:embed migrations
var migrations embed.FS

// Dialect names the SQL flavour of a store.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Options configure Open.
type Options struct {
	// Signer signs an audit checkpoint after every committed change set.
	// Without one, audit verification reports that no checkpoint exists.
	Signer ed25519.PrivateKey
	// OnCheckpoint hears of every checkpoint this store signs, after its
	// change set commits (the witness, audit.Witness.Record); rewritten is
	// true when a restore replaced the chain it extends.
	OnCheckpoint func(cp audit.Checkpoint, rewritten bool)
	// Now is the clock (tests set it); time.Now when nil.
	Now func() time.Time
	// MaxConns bounds the PostgreSQL connections (default: 4 per CPU the
	// Go runtime uses, at least 8). Each is a server process: far more of
	// them than CPUs only adds switching and lock waiting between them.
	MaxConns int
}

// Store is the registry's store.
type Store struct {
	db      *sql.DB
	dialect Dialect
	signer  ed25519.PrivateKey
	seq     sequencer
	now     func() time.Time
	// pendingKey authenticates audit_pending rows (audit.PendingKey).
	pendingKey   []byte
	guard        chainGuard
	onCheckpoint func(audit.Checkpoint, bool)
}

// Open opens (creating and migrating) the store at dsn: a postgres:// or
// postgresql:// URL, or a SQLite file path.
func Open(ctx context.Context, dsn string, opt Options) (*Store, error) {
	s := &Store{signer: opt.Signer, now: opt.Now, onCheckpoint: opt.OnCheckpoint}
	if s.signer != nil {
		s.pendingKey = audit.PendingKey(s.signer)
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		s.dialect = Postgres
		s.db, err = sql.Open("pgx", dsn)
		if err == nil {
			n := opt.MaxConns
			if n <= 0 {
				n = max(8, 4*runtime.GOMAXPROCS(0))
			}
			s.db.SetMaxOpenConns(n)
			s.db.SetMaxIdleConns(n)
		}
	} else {
		s.dialect = SQLite
		// _txlock=immediate: every transaction takes the write lock at BEGIN,
		// so a transaction's reads and writes see one consistent state.
		s.db, err = sql.Open("sqlite", "file:"+dsn+"?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)")
		if err == nil {
			s.db.SetMaxOpenConns(4)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening store: %w", err)
	}
	if err := s.db.PingContext(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("connecting to store: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations/"+string(s.dialect))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	gd := goose.DialectSQLite3
	if s.dialect == Postgres {
		gd = goose.DialectPostgres
	}
	p, err := goose.NewProvider(gd, s.db, sub)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrating store: %w", err)
	}
	return nil
}

// Close closes the database.
// Close chains pending audit entries and closes the database.
func (s *Store) Close() error {
	s.stopSequencer()
	return s.db.Close()
}

// Dialect reports which database the store uses.
func (s *Store) Dialect() Dialect { return s.dialect }

// DB exposes the database for benchmarks that compare against plain SQL.
func (s *Store) DB() *sql.DB { return s.db }

// Rebind turns ?-placeholders into the dialect's form.
func (s *Store) Rebind(q string) string { return rebind(s.dialect, q) }

func rebind(d Dialect, q string) string {
	if d != Postgres {
		return q
	}
	if v, ok := rebound.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	b.Grow(len(q) + len(q)/8)
	n := 0
	for rest := q; ; {
		i := strings.IndexByte(rest, '?')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		n++
		b.WriteString(rest[:i])
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
		rest = rest[i+1:]
	}
	out := b.String()
	if len(q) <= maxRebound && reboundN.Load() < maxReboundN {
		if _, loaded := rebound.LoadOrStore(q, out); !loaded {
			reboundN.Add(1)
		}
	}
	return out
}

// rebound remembers the PostgreSQL form of the statements a registry sends
// again and again (up to maxReboundN of them, none longer than maxRebound
// bytes: bulk INSERTs vary in length and are left out).
var (
	rebound  sync.Map
	reboundN atomic.Int64
)

const maxRebound, maxReboundN = 4096, 4096

type querier interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

func isUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return false
}

func isForeignKey(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23503"
	}
	return false
}

// NewID returns a random identifier with the given prefix.
func NewID(prefix string) string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}

func nanos(t time.Time) int64 { return t.UTC().UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }
