// Package kratostest runs a real Ory Kratos server for tests: the binary
// packaging/kratos.sh builds from the Go module proxy (cached after the
// first build), a fresh PostgreSQL database, Kratos's own migrations, and
// `kratos serve` on loopback ports with passkeys (WebAuthn L3 discoverable
// credentials) and admin-issued recovery codes enabled.
//
// It is test support: no production code imports it.
package kratostest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Binary returns the path of the Kratos binary, building it with
// packaging/kratos.sh the first time on a machine. A build that fails is an
// error, never a skip.
func Binary() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "packaging", "kratos.sh")
	cmd := exec.Command("bash", script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building ory kratos with %s: %w: %s", script, err, stderr.String())
	}
	bin := strings.TrimSpace(string(out))
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("building ory kratos: %w", err)
	}
	return bin, nil
}

// Config is what a test chooses about the server.
type Config struct {
	// RPID is the passkey relying party id; the allowed origin is
	// "https://" + RPID, the origin keydesk's clientDataJSON carries.
	RPID string
	// SchemaID names the identity schema (traits email and name).
	SchemaID string
}

// Server is a running Kratos.
type Server struct {
	PublicURL, AdminURL string
	Dir                 string
	bin, cfg            string
	env                 []string
	cmd                 *exec.Cmd
	done                chan struct{}
	log                 *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Log is what the server wrote so far.
func (s *Server) Log() string { return s.log.String() }

// Start migrates the PostgreSQL database dsn with bin and serves Kratos on
// two free loopback ports, waiting until its admin API reports ready.
func Start(bin, dsn string, c Config) (*Server, error) {
	if c.SchemaID == "" {
		c.SchemaID = "default"
	}
	dir, err := os.MkdirTemp("", "keydesk-kratos-")
	if err != nil {
		return nil, err
	}
	pub, err := freePort()
	if err != nil {
		return nil, err
	}
	adm, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		PublicURL: fmt.Sprintf("http://127.0.0.1:%d", pub),
		AdminURL:  fmt.Sprintf("http://127.0.0.1:%d", adm),
		Dir:       dir,
		log:       &syncBuffer{},
	}
	schema := filepath.Join(dir, "identity.schema.json")
	if err := os.WriteFile(schema, []byte(identitySchema), 0o600); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "kratos.yml")
	if err := os.WriteFile(cfg, []byte(config(s, c, schema)), 0o600); err != nil {
		return nil, err
	}
	env := append(os.Environ(), "DSN="+dsn, "LOG_LEVEL=warning")
	mig := exec.Command(bin, "migrate", "sql", "-e", "--yes", "-c", cfg)
	mig.Env = env
	if out, err := mig.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("kratos migrate sql: %w: %s", err, tail(out))
	}
	s.bin, s.cfg, s.env = bin, cfg, env
	if err := s.serve(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// serve starts `kratos serve` and waits until it is ready.
func (s *Server) serve() error {
	s.cmd = exec.Command(s.bin, "serve", "--dev", "-c", s.cfg)
	s.cmd.Env = s.env
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	s.cmd.SysProcAttr = groupAttr()
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting kratos: %w", err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	if err := s.waitReady(60 * time.Second); err != nil {
		s.halt()
		return err
	}
	return nil
}

// Halt stops the server's process as Stop does, but keeps its files,
// database and ports: until Resume, Kratos is down (connections to it
// are refused).
func (s *Server) Halt() { s.halt() }

// Resume serves again after Halt, on the same ports and database.
func (s *Server) Resume() error { return s.serve() }

