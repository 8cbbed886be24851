//go:build !windows && !darwin

package osdirs

import (
	"os"
	"path/filepath"
)

func data() (string, error) { return xdg("XDG_DATA_HOME", ".local", "share") }

func state() (string, error) { return xdg("XDG_STATE_HOME", ".local", "state") }

// xdg is $env, or the fallback under the home directory (XDG Base
// Directory Specification 0.8).
func xdg(env string, fallback ...string) (string, error) {
	if d := os.Getenv(env); d != "" {
		return d, nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(append([]string{h}, fallback...)...), nil
}
