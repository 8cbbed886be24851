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
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
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
	s.cmd = exec.Command(bin, "serve", "--dev", "-c", cfg)
	s.cmd.Env = env
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting kratos: %w", err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	if err := s.waitReady(60 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

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
	if s.cmd != nil && s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	}
	os.RemoveAll(s.Dir)
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
