package sqlstore

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keydesk/keydesk/registry"
)

// Classify wraps err with registry.ErrStorageFull, registry.ErrReadOnly or
// registry.ErrStorageIO when the database or the file system under it
// refused for lack of room, because it is read-only, or with an I/O error;
// any other err is returned unchanged. It recognises SQLite's primary
// result codes (https://sqlite.org/rescode.html: SQLITE_FULL 13,
// SQLITE_READONLY 8, SQLITE_IOERR 10), PostgreSQL's SQLSTATEs (Appendix A:
// 53100 disk_full, 25006 read_only_sql_transaction, 58030 io_error) and
// the errno of a file-system call (ENOSPC, EDQUOT, EROFS, EIO).
func Classify(err error) error {
	if err == nil || errors.Is(err, registry.ErrStorageFull) || errors.Is(err, registry.ErrReadOnly) || errors.Is(err, registry.ErrStorageIO) {
		return err
	}
	if kind := storageFault(err); kind != nil {
		return fmt.Errorf("%w: %w", kind, err)
	}
	return err
}

func storageFault(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL:
			return registry.ErrStorageFull
		case sqlite3.SQLITE_READONLY:
			return registry.ErrReadOnly
		case sqlite3.SQLITE_IOERR:
			return registry.ErrStorageIO
		}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "53100":
			return registry.ErrStorageFull
		case "25006":
			return registry.ErrReadOnly
		case "58030":
			return registry.ErrStorageIO
		}
	}
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return registry.ErrStorageFull
	case errors.Is(err, syscall.EROFS):
		return registry.ErrReadOnly
	case errors.Is(err, syscall.EIO):
		return registry.ErrStorageIO
	}
	return nil
}
