package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/keydesk/keydesk/registry/validity"
)

// Run parses args, opens the relying party and serves until ctx ends. The
// registry token is read from the environment (KEYDESK_RP_TOKEN) or a file
// (--token-file), never from the command line. It prints "listening on
// http://ADDR" once it accepts connections.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keydesk-rp", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8443", "address to serve on")
	registryURL := fs.String("registry", "", "the registry's base URL")
	tokenFile := fs.String("token-file", "", "file holding an authserver token (default: $KEYDESK_RP_TOKEN)")
	rpID := fs.String("rp-id", "", "WebAuthn relying party id")
	origins := fs.String("origin", "", "accepted origins, comma-separated (default https://RP-ID)")
	state := fs.String("state", "", "state directory (sessions, counters, sign-in log, validity replica)")
	poll := fs.Duration("poll", time.Second, "time between change-feed reads")
	staleAfter := fs.Duration("stale-after", 5*time.Minute, "replica age after which it is degraded")
	failUnknown := fs.String("degraded-unknown", "closed", "degraded answer for credentials the replica does not hold: closed or open")
	failKnown := fs.String("degraded-known", "open", "degraded answer for credentials the replica holds as valid: open or closed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *registryURL == "" || *rpID == "" || *state == "" {
		return errors.New("--registry, --rp-id and --state are required")
	}
	tok := os.Getenv("KEYDESK_RP_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("reading the token: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return errors.New("no registry token: set KEYDESK_RP_TOKEN or --token-file")
	}
	mode := func(s string) (validity.FailMode, error) {
		switch validity.FailMode(s) {
		case validity.FailOpen, validity.FailClosed:
			return validity.FailMode(s), nil
		}
		return "", fmt.Errorf("fail mode %q: want open or closed", s)
	}
	unknown, err := mode(*failUnknown)
	if err != nil {
		return err
	}
	known, err := mode(*failKnown)
	if err != nil {
		return err
	}
	orig := []string{"https://" + *rpID}
	if *origins != "" {
		orig = strings.Split(*origins, ",")
	}
	rp, err := Open(Config{RPID: *rpID, Origins: orig, Dir: *state, Replica: validity.Options{
		URL: *registryURL, Token: tok, PollInterval: *poll, StaleAfter: *staleAfter,
		Policy: validity.Policy{Unknown: unknown, KnownValid: known},
	}})
	if err != nil {
		return err
	}
	defer rp.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rp.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	follow := make(chan error, 1)
	go func() { follow <- rp.Run(ctx) }()
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	select {
	case <-ctx.Done():
	case err := <-done:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return <-follow
}
