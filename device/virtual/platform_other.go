//go:build !linux

package virtual

// practiceSupported: see ErrNeedsLinux.
func practiceSupported() error { return ErrNeedsLinux }
