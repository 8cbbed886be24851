// Package secrets keeps keydesk's long-lived secrets — the registry token and
// the helpdesk's age identity — in the operating system's keyring: the Secret
// Service (gnome-keyring, KWallet, KeePassXC) over D-Bus on Linux, the
// Keychain on macOS and the Credential Manager on Windows. They are never
// written to a plain file and never put on a command line.
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

// UnavailableError says the OS keyring could not be reached at all.
type UnavailableError struct {
	Op  string
	Err error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%s: os keyring unavailable: %v", e.Op, e.Err)
}
func (e *UnavailableError) Unwrap() error { return e.Err }

// Hint is the plain-language next step for a person.
func (e *UnavailableError) Hint() string {
	return "keydesk keeps tokens in the system keyring. Log in to a desktop session with a keyring " +
		"(GNOME Keyring, KWallet or KeePassXC with Secret Service enabled) and try again."
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

func (k *Keyring) wrap(op, account string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, keyring.ErrNotFound) {
		return fmt.Errorf("%s %q: %w", op, account, ErrNotFound)
	}
	return &UnavailableError{Op: fmt.Sprintf("%s %q", op, account), Err: err}
}

// Put stores secret under account, replacing what was there.
func (k *Keyring) Put(account, secret string) error {
	if secret == "" {
		return fmt.Errorf("storing %q: refusing to store an empty secret", account)
	}
	return k.wrap("storing", account, keyring.Set(k.service, account, secret))
}

// Get returns the secret stored under account, or an error wrapping ErrNotFound.
func (k *Keyring) Get(account string) (string, error) {
	s, err := keyring.Get(k.service, account)
	return s, k.wrap("reading", account, err)
}

// Delete removes account. Deleting what is not there wraps ErrNotFound.
func (k *Keyring) Delete(account string) error {
	return k.wrap("deleting", account, keyring.Delete(k.service, account))
}

// RegistryTokenAccount is the account a registry's bearer token is kept under.
func RegistryTokenAccount(registryURL string) string {
	return registryToken + ":" + strings.TrimRight(registryURL, "/")
}

// HelpdeskIdentityAccount is the account the helpdesk's age identity is kept
// under; it decrypts escrowed PUKs and management keys.
func HelpdeskIdentityAccount() string { return helpdeskIdentity }
