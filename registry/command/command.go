// Package command is the keydesk-registry command line: serve, token create,
// audit verify. cmd/keydesk-registry only calls Run.
package command

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/keydesk/keydesk/internal/buildinfo"
	"github.com/keydesk/keydesk/registry/attest"
	"github.com/keydesk/keydesk/registry/audit"
	"github.com/keydesk/keydesk/registry/server"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// ErrUsage: the command line was wrong; the message says how.
var ErrUsage = errors.New("usage")

const usage = `usage:
  keydesk-registry serve [--state DIR] [--db DSN] [--listen ADDR] [--tls-cert F --tls-key F] [--dev-plain-http]
                         [--practice] [--trust-roots PEM] [--auth-failures N] [--auth-window D]
                         [--idempotency-ttl D] [--janitor-interval D] [--signal-rate N --signal-burst N]
  keydesk-registry token create --role admin|helpdesk|self|authserver --name NAME [--user USER_ID] [--state DIR] [--db DSN]
  keydesk-registry token list [--state DIR] [--db DSN]
  keydesk-registry token revoke --name NAME [--state DIR] [--db DSN]
  keydesk-registry audit verify [--state DIR] [--db DSN]
  keydesk-registry mds update --file BLOB [--trust-root PEM] [--state DIR] [--db DSN]
  keydesk-registry simulate [--users N] [--broken F] [--no-new-key F] [--canary P] [--stages P,P] [--threshold F]
                            [--seed N] [--db DSN] [--json] [--quiet]
  keydesk-registry --version`

// Exit reports err, the result of Run, on stderr as the command's last
// word and returns the process's exit status: 0 on success, 2 for a usage
// error, 1 for any other failure.
func Exit(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "keydesk-registry:", err)
	if errors.Is(err, ErrUsage) {
		return 2
	}
	return 1
}

// Run executes the command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := run(ctx, args, stdout, stderr)
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w\n%s", ErrUsage, usage)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "--version", "-version", "version":
		fmt.Fprintln(stdout, buildinfo.String("keydesk-registry"))
		return nil
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "token":
		if len(args) < 2 {
			return fmt.Errorf("%w\n%s", ErrUsage, usage)
		}
		switch args[1] {
		case "create":
			return tokenCreate(ctx, args[2:], stdout)
		case "list":
			return tokenList(ctx, args[2:], stdout)
		case "revoke":
			return tokenRevoke(ctx, args[2:], stdout)
		}
		return fmt.Errorf("%w: unknown token command %q\n%s", ErrUsage, args[1], usage)
	case "simulate":
		return simulate(ctx, args[1:], stdout, stderr)
	case "mds":
		if len(args) < 2 || args[1] != "update" {
			return fmt.Errorf("%w\n%s", ErrUsage, usage)
		}
		return mdsUpdate(ctx, args[2:], stdout)
	case "audit":
		if len(args) < 2 || args[1] != "verify" {
			return fmt.Errorf("%w\n%s", ErrUsage, usage)
		}
		return auditVerify(ctx, args[2:], stdout)
	}
	return fmt.Errorf("%w: unknown command %q\n%s", ErrUsage, args[0], usage)
}

type common struct {
	state, db string
}

func (c *common) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.state, "state", defaultState(), "state directory (database, audit key, TLS certificate)")
	fs.StringVar(&c.db, "db", "", "database: a postgres:// URL, or a SQLite file (default STATE/registry.db)")
}

func defaultState() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" { // systemd StateDirectory=
		return d
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "keydesk-registry")
	}
	return "keydesk-registry-state"
}

func (c *common) open(ctx context.Context) (*sqlstore.Store, *auditKey, error) {
	if err := os.MkdirAll(c.state, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating state dir: %w", err)
	}
	priv, err := audit.LoadOrCreateKey(c.state)
	if err != nil {
		return nil, nil, err
	}
	dsn := c.db
	if dsn == "" {
		dsn = filepath.Join(c.state, "registry.db")
	}
	st, err := sqlstore.Open(ctx, dsn, sqlstore.Options{Signer: priv})
	if err != nil {
		return nil, nil, err
	}
	return st, &auditKey{priv: priv}, nil
}

