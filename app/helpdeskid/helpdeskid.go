// Package helpdeskid says where a desk's helpdesk identity comes from: the
// age identity (https://age-encryption.org/v1) that opens the PUKs and
// management keys enrolment sealed to the settings' helpdesk recipients
// (app/escrow). The desktop app and the command line both ask it, so a
// desk behaves the same whichever face is used.
//
// A real desk keeps the identity in the OS keyring only (app/secrets;
// keydesk recover identity puts it there) and seals to the recipients its
// settings name. A practice desk needs no setting up and no keyring: when
// its settings name no helpdesk recipient, a practice identity kept in
// keydesk's data directory (PracticeFile, mode 0600, made on first use)
// becomes the recipient for this run — never written into the settings —
// and opens the escrows. It seals nothing but practice keys' PUKs, and
// guards nothing beyond the data directory it sits in, which holds the
// embedded registry those escrows live in.
package helpdeskid

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"filippo.io/age"

	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
)

// PracticeFile is the practice desk's helpdesk identity, in keydesk's data
// directory (regconn.DefaultDataDir).
const PracticeFile = "practice-helpdesk-identity"

// Options say where a desk keeps its secrets.
type Options struct {
	// DataDir holds PracticeFile; regconn.DefaultDataDir when empty.
	DataDir string
	// Keyring holds a real desk's identity; secrets.Default() when nil.
	Keyring *secrets.Keyring
}

// Source is where one desk's helpdesk identity comes from.
type Source struct {
	kr *secrets.Keyring
	// practice is the practice identity's store; nil on a keyring desk.
	practice *secrets.Dir
	path     string
}

// Resolve returns the settings a desk runs with and where its helpdesk
// identity comes from.
//
// On a real desk (s.Practice false) s is returned unchanged and the
// identity comes from the keyring. On a practice desk whose settings name
// no helpdesk recipient, the practice identity (made now when there is
// none) becomes the one recipient of the returned settings and the
// identity comes from its file. A practice desk whose settings name
// recipients keeps them; its identity comes from the practice file when
// that file exists and its recipient is one of them (a desk that saved
// the practice recipient into its settings), else from the keyring.
//
// When the practice identity cannot be made or read, Resolve returns s
// unchanged, a keyring Source and the error: a caller that can go on
// without it (the desktop app, whose enrol screen then says a recipient is
// missing) may ignore the error.
func Resolve(s settings.Settings, opt Options) (settings.Settings, *Source, error) {
	kr := opt.Keyring
	if kr == nil {
		kr = secrets.Default()
	}
	src := &Source{kr: kr}
	if !s.Practice {
		return s, src, nil
	}
	dir := opt.DataDir
	if dir == "" {
		d, err := regconn.DefaultDataDir()
		if err != nil {
			return s, src, fmt.Errorf("finding the practice desk's helpdesk identity: %w", err)
		}
		dir = d
	}
	store := secrets.NewDir(dir)
	path := filepath.Join(dir, PracticeFile)
	if len(s.HelpdeskRecipients) > 0 {
		id, err := store.Get(PracticeFile)
		if err != nil {
			// None made yet, or one that cannot be read: the settings'
			// recipients are the helpdesk's, and so is the keyring.
			return s, src, nil
		}
		if rcpt, err := recipientOf(id); err == nil && slices.Contains(trimmed(s.HelpdeskRecipients), rcpt) {
			src.practice, src.path = store, path
		}
		return s, src, nil
	}
	id, err := store.Get(PracticeFile)
	if errors.Is(err, secrets.ErrNotFound) {
		if id, _, err = escrow.NewIdentity(); err == nil {
			err = store.Put(PracticeFile, id)
		}
	}
	if err != nil {
		return s, src, fmt.Errorf("the practice desk's helpdesk identity (%s): %w", path, err)
	}
	rcpt, err := recipientOf(id)
	if err != nil {
		return s, src, fmt.Errorf("the practice desk's helpdesk identity (%s): %w", path, err)
	}
	s.HelpdeskRecipients = []string{rcpt}
	src.practice, src.path = store, path
	return s, src, nil
}

func recipientOf(id string) (string, error) {
	ident, err := age.ParseX25519Identity(strings.TrimSpace(id))
	if err != nil {
		return "", errors.New("not an age identity")
	}
	return ident.Recipient().String(), nil
}

func trimmed(rs []string) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, strings.TrimSpace(r))
	}
	return out
}

// Identity returns the helpdesk's age identity ("AGE-SECRET-KEY-1…"). A
// keyring Source's error wraps secrets.ErrNotFound when none is stored,
// or is a *secrets.UnavailableError when there is no keyring to ask.
func (src *Source) Identity() (string, error) {
	if src.practice != nil {
		return src.practice.Get(PracticeFile)
	}
	return src.kr.Get(secrets.HelpdeskIdentityAccount())
}

// Practice reports whether the identity is the practice desk's own.
func (src *Source) Practice() bool { return src.practice != nil }

// Path is the practice identity's file; "" for the keyring.
func (src *Source) Path() string { return src.path }
