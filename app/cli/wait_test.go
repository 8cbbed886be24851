package cli

import (
	"strings"
	"testing"
	"time"
)

// TestInsertWait: --wait wins; without it a script (stdin not a terminal)
// waits defaultScriptWait and a person at a terminal waits until Ctrl+C.
func TestInsertWait(t *testing.T) {
	for _, c := range []struct {
		flag string
		tty  bool
		want time.Duration
	}{
		{"", false, defaultScriptWait},
		{"", true, 0},
		{"5s", false, 5 * time.Second},
		{"2m", true, 2 * time.Minute},
		{"0", false, 0},
	} {
		e := &env{prompt: newPrompter(strings.NewReader(""), nil)}
		e.prompt.tty = c.tty
		if c.flag != "" {
			if err := e.wait.Set(c.flag); err != nil {
				t.Fatalf("--wait %s: %v", c.flag, err)
			}
		}
		if got := e.insertWait(); got != c.want {
			t.Errorf("--wait %q, terminal %v: %s, want %s", c.flag, c.tty, got, c.want)
		}
	}
	var w waitFlag
	for _, bad := range []string{"soon", "-5s", "10"} {
		if err := w.Set(bad); err == nil {
			t.Errorf("--wait %s accepted", bad)
		}
	}
}
