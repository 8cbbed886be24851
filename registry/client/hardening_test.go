package client_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry/regtest"
)

// TestRegistryTLSSuites starts the real keydesk-registry over TLS (its
// self-signed certificate) and connects with clients offering one kind of
// cipher suite each: TLS 1.2 with only CBC (SHA-1 and SHA-256) suites is
// refused; TLS 1.2 with an ECDHE AEAD suite and TLS 1.3 are accepted.
func TestRegistryTLSSuites(t *testing.T) {
	state := t.TempDir()
	p, err := regtest.StartArgs(bin, state, "serve", "--listen", "127.0.0.1:0", "--state", state)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	u, err := url.Parse(p.URL)
	if err != nil || u.Scheme != "https" {
		t.Fatalf("registry URL %q (%v), want https", p.URL, err)
	}
	dial := func(cfg *tls.Config) (*tls.ConnectionState, error) {
		cfg.InsecureSkipVerify = true // the registry's own self-signed certificate
		c, err := tls.Dial("tcp", u.Host, cfg)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		st := c.ConnectionState()
		return &st, nil
	}
	cbc := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	}
	if st, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbc}); err == nil {
		t.Fatalf("a TLS 1.2 client offering only CBC suites was accepted with %s", tls.CipherSuiteName(st.CipherSuite))
	} else {
		t.Logf("TLS 1.2, CBC suites only: %v", err)
	}
	st, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
	if err != nil {
		t.Fatalf("TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256: %v", err)
	}
	t.Logf("TLS 1.2 AEAD: %s", tls.CipherSuiteName(st.CipherSuite))
	if st, err = dial(&tls.Config{MinVersion: tls.VersionTLS13}); err != nil || st.Version != tls.VersionTLS13 {
		t.Fatalf("TLS 1.3: %v", err)
	}
}

// TestRegistryStateFileModes gives the registry a state directory that is
// already 0755, under a umask of 022: every file it creates there (the
// database with its write-ahead log and shared-memory index, the audit
// key, the TLS key and certificate) is 0600. A database loosened to 0644
// by hand is set back to 0600 at the next start, with a warning.
func TestRegistryStateFileModes(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o755); err != nil {
		t.Fatal(err)
	}
	tok, err := regtest.Token(bin, state, "admin", "desk", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.StartArgs(bin, state, "serve", "--listen", "127.0.0.1:0", "--state", state)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	n := 0
	// check writes through p, so the write-ahead log and its index
	// exist, then checks every file's mode.
	check := func() {
		t.Helper()
		n++
		req, _ := http.NewRequest("POST", p.URL+"/v1/users", strings.NewReader(fmt.Sprintf(`{"external_id":"mode-%d"}`, n)))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Idempotency-Key", fmt.Sprint("mode-", n))
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("creating a user: %d", res.StatusCode)
		}
		for _, name := range []string{"registry.db", "registry.db-wal", "registry.db-shm", "audit-signing-key.pem", "tls-key.pem", "tls-cert.pem"} {
			fi, err := os.Stat(filepath.Join(state, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s is %v, want 0600", name, fi.Mode().Perm())
			}
		}
	}
	check()
	p.Stop()
	if err := os.Chmod(filepath.Join(state, "registry.db"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err = regtest.StartArgs(bin, state, "serve", "--listen", "127.0.0.1:0", "--state", state); err != nil {
		t.Fatal(err)
	}
	check()
	p.Stop()
	if log := p.Stderr(); !strings.Contains(log, "set to 0600") || !strings.Contains(log, "registry.db") {
		t.Fatalf("no warning about the loosened database:\n%s", log)
	}
}
