package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
)

// lazyTx is a change set's transaction on PostgreSQL, begun when the change
// set first needs it rather than up front. Every statement sent through it
// begins it first, except plain reads that ask to run outside it (Tx.read)
// while nothing has been written yet: under READ COMMITTED, PostgreSQL's
// level here, each statement sees what was committed when it started,
// inside a transaction or not, so such a read sees exactly what it would
// have seen inside. A change set whose only write is its last statement
// (a verification of an active key: the used challenge, the verification,
// the key's health, the pending audit entry and the idempotency row, in
// one statement) is then sent as that single statement, which PostgreSQL
// runs atomically as its own transaction: no BEGIN and COMMIT round trips,
// and no row lock held across a round trip to this process.
//
// On SQLite the transaction is begun at once (BEGIN IMMEDIATE takes the
// database's write lock, which is what keeps a change set's reads and
// writes consistent there).
type lazyTx struct {
	ctx  context.Context
	conn *sql.Conn // the change set's connection; nil when begun at once
	tx   *sql.Tx
	err  error // why the transaction could not begin
}

// begun wraps a transaction that is already open.
func begun(tx *sql.Tx) *lazyTx { return &lazyTx{tx: tx} }

// begin opens the transaction if it is not open yet.
func (l *lazyTx) begin() (*sql.Tx, error) {
	if l.tx == nil && l.err == nil {
		tx, err := l.conn.BeginTx(l.ctx, nil)
		if err != nil {
			l.err = fmt.Errorf("beginning write: %w", err)
		} else {
			l.tx = tx
		}
	}
	return l.tx, l.err
}

// open reports whether the transaction has begun.
func (l *lazyTx) open() bool { return l.tx != nil }

func (l *lazyTx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	tx, err := l.begin()
	if err != nil {
		return nil, err
	}
	return tx.ExecContext(ctx, q, args...)
}

func (l *lazyTx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	tx, err := l.begin()
	if err != nil {
		return nil, err
	}
	return tx.QueryContext(ctx, q, args...)
}

// QueryRowContext runs q in the transaction. When the transaction cannot
// begin, the row it returns fails to scan (with a cancelled context: a
// *sql.Row cannot carry an error of its own) and Store.write reports the
// reason the transaction failed to begin instead.
func (l *lazyTx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	tx, err := l.begin()
	if err != nil {
		done, cancel := context.WithCancel(ctx)
		cancel()
		return l.conn.QueryRowContext(done, q, args...)
	}
	return tx.QueryRowContext(ctx, q, args...)
}

func (l *lazyTx) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	tx, err := l.begin()
	if err != nil {
		return nil, err
	}
	return tx.PrepareContext(ctx, q)
}

// read is where a plain read (no lock, no write) goes: the transaction
// once it has begun, else the connection.
func (l *lazyTx) read() querier {
	if l.tx != nil || l.conn == nil {
		return l
	}
	return l.conn
}

// execAlone runs a change set's only write, q, on its own when the
// transaction has not begun: PostgreSQL makes one statement atomic.
func (l *lazyTx) execAlone(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if l.tx != nil || l.conn == nil {
		return l.ExecContext(ctx, q, args...)
	}
	return l.conn.ExecContext(ctx, q, args...)
}

func (l *lazyTx) Commit() error {
	if l.tx == nil {
		return l.err
	}
	return l.tx.Commit()
}

func (l *lazyTx) Rollback() error {
	if l.tx == nil {
		return nil
	}
	return l.tx.Rollback()
}