type auditKey struct{ priv []byte }

// errHelp: --help was asked for and answered; the command succeeds.
var errHelp = errors.New("help shown")

// parse parses a subcommand's flags. -h/--help prints the usage and the
// subcommand's flags to stdout and ends the command successfully.
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "%s\n\nflags of %s:\n", usage, fs.Name())
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return errHelp
		}
		return fmt.Errorf("%w: %v\n%s", ErrUsage, err, usage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q\n%s", ErrUsage, fs.Arg(0), usage)
	}
	return nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c common
	c.flags(fs)
	listen := fs.String("listen", ":8443", "address to listen on")
	certF := fs.String("tls-cert", "", "TLS certificate (PEM); default a self-signed one in the state dir")
	keyF := fs.String("tls-key", "", "TLS private key (PEM)")
	plain := fs.Bool("dev-plain-http", false, "serve plain HTTP (development only; loopback addresses only)")
	practice := fs.Bool("practice", false, "also trust the attestation roots of keydesk's virtual keys (practice mode; never in production)")
	trustRoots := fs.String("trust-roots", "", "PEM file of extra attestation roots to trust, for FIDO2 and PIV")
	authFailures := fs.Int("auth-failures", 20, "failed authentications from one address that lock it out for the rest of --auth-window")
	authWindow := fs.Duration("auth-window", time.Minute, "the failed-authentication window")
	idemTTL := fs.Duration("idempotency-ttl", 7*24*time.Hour, "how long idempotency keys and their responses are kept")
	janitor := fs.Duration("janitor-interval", time.Minute, "how often expired idempotency keys, challenges and rate-limit windows are removed")
	sigRate := fs.Float64("signal-rate", 50, "lockout signals a second per token")
	sigBurst := fs.Int("signal-burst", 500, "lockout signal burst per token")
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	roots := attest.Yubico()
	if *practice {
		roots.AddPractice()
	}
	if *trustRoots != "" {
		b, err := os.ReadFile(*trustRoots)
		if err != nil {
			return fmt.Errorf("reading --trust-roots: %w", err)
		}
		if err := roots.AddPEM(b); err != nil {
			return err
		}
	}
	if *plain {
		host, _, err := net.SplitHostPort(*listen)
		ip := net.ParseIP(host)
		if err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return fmt.Errorf("%w: --dev-plain-http needs a loopback --listen address such as 127.0.0.1:8080", ErrUsage)
		}
	}
	st, key, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if *authFailures < 1 || *authWindow <= 0 || *idemTTL <= 0 || *janitor <= 0 {
		return fmt.Errorf("%w: --auth-failures, --auth-window, --idempotency-ttl and --janitor-interval must be positive", ErrUsage)
	}
	defer server.TuneGC()()
	srv := server.New(st, server.Options{AuditKey: ed25519Pub(key), Roots: roots, AuthFailures: *authFailures, AuthWindow: *authWindow, IdempotencyTTL: *idemTTL, SignalRate: *sigRate, SignalBurst: *sigBurst})
	jctx, stopJanitor := context.WithCancel(ctx)
	defer stopJanitor()
	go srv.RunJanitor(jctx, *janitor, func(_ server.Swept, err error) {
		if err != nil {
			fmt.Fprintf(stderr, "keydesk-registry: janitor: %v\n", err)
		}
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	scheme := "http"
	if !*plain {
		cf, kf := *certF, *keyF
		if cf == "" && kf == "" {
			cf, kf, err = selfSigned(c.state)
			if err != nil {
				ln.Close()
				return err
			}
		}
		cert, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			ln.Close()
			return fmt.Errorf("loading TLS certificate: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second, WriteTimeout: 5 * time.Minute}
	fmt.Fprintf(stdout, "keydesk-registry listening on %s://%s\n", scheme, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	}
}

func tokenCreate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token create", flag.ContinueOnError)
	var c common
	c.flags(fs)
	role := fs.String("role", "", "admin, helpdesk, self or authserver")
	name := fs.String("name", "", "a unique name for the token (who holds it)")
	user := fs.String("user", "", "the user a self token acts for")
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if !server.ValidRole(*role) || *name == "" {
		return fmt.Errorf("%w: --role (admin, helpdesk, self, authserver) and --name are required\n%s", ErrUsage, usage)
	}
	if (*role == "self") != (*user != "") {
		return fmt.Errorf("%w: --user is required for, and only for, a self token", ErrUsage)
	}
	st, _, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if *user != "" {
		if _, err := st.GetUser(ctx, *user); err != nil {
			return fmt.Errorf("self token: %w", err)
		}
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return err
	}
	tok := "kdr_" + base64.RawURLEncoding.EncodeToString(secret[:])
	if _, _, err := st.Write(ctx, "cli:token-create", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
		return sqlstore.Result{}, tx.CreateToken(server.HashToken(tok), *name, *role, *user)
	}); err != nil {
		return fmt.Errorf("creating token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func tokenList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token list", flag.ContinueOnError)
	var c common
	c.flags(fs)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	st, _, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	ts, err := st.Tokens(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tUSER\tCREATED\tREVOKED")
	for _, t := range ts {
		rev := "-"
		if t.RevokedAt != nil {
			rev = t.RevokedAt.Format(time.RFC3339)
		}
		user := t.UserID
		if user == "" {
			user = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Role, user, t.CreatedAt.Format(time.RFC3339), rev)
	}
	return tw.Flush()
}

func tokenRevoke(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token revoke", flag.ContinueOnError)
	var c common
	c.flags(fs)
	name := fs.String("name", "", "the name of the token to revoke")
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if *name == "" {
		return fmt.Errorf("%w: --name is required\n%s", ErrUsage, usage)
	}
	st, _, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, _, err := st.Write(ctx, "cli:token-revoke", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
		return sqlstore.Result{}, tx.RevokeToken(*name)
	}); err != nil {
		return fmt.Errorf("revoking token: %w", err)
	}
	fmt.Fprintf(stdout, "token %s revoked\n", *name)
	return nil
}

// AuditError is returned when the audit log does not verify.
type AuditError struct{ Err error }

func (e *AuditError) Error() string { return "audit verification failed: " + e.Err.Error() }
func (e *AuditError) Unwrap() error { return e.Err }

func auditVerify(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	var c common
	c.flags(fs)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	st, key, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	es, cs, err := st.AuditLog(ctx)
	if err != nil {
		return err
	}
	rep, err := audit.Verify(es, cs, ed25519Pub(key))
	if err != nil {
		return &AuditError{Err: err}
	}
	fmt.Fprintf(stdout, "audit ok: %d entries, %d signed checkpoints, head %x\n", rep.Entries, rep.Checkpoints, rep.Head)
	return nil
}

// selfSigned returns the state dir's self-signed certificate, creating it
// on first start (ECDSA P-256, valid for localhost, loopback and this host).
func selfSigned(dir string) (string, string, error) {
	cf, kf := filepath.Join(dir, "tls-cert.pem"), filepath.Join(dir, "tls-key.pem")
	if _, err := os.Stat(cf); err == nil {
		return cf, kf, nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	host, _ := os.Hostname()
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "keydesk-registry " + host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(2, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", host},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return "", "", fmt.Errorf("creating self-signed certificate: %w", err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return "", "", fmt.Errorf("writing TLS key: %w", err)
	}
	if err := os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", fmt.Errorf("writing TLS certificate: %w", err)
	}
	return cf, kf, nil
}
