package sqlstore_test

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// TestClassify maps PostgreSQL's SQLSTATEs and file-system errnos to the
// registry's storage faults (SQLite's codes are checked on a real full
// disk by TestRegistryDiskFull in registry/client) and leaves every
// other error alone.
func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want error
	}{
		{&pgconn.PgError{Code: "53100"}, registry.ErrStorageFull},
		{&pgconn.PgError{Code: "25006"}, registry.ErrReadOnly},
		{&pgconn.PgError{Code: "58030"}, registry.ErrStorageIO},
		{&os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}, registry.ErrStorageFull},
		{&os.PathError{Op: "write", Path: "/x", Err: syscall.EDQUOT}, registry.ErrStorageFull},
		{&os.PathError{Op: "open", Path: "/x", Err: syscall.EROFS}, registry.ErrReadOnly},
		{&os.PathError{Op: "read", Path: "/x", Err: syscall.EIO}, registry.ErrStorageIO},
	}
	for _, c := range cases {
		wrapped := fmt.Errorf("committing write: %w", c.err)
		got := sqlstore.Classify(wrapped)
		if !errors.Is(got, c.want) || !errors.Is(got, c.err) {
			t.Errorf("%v: %v, want %v wrapping the cause", c.err, got, c.want)
		}
		if again := sqlstore.Classify(got); again != got {
			t.Errorf("classifying twice changed %v to %v", got, again)
		}
	}
	for _, err := range []error{nil, errors.New("x"), &pgconn.PgError{Code: "23505"}, registry.ErrNotFound, &os.PathError{Err: syscall.ENOENT}} {
		if got := sqlstore.Classify(err); got != err {
			t.Errorf("%v classified as %v", err, got)
		}
	}
}
