package client_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

// TestHostileRegistry points a client with queued enrolments at servers
// that are not a well-behaved registry: an oversized answer, malformed
// answers, a server that never answers or stops half-way, a certificate the
// client does not trust and one for another name. Each flush ends with a
// clear, typed error (no hang: the request timeout ends it), no entry
// leaves the pending state, and the same outbox then replays into the real
// registry: every enrolment lands exactly once.
func TestHostileRegistry(t *testing.T) {
	const n = 5
	outbox := filepath.Join(t.TempDir(), "outbox.db")
	queue, err := client.New("http://127.0.0.1:1", "t", client.Options{OutboxPath: outbox})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := queue.QueueEnrolment(ctx, enrolment(i)); err != nil {
			t.Fatal(err)
		}
	}
	queue.Close()

	stuck := make(chan struct{}) // released when the test ends
	defer close(stuck)
	plain := func(h http.HandlerFunc) string {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		t.Cleanup(s.CloseClientConnections)
		return s.URL
	}
	tlsServer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		io.WriteString(w, `{}`)
	}))
	t.Cleanup(tlsServer.Close)
	pool := x509.NewCertPool()
	pool.AddCert(tlsServer.Certificate())
	trusting := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	cases := []struct {
		name string
		url  string
		hc   *http.Client
		want func(error) bool
	}{
		{"oversized", plain(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(201)
			zeros := make([]byte, 1<<20)
			for range client.MaxResponse>>20 + 2 {
				if _, err := w.Write(zeros); err != nil {
					return
				}
			}
		}), nil, is(client.ErrBadResponse)},
		{"truncated json", plain(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(201)
			io.WriteString(w, `{"user": {"id": "u_1"`)
		}), nil, is(client.ErrBadResponse)},
		{"html refusal", plain(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(409)
			io.WriteString(w, "<html>409 Conflict</html>")
		}), nil, is(client.ErrBadResponse)},
		{"redirect status", plain(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(304)
		}), nil, is(client.ErrBadResponse)},
		{"server error", plain(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(502)
			io.WriteString(w, "bad gateway")
		}), nil, is(client.ErrUnreachable)},
		{"never answers", plain(func(w http.ResponseWriter, r *http.Request) {
			<-stuck
		}), nil, is(client.ErrUnreachable)},
		{"stops mid-body", plain(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(201)
			io.WriteString(w, `{"user":`)
			w.(http.Flusher).Flush()
			<-stuck
		}), nil, is(client.ErrUnreachable)},
		{"untrusted certificate", tlsServer.URL, nil, certError},
		{"certificate for another name", strings.Replace(tlsServer.URL, "127.0.0.1", "localhost", 1), trusting, certError},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, err := client.New(c.url, "t", client.Options{OutboxPath: outbox, Timeout: time.Second, HTTPClient: c.hc})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			done := make(chan error, 1)
			go func() {
				done <- cl.Flush(ctx, func(p client.Progress) { t.Errorf("entry %d settled as %s", p.Entry.Seq, p.Entry.State) })
			}()
			var ferr error
			select {
			case ferr = <-done:
			case <-time.After(2 * time.Minute): // far beyond the 1 s request timeout
				t.Fatal("flush hangs")
			}
			if !c.want(ferr) {
				t.Fatalf("flush error: %v", ferr)
			}
			t.Logf("flush: %v", ferr)
			if pend, err := cl.Entries(ctx, client.Pending); err != nil || len(pend) != n {
				t.Fatalf("%d pending (%v), want %d", len(pend), err, n)
			}
			// A direct call gets the same kind of error.
			if _, err := cl.Enrol(ctx, enrolment(100)); !c.want(err) {
				t.Fatalf("enrol: %v", err)
			}
		})
	}

	// The same outbox against the real registry: all land, once.
	state := t.TempDir()
	admin, err := regtest.Token(bin, state, "admin", "desk", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.Start(bin, state)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	cl, err := client.New(p.URL, admin, client.Options{OutboxPath: outbox})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Flush(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if done, _ := cl.Entries(ctx, client.Done); len(done) != n {
		t.Fatalf("%d done, want %d", len(done), n)
	}
	users, _, err := cl.Users(ctx, "", 100)
	if err != nil || len(users) != n {
		t.Fatalf("%d users in the registry (%v), want %d", len(users), err, n)
	}
	seen := map[string]bool{}
	for _, u := range users {
		seen[u.ExternalID] = true
	}
	for i := range n {
		if !seen[fmt.Sprintf("user-%04d", i)] {
			t.Fatalf("user-%04d missing from %v", i, seen)
		}
	}
}

func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }

func certError(err error) bool {
	var ce *tls.CertificateVerificationError
	return errors.Is(err, client.ErrUnreachable) && errors.As(err, &ce)
}
