package osdirs

import (
	"path/filepath"
	"runtime"
	"testing"
)

func TestXDGOverridesAndFallbacks(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" {
		t.Skip("the XDG directories are the Linux and Unix convention")
	}
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("XDG_STATE_HOME", "")
	for _, c := range []struct {
		name string
		f    func() (string, error)
		want string
	}{
		{"data", Data, filepath.Join(home, ".local", "share")},
		{"state", State, filepath.Join(home, ".local", "state")},
	} {
		if got, err := c.f(); err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	t.Setenv("XDG_DATA_HOME", "/srv/data")
	t.Setenv("XDG_STATE_HOME", "/srv/state")
	if got, _ := Data(); got != "/srv/data" {
		t.Errorf("data with XDG_DATA_HOME: %q", got)
	}
	if got, _ := State(); got != "/srv/state" {
		t.Errorf("state with XDG_STATE_HOME: %q", got)
	}
}
