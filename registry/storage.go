package registry

import "errors"

// Storage faults: the store's database or file system refused a write.
// Nothing of the change set was written; the same request succeeds once
// the fault is cleared, with no restart. The API answers them with 503 and
// the codes storage_full, read_only and storage_error (docs/registry.md,
// "Error codes").
var (
	// ErrStorageFull: no room left (SQLite SQLITE_FULL, PostgreSQL 53100
	// disk_full, ENOSPC or EDQUOT from the file system).
	ErrStorageFull = errors.New("registry storage is full")
	// ErrReadOnly: the storage takes no writes (SQLite SQLITE_READONLY,
	// PostgreSQL 25006 read_only_sql_transaction, EROFS).
	ErrReadOnly = errors.New("registry storage is read-only")
	// ErrStorageIO: the storage failed to read or write (SQLite
	// SQLITE_IOERR, PostgreSQL 58030 io_error, EIO).
	ErrStorageIO = errors.New("registry storage input/output error")
)
