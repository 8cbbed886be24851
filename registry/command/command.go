// Package command is the keydesk-registry command line: serve, token create,
// audit verify. cmd/keydesk-registry only calls Run.
package command

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keydesk/keydesk/internal/buildinfo"
	"github.com/keydesk/keydesk/registry"
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
                         [--log-format text|json] [--log-level debug|info|warn|error]
  keydesk-registry token create --role admin|helpdesk|self|authserver --name NAME [--user USER_ID] [--state DIR] [--db DSN]
  keydesk-registry token list [--state DIR] [--db DSN]
  keydesk-registry token revoke --name NAME [--state DIR] [--db DSN]
  keydesk-registry audit verify [--state DIR] [--db DSN] [--witness FILE] [--json]
  keydesk-registry audit head [--state DIR] [--db DSN]
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
			return tokenCreate(ctx, args[2:], stdout, stderr)
		case "list":
			return tokenList(ctx, args[2:], stdout, stderr)
		case "revoke":
			return tokenRevoke(ctx, args[2:], stdout, stderr)
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
		if len(args) < 2 {
			return fmt.Errorf("%w\n%s", ErrUsage, usage)
		}
		switch args[1] {
		case "verify":
			return auditVerify(ctx, args[2:], stdout, stderr)
		case "head":
			return auditHead(ctx, args[2:], stdout, stderr)
		}
		return fmt.Errorf("%w: unknown audit command %q\n%s", ErrUsage, args[1], usage)
	}
	return fmt.Errorf("%w: unknown command %q\n%s", ErrUsage, args[0], usage)
}

type common struct {
	state, db string
	// inspect: the command reads and reports on the audit log (audit
	// verify, audit head) rather than writing to it, so a witness that
	// the database does not match is reported, not refused.
	inspect bool
	// log receives start-up warnings (state files tightened); a command
	// that serves also logs its requests' faults there.
	log *slog.Logger
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

// open opens the state directory and the store. Every state file is
// created 0600 whatever the directory's mode, and existing ones readable
// by others are set to 0600 with a warning. A state directory (or SQLite
// database) that cannot be written is refused with its cause named.
func (c *common) open(ctx context.Context) (*sqlstore.Store, *auditKey, error) {
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(c.state, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating state dir: %w", err)
	}
	dsn, dbFile := c.db, ""
	if dsn == "" {
		dsn = filepath.Join(c.state, "registry.db")
	}
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		dbFile = dsn
	}
	// A full disk is no reason to refuse: reads (audit verify, export)
	// work on it and writes answer storage_full until there is room.
	if err := checkWritable(c.state); err != nil && !errors.Is(err, registry.ErrStorageFull) {
		return nil, nil, err
	}
	if dbFile != "" && filepath.Dir(dbFile) != filepath.Clean(c.state) {
		if err := checkWritable(filepath.Dir(dbFile)); err != nil && !errors.Is(err, registry.ErrStorageFull) {
			return nil, nil, fmt.Errorf("database %s: %w", dbFile, err)
		}
	}
	tighten(stateFiles(c.state, dbFile), c.log)
	priv, err := audit.LoadOrCreateKey(c.state)
	if err != nil {
		return nil, nil, err
	}
	w, err := audit.OpenWitness(c.state, priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, nil, err
	}
	if dbFile != "" {
		if err := createPrivate(dbFile); err != nil {
			return nil, nil, err
		}
	}
	st, err := sqlstore.Open(ctx, dsn, sqlstore.Options{Signer: priv, OnCheckpoint: func(cp audit.Checkpoint, rewritten bool) {
		w.Record(cp, rewritten) // a failure is logged; the change set is committed
	}})
	if err != nil {
		if err = sqlstore.Classify(err); errors.Is(err, registry.ErrReadOnly) && dbFile != "" {
			return nil, nil, fmt.Errorf("the database %s takes no writes: %w; make it writable by this user (uid %d) or give --db another", dbFile, err, os.Getuid())
		}
		return nil, nil, err
	}
	if !c.inspect {
		if err := checkWitness(ctx, st, w); err != nil {
			st.Close()
			return nil, nil, err
		}
	}
	return st, &auditKey{priv: priv, witness: w}, nil
}

// checkWitness refuses to write to a database whose audit chain does not
// contain the head the state dir's witness holds: it was truncated or
// rewritten (or deliberately restored from an older backup) since.
func checkWitness(ctx context.Context, st *sqlstore.Store, w *audit.Witness) error {
	cp, ok := w.Latest()
	if !ok {
		return nil
	}
	h, ok, err := st.AuditHashAt(ctx, cp.Seq)
	if err != nil {
		return err
	}
	if ok && bytes.Equal(h, cp.Hash) {
		return nil
	}
	what := "does not reach it"
	if ok {
		what = "holds a different entry there"
	}
	return &AuditError{Err: fmt.Errorf("%w: the audit witness %s holds signed entry %d but the database's chain %s: it was truncated or rewritten, or restored from an older backup; "+
		"run keydesk-registry audit verify, and only to accept this database deliberately move the witness file aside", audit.ErrTampered, w.Path(), cp.Seq, what)}
}