// waitReady polls both health endpoints until they answer 200, the process
// exits, or limit passes.
func (s *Server) waitReady(limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for _, u := range []string{s.AdminURL + "/health/ready", s.PublicURL + "/health/ready"} {
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			res, err := http.DefaultClient.Do(req)
			if err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-s.done:
				return fmt.Errorf("kratos exited before it was ready: %s", tail([]byte(s.Log())))
			case <-ctx.Done():
				return fmt.Errorf("kratos not ready after %s: %s", limit, tail([]byte(s.Log())))
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// Stop ends the server (SIGTERM, then SIGKILL after 10 s) and removes its
// files.
func (s *Server) Stop() {
	s.halt()
	os.RemoveAll(s.Dir)
}

// halt ends the process (SIGTERM, then SIGKILL after 10 s), if running.
func (s *Server) halt() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	signalGroup(s.cmd.Process, false)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		signalGroup(s.cmd.Process, true)
		<-s.done
	}
	s.cmd = nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte) string {
	const n = 4000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// identitySchema: the email is the identifier for code sign-in (which
// keydesk never enables; it makes the email searchable through the admin
// API's credentials_identifier) and the passkey's display name; recovery
// codes are issued by the admin API only.
const identitySchema = `{
  "$id": "https://keydesk.example/kratos/identity.schema.json",
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Person",
  "type": "object",
  "properties": {
    "traits": {
      "type": "object",
      "properties": {
        "email": {
          "type": "string",
          "format": "email",
          "minLength": 3,
          "ory.sh/kratos": {
            "credentials": {
              "code": {"identifier": true, "via": "email"},
              "passkey": {"display_name": true}
            },
            "recovery": {"via": "email"}
          }
        },
        "name": {"type": "string"}
      },
      "required": ["email"],
      "additionalProperties": false
    }
  }
}
`

func config(s *Server, c Config, schema string) string {
	ui := s.PublicURL + "/ui"
	return fmt.Sprintf(`version: v1.3.1
serve:
  public:
    base_url: %[1]s/
    host: 127.0.0.1
    port: %[2]s
  admin:
    base_url: %[3]s/
    host: 127.0.0.1
    port: %[4]s
session:
  whoami:
    required_aal: aal1
selfservice:
  default_browser_return_url: %[5]s/welcome
  allowed_return_urls:
    - %[5]s
  methods:
    password:
      enabled: false
    code:
      enabled: true
      passwordless_enabled: false
    link:
      enabled: false
    passkey:
      enabled: true
      config:
        rp:
          id: %[6]s
          display_name: keydesk test organisation
          origins:
            - https://%[6]s
  flows:
    settings:
      ui_url: %[5]s/settings
      privileged_session_max_age: 5m
      required_aal: aal1
    recovery:
      enabled: true
      use: code
      ui_url: %[5]s/recovery
    verification:
      enabled: false
    registration:
      enabled: false
      ui_url: %[5]s/registration
    login:
      ui_url: %[5]s/login
    error:
      ui_url: %[5]s/error
secrets:
  cookie:
    - keydesk-kratos-test-cookie-secret
  cipher:
    - 32-byte-keydesk-kratos-test-key!
identity:
  default_schema_id: %[7]s
  schemas:
    - id: %[7]s
      url: file://%[8]s
courier:
  smtp:
    connection_uri: smtp://127.0.0.1:1/
`, s.PublicURL, port(s.PublicURL), s.AdminURL, port(s.AdminURL), ui, c.RPID, c.SchemaID, schema)
}

func port(u string) string { return u[strings.LastIndex(u, ":")+1:] }

// Assertion is an authenticator's answer to a WebAuthn get() (WebAuthn L3
// §5.2.2).
type Assertion struct {
	CredentialID, ClientDataJSON, AuthenticatorData, Signature, UserHandle []byte
}

// Session is a Kratos session a sign-in produced.
type Session struct {
	ID, IdentityID string
}

// SignIn signs in through Kratos's own browser login flow with a passkey,
// over HTTP, as a single-page app does: it opens the flow (keeping its
// cookies), reads the WebAuthn request options from the flow's
// passkey_challenge node, has sign answer them, and submits the assertion
// as passkey_login. A refusal is an error carrying Kratos's message.
func SignIn(ctx context.Context, publicURL string, sign func(rpID string, challenge []byte) (Assertion, error)) (Session, error) {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var f struct {
		ID string `json:"id"`
		UI struct {
			Nodes []struct {
				Attributes struct {
					Name  string          `json:"name"`
					Value json.RawMessage `json:"value"`
				} `json:"attributes"`
			} `json:"nodes"`
		} `json:"ui"`
	}
	if _, err := call(ctx, hc, http.MethodGet, publicURL+"/self-service/login/browser", nil, &f); err != nil {
		return Session{}, fmt.Errorf("opening the login flow: %w", err)
	}
	var challenge, csrf string
	for _, n := range f.UI.Nodes {
		var v string
		json.Unmarshal(n.Attributes.Value, &v)
		switch n.Attributes.Name {
		case "passkey_challenge":
			challenge = v
		case "csrf_token":
			csrf = v
		}
	}
	if challenge == "" {
		return Session{}, errors.New("the login flow offers no passkey_challenge")
	}
	var opts struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
			RPID      string `json:"rpId"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal([]byte(challenge), &opts); err != nil {
		return Session{}, fmt.Errorf("passkey_challenge: %w", err)
	}
	chal, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(opts.PublicKey.Challenge, "="))
	if err != nil {
		return Session{}, fmt.Errorf("passkey_challenge: challenge: %w", err)
	}
	a, err := sign(opts.PublicKey.RPID, chal)
	if err != nil {
		return Session{}, err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	resp, _ := json.Marshal(map[string]any{
		"id": b64(a.CredentialID), "rawId": b64(a.CredentialID), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON": b64(a.ClientDataJSON), "authenticatorData": b64(a.AuthenticatorData),
			"signature": b64(a.Signature), "userHandle": b64(a.UserHandle),
		},
		"clientExtensionResults": map[string]any{},
	})
	var done struct {
		Session struct {
			ID       string `json:"id"`
			Active   bool   `json:"active"`
			Identity struct {
				ID string `json:"id"`
			} `json:"identity"`
		} `json:"session"`
	}
	body := map[string]any{"method": "passkey", "passkey_login": string(resp), "csrf_token": csrf}
	if _, err := call(ctx, hc, http.MethodPost, publicURL+"/self-service/login?flow="+url.QueryEscape(f.ID), body, &done); err != nil {
		return Session{}, fmt.Errorf("signing in: %w", err)
	}
	if !done.Session.Active || done.Session.ID == "" {
		return Session{}, errors.New("signing in: kratos answered without an active session")
	}
	return Session{ID: done.Session.ID, IdentityID: done.Session.Identity.ID}, nil
}

// call sends one JSON request and decodes a 200 answer into out; any other
// status is an error with the body.
func call(ctx context.Context, hc *http.Client, method, u string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return res.StatusCode, fmt.Errorf("%s %s: %d %s", method, strings.SplitN(u, "?", 2)[0], res.StatusCode, messages(raw))
	}
	return res.StatusCode, json.Unmarshal(raw, out)
}

// Admin sends one request to the admin API and decodes a 2xx answer.
func (s *Server) Admin(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.AdminURL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, tail(raw))
	}
	if out != nil && len(raw) > 0 {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// messages is what a Kratos error answer says: a flow's UI messages, or a
// generic error's reason, else the body's end.
func messages(raw []byte) string {
	var e struct {
		Error *struct {
			Reason, Message string
		} `json:"error"`
		UI struct {
			Messages []struct {
				ID   int64  `json:"id"`
				Text string `json:"text"`
			} `json:"messages"`
		} `json:"ui"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return tail(raw)
	}
	var out []string
	for _, m := range e.UI.Messages {
		out = append(out, fmt.Sprintf("%s (%d)", m.Text, m.ID))
	}
	if e.Error != nil {
		out = append(out, e.Error.Reason, e.Error.Message)
	}
	if len(out) == 0 {
		return tail(raw)
	}
	return strings.Join(out, "; ")
}

// Front is a reverse proxy in front of Kratos's public API that counts the
// passkey removals submitted through it (settings flow submissions with
// passkey_remove), so a test can tell a delete reached Kratos once.
type Front struct {
	URL      string
	srv      *httptest.Server
	removals atomic.Int32
}

// NewFront starts a front for the public API at publicURL.
func NewFront(publicURL string) (*Front, error) {
	target, err := url.Parse(publicURL)
	if err != nil {
		return nil, err
	}
	f := &Front{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/self-service/settings" {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if bytes.Contains(body, []byte("passkey_remove")) {
				f.removals.Add(1)
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	f.URL = f.srv.URL
	return f, nil
}

// Removals is how many passkey removals went through the front.
func (f *Front) Removals() int { return int(f.removals.Load()) }

// Close stops the front.
func (f *Front) Close() { f.srv.Close() }
