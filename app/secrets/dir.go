package secrets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Dir keeps secrets as files of mode 0600 in a directory of mode 0700. It
// is for secrets that protect nothing beyond that directory: the embedded
// registry's desk token sits next to the registry's own database, which
// anyone able to read the token could read directly. Everything else
// belongs in the OS keyring (Keyring).
type Dir struct{ path string }

// NewDir returns the store in path; it is created on the first Put.
func NewDir(path string) *Dir { return &Dir{path: path} }

func (d *Dir) file(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name[0] == '.' {
		return "", fmt.Errorf("secret name %q: not a plain file name", name)
	}
	return filepath.Join(d.path, name), nil
}

// Get returns the secret stored under name, or an error wrapping
// ErrNotFound. A file that others can read or write is refused.
func (d *Dir) Get(name string) (string, error) {
	p, err := d.file(name)
	if err != nil {
		return "", err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("reading %s: %s has mode %v; it must be readable by its owner only (chmod 600)", name, p, fi.Mode().Perm())
	}
	b := make([]byte, 4096)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	s := strings.TrimSpace(string(b[:n]))
	if s == "" {
		return "", fmt.Errorf("reading %s: %w", name, ErrNotFound)
	}
	return s, nil
}

// Put stores secret under name, replacing what was there: written to a
// temporary file of mode 0600, synced, then renamed over the old one.
func (d *Dir) Put(name, secret string) error {
	if secret == "" {
		return fmt.Errorf("storing %s: refusing to store an empty secret", name)
	}
	p, err := d.file(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.path, 0o700); err != nil {
		return fmt.Errorf("storing %s: %w", name, err)
	}
	f, err := os.CreateTemp(d.path, ".secret-*")
	if err != nil {
		return fmt.Errorf("storing %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.WriteString(secret + "\n")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		return fmt.Errorf("storing %s: %w", name, err)
	}
	return nil
}

// Delete removes name. Deleting what is not there wraps ErrNotFound.
func (d *Dir) Delete(name string) error {
	p, err := d.file(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deleting %s: %w", name, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("deleting %s: %w", name, err)
	}
	return nil
}
