package crashpoint

import (
	"regexp"
	"slices"
	"testing"
)

// TestParse: only a declared point with before or after, or trace, arms
// the hook; anything else leaves it inert.
func TestParse(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "",
		"trace":                           "trace",
		JournalQueued + ":before":         JournalQueued + ":before",
		OutboxQueue + ":after":            OutboxQueue + ":after",
		RecoverKeyPIVUnblock + ":after":   RecoverKeyPIVUnblock + ":after",
		RecoverRegistryPass + ":before":   RecoverRegistryPass + ":before",
		OutboxQueue + ":during":           "",
		"no-such-point:after":             "",
		OutboxQueue:                       "",
		"journal-queued:after; echo $PIN": "",
	} {
		if got := parse(in); got != want {
			t.Errorf("parse(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPointNames: names are unique, and plain words (what a trace line
// carries, and all it carries).
func TestPointNames(t *testing.T) {
	seen := map[string]bool{}
	word := regexp.MustCompile(`^[a-z0-9-]+$`)
	for _, p := range slices.Concat(Points(), RecoveryPoints(), PIVPINPoints(), LostPoints(), RestorePoints(), IDPPoints(), []string{IDPDelete, IDPUnlink}) {
		if seen[p] || !word.MatchString(p) {
			t.Errorf("point %q repeated or not a plain name", p)
		}
		seen[p] = true
	}
}
