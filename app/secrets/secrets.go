// Package secrets keeps keydesk's long-lived secrets — the registry token and
// the helpdesk's age identity — in the operating system's keyring: the Secret
// Service (gnome-keyring, KWallet, KeePassXC) over D-Bus on Linux, the
// Keychain on macOS and the Credential Manager on Windows. They are never
// put on a command line, and written to a file only by Dir, for secrets
// that guard nothing beyond the directory they sit in (the embedded
// registry's desk token, a practice desk's helpdesk identity).
//
// On a desktop with no session bus (a fresh VM, a minimal window manager)
// the keyring is reported unavailable without trying to reach it: the D-Bus
// library would otherwise start a session bus of its own (dbus-launch),
// which starts a keyring daemon, and both outlive keydesk.
package secrets

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/zalando/go-keyring"
)

// Service is the keyring service name every keydesk secret is filed under.
const Service = "keydesk"

// Account names. A registry token is kept per registry URL, so a desk that
// talks to a test and a production registry keeps both.
const (
	helpdeskIdentity = "helpdesk-age-identity"
	registryToken    = "registry-token"
)

// ErrNotFound: nothing is stored under that name.
var ErrNotFound = errors.New("no such secret in the keyring")

// ErrNoSessionBus: the desktop has no D-Bus session bus, so no Secret
// Service can be reached.
var ErrNoSessionBus = errors.New("no desktop session bus")

// UnavailableError says the OS keyring could not be reached or used. Its
// text is plain words (what could not be done and why); the keyring
// library's own error, which names D-Bus objects, stays behind Unwrap.
type UnavailableError struct {
	// Op is what was being done, in words: "reading the registry token
	// for https://registry.example.org".
	Op string
	// NoService is true when there is no keyring service to ask at all
	// (no session bus); false when one answered but refused (a locked
	// keyring, no default collection).
	NoService bool
	Err       error
}

func (e *UnavailableError) Error() string {
	if e.NoService {
		return e.Op + ": this desktop has no keyring service (Secret Service) running"
	}
	return e.Op + ": the system keyring is locked or refused the request"
}
func (e *UnavailableError) Unwrap() error { return e.Err }

// Hint is the plain-language next step for a person.
func (e *UnavailableError) Hint() string {
	if e.NoService {
		return "keydesk keeps the tokens of an organisation's registry in the system keyring. Log in to a " +
			"desktop session that has one (GNOME Keyring, KWallet, or KeePassXC with its Secret Service " +
			"turned on), or on Debian and Ubuntu install gnome-keyring and log in again. Practice mode " +
			"and the embedded registry need no keyring."
	}
	return "Unlock the system keyring (it may ask for your login password) or create a default keyring " +
		"in your desktop's passwords app (Seahorse, KWalletManager, KeePassXC), then try again."
}

// Keyring stores secrets under one service name.
type Keyring struct {
	service string
}

// New returns a Keyring for service; tests pass their own so they never touch
// a person's real entries.
func New(service string) *Keyring { return &Keyring{service: service} }

// ServiceEnv names the environment variable that, when set, replaces
// Service: scripted tests and a second desk profile keep their secrets apart
// from a person's own.
const ServiceEnv = "KEYDESK_KEYRING_SERVICE"

// Default is the keyring keydesk itself uses: Service, or $KEYDESK_KEYRING_SERVICE.
func Default() *Keyring {
	if s := os.Getenv(ServiceEnv); s != "" {
		return New(s)
	}
	return New(Service)
}

// describe names account in words: "the registry token for URL".
func describe(account string) string {
	switch {
	case account == helpdeskIdentity:
		return "the helpdesk identity"
	case strings.HasPrefix(account, registryToken+":"):
		return "the registry token for " + strings.TrimPrefix(account, registryToken+":")
	}
	return fmt.Sprintf("the secret %q", account)
}

func (k *Keyring) wrap(op, account string, err error) error {
	if err == nil {
		return nil
	}
	what := op + " " + describe(account)
	if errors.Is(err, keyring.ErrNotFound) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return &UnavailableError{Op: what, NoService: errors.Is(err, ErrNoSessionBus), Err: err}
}

// reachable is nil when the keyring can be asked, else ErrNoSessionBus
// (see sessionBus in the per-OS files).
func reachable() error {
	if !sessionBus() {
		return ErrNoSessionBus
	}
	return nil
}

// Put stores secret under account, replacing what was there.
func (k *Keyring) Put(account, secret string) error {
	if secret == "" {
		return fmt.Errorf("storing %s: refusing to store an empty secret", describe(account))
	}
	if err := reachable(); err != nil {
		return k.wrap("storing", account, err)
	}
	return k.wrap("storing", account, keyring.Set(k.service, account, secret))
}

// Get returns the secret stored under account, or an error wrapping ErrNotFound.
func (k *Keyring) Get(account string) (string, error) {
	if err := reachable(); err != nil {
		return "", k.wrap("reading", account, err)
	}
	s, err := keyring.Get(k.service, account)
	return s, k.wrap("reading", account, err)
}

// Delete removes account. Deleting what is not there wraps ErrNotFound.
func (k *Keyring) Delete(account string) error {
	if err := reachable(); err != nil {
		return k.wrap("deleting", account, err)
	}
	return k.wrap("deleting", account, keyring.Delete(k.service, account))
}

// RegistryTokenAccount is the account a registry's bearer token is kept under.
func RegistryTokenAccount(registryURL string) string {
	return registryToken + ":" + strings.TrimRight(registryURL, "/")
}

// HelpdeskIdentityAccount is the account the helpdesk's age identity is kept
// under; it decrypts escrowed PUKs and management keys.
func HelpdeskIdentityAccount() string { return helpdeskIdentity }
