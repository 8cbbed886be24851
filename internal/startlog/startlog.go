// Package startlog keeps the desktop app's start quiet. Imported for its
// side effect by cmd/keydesk-desk (and the app's tests), it runs before Fyne's
// packages initialise: Fyne's translations read the locale at package
// initialisation, and under the C.UTF-8 locale many minimal systems
// default to, its locale library passes "C" on as a language tag and Fyne
// logs "Error parsing user locale C" on every start. For messages the C
// locale means English, so LANGUAGE=en is set in that case (and only
// then).
//
// It imports nothing but syscall, so Go's initialisation order (packages
// sorted by import path, each once its imports are initialised) runs it
// before Fyne's, which waits for most of the standard library.
package startlog

import "syscall"

func init() { quiet() }

// quiet sets LANGUAGE=en when the locale is C or POSIX with a codeset
// ("C.UTF-8") and LANGUAGE is unset.
func quiet() {
	loc := ""
	for _, v := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if s, ok := syscall.Getenv(v); ok && s != "" {
			loc = s
			break
		}
	}
	if l, ok := syscall.Getenv("LANGUAGE"); ok && l != "" {
		return
	}
	if hasPrefix(loc, "C.") || hasPrefix(loc, "POSIX.") {
		syscall.Setenv("LANGUAGE", "en")
	}
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }
