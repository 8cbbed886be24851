// Package regconn connects a desk to its registry: the organisation's
// registry at the settings' URL, with the bearer token kept in the OS
// keyring, or — when no URL is set — an embedded registry run in-process
// over SQLite in the user's data directory, on a loopback listener, with an
// admin token generated on its first start and kept next to the registry's
// database (mode 0600), so a desk with no keyring still has a registry.
// Either way the caller gets a *client.Client and closes the Conn when
// done.
//
// An organisation's token never comes from a command line or a plain
// file: Login stores one typed at the terminal (or piped on stdin) in the
// keyring.
package regconn

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keydesk/keydesk/app/idp"
	_ "github.com/keydesk/keydesk/app/idp/kinds" // every connector kind the settings may name
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/attest"
	"github.com/keydesk/keydesk/registry/audit"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/server"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// Options say where a desk's registry and secrets are.
type Options struct {
	Settings settings.Settings
	// Keyring holds a remote registry's token; secrets.Default() when nil.
	// The embedded registry never touches it.
	Keyring *secrets.Keyring
	// DataDir holds the outbox and the embedded registry; DefaultDataDir
	// when empty.
	DataDir string
	// OutboxPath is the client's outbox; DataDir/outbox.db when empty.
	OutboxPath string
}

// Conn is an open connection to a registry.
type Conn struct {
	// Client is the typed registry client, with its outbox.
	Client *client.Client
	// URL is the registry's base URL (a loopback one when embedded).
	URL string
	// Embedded is true for the in-process registry.
	Embedded bool
	// StateDir is the embedded registry's state: registry.db and the audit
	// signing key. Empty for a remote registry.
	StateDir string

	stop func() error
}

// Close closes the client and stops the embedded registry, if any.
func (c *Conn) Close() error {
	err := c.Client.Close()
	if c.stop != nil {
		if e := c.stop(); err == nil {
			err = e
		}
	}
	return err
}

// DefaultDataDir is keydesk's directory under the user's data directory
// ($XDG_DATA_HOME or ~/.local/share on Linux, %LOCALAPPDATA% on Windows),
// where client.DefaultOutboxPath also points.
func DefaultDataDir() (string, error) {
	p, err := client.DefaultOutboxPath()
	if err != nil {
		return "", err
	}
	return filepath.Dir(p), nil
}

// NoTokenError: the keyring holds no token for the registry.
type NoTokenError struct{ URL string }

func (e *NoTokenError) Error() string {
	return fmt.Sprintf("no registry token for %s in the keyring", e.URL)
}

// Hint is the next step for a person.
func (e *NoTokenError) Hint() string {
	return fmt.Sprintf("Store the token your registry admin gave you with: keydesk login --registry %s", e.URL)
}

// Unwrap lets errors.Is(err, secrets.ErrNotFound) match.
func (e *NoTokenError) Unwrap() error { return secrets.ErrNotFound }

// ErrTokenRefused: the registry does not accept the token (401).
var ErrTokenRefused = errors.New("the registry refused the token")

// Open connects as the settings say.
func Open(ctx context.Context, opt Options) (*Conn, error) {
	if err := opt.Settings.Validate(); err != nil {
		return nil, err
	}
	if opt.Keyring == nil {
		opt.Keyring = secrets.Default()
	}
	if opt.DataDir == "" {
		d, err := DefaultDataDir()
		if err != nil {
			return nil, err
		}
		opt.DataDir = d
	}
	if opt.OutboxPath == "" {
		opt.OutboxPath = filepath.Join(opt.DataDir, "outbox.db")
	}
	if opt.Settings.Embedded() {
		return openEmbedded(ctx, opt)
	}
	url := strings.TrimRight(opt.Settings.RegistryURL, "/")
	tok, err := opt.Keyring.Get(secrets.RegistryTokenAccount(url))
	if errors.Is(err, secrets.ErrNotFound) {
		return nil, &NoTokenError{URL: url}
	}
	if err != nil {
		return nil, err
	}
	hc, err := httpClient(opt.Settings.RegistryCA)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(url, tok, client.Options{HTTPClient: hc, OutboxPath: opt.OutboxPath})
	if err != nil {
		return nil, err
	}
	return &Conn{Client: cl, URL: url}, nil
}

// httpClient trusts caFile's certificates instead of the system roots
// when caFile is set (a pinned self-signed registry).
func httpClient(caFile string) (*http.Client, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	if caFile == "" {
		return hc, nil
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading registry_ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("registry_ca %s: no PEM certificate in it", caFile)
	}
	hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return hc, nil
}

// Roots builds the attestation trust anchors the settings ask for: Yubico's,
// the virtual keys' in practice mode, and any extra PEM files.
func Roots(s settings.Settings) (*attest.Roots, error) {
	r := attest.Yubico()
	if s.Practice {
		r.AddPractice()
	}
	for _, p := range s.TrustRoots {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading trust root: %w", err)
		}
		if err := r.AddPEM(b); err != nil {
			return nil, fmt.Errorf("trust root %s: %w", p, err)
		}
	}
	return r, nil
}

// embeddedTokenName is the name of the embedded registry's desk token.
const embeddedTokenName = "keydesk-desk-admin"

// EmbeddedTokenAccount is the keyring account where earlier keydesk
// versions kept the embedded registry's token for the registry in
// stateDir. Open no longer reads it (the token is EmbeddedTokenFile in
// stateDir); a desk upgraded from such a version gets a new token on its
// next start, and the old one is revoked.
func EmbeddedTokenAccount(stateDir string) string {
	return secrets.RegistryTokenAccount("embedded:" + stateDir)
}

// EmbeddedTokenFile is the file, in the embedded registry's state
// directory, holding its desk token (mode 0600, like registry.db and the
// audit key beside it).
const EmbeddedTokenFile = "desk-token"

func openEmbedded(ctx context.Context, opt Options) (*Conn, error) {
	state := filepath.Join(opt.DataDir, "registry")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("creating the embedded registry's directory: %w", err)
	}
	roots, err := Roots(opt.Settings)
	if err != nil {
		return nil, err
	}
	priv, err := audit.LoadOrCreateKey(state)
	if err != nil {
		return nil, err
	}
	st, err := sqlstore.Open(ctx, filepath.Join(state, "registry.db"), sqlstore.Options{Signer: priv})
	if err != nil {
		return nil, fmt.Errorf("opening the embedded registry: %w", err)
	}
	tok, err := embeddedToken(ctx, st, secrets.NewDir(state))
	if err != nil {
		st.Close()
		return nil, err
	}
	srv := server.New(st, server.Options{AuditKey: priv.Public().(ed25519.PublicKey), Roots: roots})
	jctx, stopJanitor := context.WithCancel(context.Background())
	janitorDone := make(chan struct{})
	go func() { srv.RunJanitor(jctx, time.Minute, nil); close(janitorDone) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stopJanitor()
		<-janitorDone
		st.Close()
		return nil, fmt.Errorf("starting the embedded registry: %w", err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() { hs.Serve(ln); close(served) }()
	url := "http://" + ln.Addr().String()
	stop := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := hs.Shutdown(sctx)
		<-served
		stopJanitor()
		<-janitorDone
		if e := st.Close(); err == nil {
			err = e
		}
		return err
	}
	cl, err := client.New(url, tok, client.Options{OutboxPath: opt.OutboxPath})
	if err != nil {
		stop()
		return nil, err
	}
	return &Conn{Client: cl, URL: url, Embedded: true, StateDir: state, stop: stop}, nil
}

// embeddedToken returns the embedded registry's admin token from its state
// directory, or makes one on first start (or when the stored token no
// longer opens this database: a lost or foreign token file). A replaced
// token is revoked in the same change set that creates the new one.
func embeddedToken(ctx context.Context, st *sqlstore.Store, dir *secrets.Dir) (string, error) {
	acct := EmbeddedTokenFile
	tok, err := dir.Get(acct)
	switch {
	case err == nil:
		t, lerr := st.LookupToken(ctx, server.HashToken(tok))
		if lerr == nil && t.Role == string(server.Admin) {
			return tok, nil
		}
		if lerr != nil && !errors.Is(lerr, registry.ErrNotFound) {
			return "", lerr
		}
	case !errors.Is(err, secrets.ErrNotFound):
		return "", err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok = "kdr_" + base64.RawURLEncoding.EncodeToString(b[:])
	if _, _, err := st.Write(ctx, "keydesk:embedded-start", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
		if err := tx.RevokeToken(embeddedTokenName); err != nil && !errors.Is(err, registry.ErrNotFound) {
			return sqlstore.Result{}, err
		}
		return sqlstore.Result{}, tx.CreateToken(server.HashToken(tok), embeddedTokenName, string(server.Admin), "")
	}); err != nil {
		return "", fmt.Errorf("creating the embedded registry's token: %w", err)
	}
	if err := dir.Put(acct, tok); err != nil {
		return "", err
	}
	return tok, nil
}

// Login checks token against the registry at url and stores it in kr. The
// registry must answer and must not refuse the token (401 is
// ErrTokenRefused); a token whose role may not list users (a self token) is
// accepted. caFile is settings.RegistryCA.
func Login(ctx context.Context, kr *secrets.Keyring, url, caFile, token string) error {
	url = strings.TrimRight(url, "/")
	token = strings.TrimSpace(token)
	if !strings.HasPrefix(token, "kdr_") || len(token) < 20 {
		return errors.New("that is not a registry token (they start with kdr_)")
	}
	if kr == nil {
		kr = secrets.Default()
	}
	hc, err := httpClient(caFile)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/v1/users?limit=1", nil)
	if err != nil {
		return fmt.Errorf("registry url: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", client.ErrUnreachable, err)
	}
	res.Body.Close()
	switch {
	case res.StatusCode == http.StatusUnauthorized:
		return ErrTokenRefused
	case res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%w: status %d", client.ErrUnreachable, res.StatusCode)
	case res.StatusCode != http.StatusOK && res.StatusCode != http.StatusForbidden:
		return fmt.Errorf("checking the token: the registry answered %d; is %s a keydesk registry?", res.StatusCode, url)
	}
	return kr.Put(secrets.RegistryTokenAccount(url), token)
}

// Providers opens the identity providers s names (their secrets from the
// OS keyring) with the provider outbox in DefaultDataDir, over the
// registry reg; nil when s names none. The caller closes it.
func Providers(s settings.Settings, reg *client.Client) (*idp.Orchestrator, error) {
	if len(s.Providers) == 0 {
		return nil, nil
	}
	dir, err := DefaultDataDir()
	if err != nil {
		return nil, err
	}
	return idp.OpenDesk(s.Providers, secrets.Default(), reg, filepath.Join(dir, idp.OutboxFile))
}