type auditKey struct {
	priv    []byte
	witness *audit.Witness
}

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
	logFormat := fs.String("log-format", "text", "log records on stderr as text or json")
	logLevel := fs.String("log-level", "info", "least severe log records written: debug, info, warn or error")
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	c.log = log
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
	if ids, err := st.NonNormalExternalIDs(ctx); err != nil {
		log.Warn("checking stored external ids", "cause", err.Error())
	} else if len(ids) > 0 {
		log.Warn("users whose stored external id is not NFC or holds control or format characters: lookups by external id do not find them (docs/registry.md, Model)",
			"count", len(ids), "user_ids", ids[:min(len(ids), 10)])
	}
	defer server.TuneGC()()
	key.witness.Log = log
	srv := server.New(st, server.Options{Log: log, AuditKey: ed25519Pub(key), Witness: key.witness, Roots: roots, AuthFailures: *authFailures, AuthWindow: *authWindow, IdempotencyTTL: *idemTTL, SignalRate: *sigRate, SignalBurst: *sigBurst})
	jctx, stopJanitor := context.WithCancel(ctx)
	defer stopJanitor()
	go srv.RunJanitor(jctx, *janitor, func(_ server.Swept, err error) {
		if err != nil {
			log.Error("janitor pass failed", "cause", sqlstore.Classify(err).Error())
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
		ln = tls.NewListener(ln, TLSConfig(cert))
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

func tokenCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token create", flag.ContinueOnError)
	c := common{log: warnings(stderr)}
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

func tokenList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token list", flag.ContinueOnError)
	c := common{log: warnings(stderr)}
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

func tokenRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token revoke", flag.ContinueOnError)
	c := common{log: warnings(stderr)}
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

// auditVerify is `keydesk-registry audit verify`: audit.VerifyLog over the
// database's chain, its head row and pending rows, against the state dir's
// witness and, with --witness, a head exported earlier (audit head).
func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	c := common{inspect: true, log: warnings(stderr)}
	c.flags(fs)
	witness := fs.String("witness", "", "a signed head exported earlier (keydesk-registry audit head): the chain must still contain it")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	rep, key, err := verifyState(ctx, &c, *witness)
	if err != nil {
		if *asJSON {
			out := map[string]any{"ok": false, "error": err.Error()}
			var te *audit.TamperError
			if errors.As(err, &te) && te.Seq != 0 {
				out["seq"] = te.Seq
			} else if te != nil {
				out["pending_id"] = te.Pending
			}
			json.NewEncoder(stdout).Encode(out)
		}
		return err
	}
	if *asJSON {
		out := map[string]any{"ok": true, "entries": rep.Entries, "checkpoints": rep.Checkpoints, "pending": rep.Pending}
		if rep.Signed.Seq > 0 {
			out["head"] = audit.Export(rep.Signed, ed25519Pub(key))
		}
		return json.NewEncoder(stdout).Encode(out)
	}
	fmt.Fprintf(stdout, "audit ok: %d entries, %d signed checkpoints, head %x\n", rep.Entries, rep.Checkpoints, rep.Head)
	if rep.Pending > 0 {
		fmt.Fprintf(stdout, "%d audit entries are committed but not yet chained: the store took no write (a full disk); the next write that succeeds chains them, and the next audit verify checks them\n", rep.Pending)
	}
	return nil
}

// auditHead is `keydesk-registry audit head`: after a full verification,
// the newest signed head as JSON, for an operator to keep somewhere the
// registry's host cannot rewrite and pass back to audit verify --witness.
func auditHead(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit head", flag.ContinueOnError)
	c := common{inspect: true, log: warnings(stderr)}
	c.flags(fs)
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	rep, key, err := verifyState(ctx, &c, "")
	if err != nil {
		return err
	}
	if rep.Signed.Seq == 0 {
		return errors.New("the audit log is empty: no head to export")
	}
	return json.NewEncoder(stdout).Encode(audit.Export(rep.Signed, ed25519Pub(key)))
}

// verifyState verifies the state's audit log against its witness and the
// head in witnessFile, if given.
func verifyState(ctx context.Context, c *common, witnessFile string) (audit.Report, *auditKey, error) {
	var extra []audit.Checkpoint
	if witnessFile != "" {
		cp, err := audit.ReadHead(witnessFile)
		if err != nil {
			return audit.Report{}, nil, err
		}
		extra = append(extra, cp)
	}
	st, key, err := c.open(ctx)
	if err != nil {
		return audit.Report{}, nil, err
	}
	defer st.Close()
	// Witnessed heads first: one is written only after its change set
	// commits, so the snapshot read next contains it.
	heads, err := key.witness.Heads()
	if err != nil {
		return audit.Report{}, nil, &AuditError{Err: err}
	}
	l, err := st.AuditChain(ctx)
	if err != nil {
		return audit.Report{}, nil, err
	}
	l.Witnesses = append(heads, extra...)
	rep, err := audit.VerifyLog(l, ed25519Pub(key))
	if err != nil {
		return audit.Report{}, nil, &AuditError{Err: err}
	}
	return rep, key, nil
}

// TLSConfig is the registry's TLS: version 1.3, or 1.2 with ECDHE key
// exchange and an AEAD cipher (AES-GCM or ChaCha20-Poly1305) only, the
// suites RFC 9325 section 4.2 recommends; the CBC and SHA-1 suites Go
// still offers by default for 1.2 are refused. TLS 1.3's suites are not
// configurable in Go and are all AEAD.
func TLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// warnings is the logger of the commands that do not serve: warnings and
// errors as text on stderr.
func warnings(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newLogger is serve's logger: records of level and above on stderr, as
// text (logfmt) or JSON lines.
func newLogger(stderr io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level must be debug, info, warn or error", ErrUsage)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, o)), nil
	}
	return nil, fmt.Errorf("%w: --log-format must be text or json", ErrUsage)
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
	if err := os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", fmt.Errorf("writing TLS certificate: %w", err)
	}
	return cf, kf, nil
}
