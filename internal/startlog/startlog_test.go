package startlog

import (
	"os"
	"testing"
)

func TestQuiet(t *testing.T) {
	for _, c := range []struct{ lcAll, lang, language, want string }{
		{"", "C.UTF-8", "", "en"},
		{"POSIX.UTF-8", "de_DE.UTF-8", "", "en"},
		{"", "C", "", ""}, // Fyne reads a bare C as no locale: nothing to fix
		{"", "de_DE.UTF-8", "", ""},
		{"", "C.UTF-8", "fr", "fr"},
	} {
		t.Setenv("LC_ALL", c.lcAll)
		t.Setenv("LC_MESSAGES", "")
		t.Setenv("LANG", c.lang)
		t.Setenv("LANGUAGE", c.language)
		quiet()
		if got := os.Getenv("LANGUAGE"); got != c.want {
			t.Errorf("LC_ALL=%q LANG=%q LANGUAGE=%q: LANGUAGE became %q, want %q", c.lcAll, c.lang, c.language, got, c.want)
		}
	}
}
