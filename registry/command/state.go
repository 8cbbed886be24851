package command

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/keydesk/keydesk/registry"
)

// stateFiles are the files of a state directory that hold secrets or
// records (the SQLite database and its write-ahead log and shared-memory
// index, the audit signing key, the TLS key and certificate); db is the
// SQLite database's path, "" for PostgreSQL.
func stateFiles(dir, db string) []string {
	fs := []string{filepath.Join(dir, "audit-signing-key.pem"), filepath.Join(dir, "tls-key.pem"), filepath.Join(dir, "tls-cert.pem")}
	if db != "" {
		fs = append(fs, db, db+"-wal", db+"-shm")
	}
	return fs
}

// checkWritable reports, in words an operator can act on, why the state
// directory takes no new files: a read-only file system, missing
// permission or a full disk. nil when a file can be created there.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".keydesk-write-check-*")
	if err == nil {
		name := f.Name()
		f.Close()
		os.Remove(name)
		return nil
	}
	switch {
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("the state directory %s is on a read-only file system (%w): remount it read-write or give --state a writable directory; "+
			"the registry writes its database, write-ahead log and keys there", dir, registry.ErrReadOnly)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("the state directory %s is not writable by this user (uid %d): %w; give the user write permission on it or give --state a directory it owns",
			dir, os.Getuid(), err)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("the state directory %s is on a full file system (%w): free space there, then start again", dir, registry.ErrStorageFull)
	}
	return fmt.Errorf("the state directory %s takes no new files: %w", dir, err)
}

// createPrivate creates path, empty and mode 0600, unless it exists:
// SQLite then creates the write-ahead log and shared-memory index with the
// database file's mode, whatever the directory's mode or the umask.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	return f.Close()
}

// tighten sets every existing state file readable by group or others to
// 0600 and logs it; a file it cannot change is logged as a warning.
func tighten(files []string, log *slog.Logger) {
	for _, p := range files {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		if err := os.Chmod(p, 0o600); err != nil {
			log.Warn("state file readable by others and not tightened", "path", p, "mode", fi.Mode().Perm().String(), "error", err.Error())
			continue
		}
		log.Warn("state file was readable by others: set to 0600", "path", p, "was", fi.Mode().Perm().String())
	}
}
