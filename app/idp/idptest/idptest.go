// Package idptest is an identity provider for tests: a real HTTP server
// (net/http/httptest) that keeps users' methods and counts every write it
// accepts, and the connector kind "idptest" that talks to it over HTTP, so
// the orchestration, the provider outbox and drift are tested through real
// requests, real failures (the server answering 503) and real processes.
//
// The server's API: GET /users/{user}/options (204: the provider imports
// the desk's credential; 200: creation options to make a new one with),
// GET /users/{user}/methods, POST /users/{user}/methods, DELETE
// /users/{user}/methods/{id}. {user} is the user's external id.
package idptest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keydesk/keydesk/app/idp"
)

// Kind is the connector kind's name.
const Kind = "idptest"

// Method is one method the server keeps.
type Method struct {
	ID           string    `json:"id"`
	CredentialID []byte    `json:"credential_id"`
	PublicKey    []byte    `json:"public_key"`
	DisplayName  string    `json:"display_name"`
	AAGUID       string    `json:"aaguid"`
	Created      time.Time `json:"created"`
	// ClientDataJSON is what the key signed, for a provider that hands out
	// creation options: the server checks it answers them.
	ClientDataJSON []byte `json:"client_data_json,omitempty"`
}

// Server is the test provider.
type Server struct {
	*httptest.Server
	mu      sync.Mutex
	methods map[string][]Method // by user
	writes  int
	deletes int
	down    bool
	gone    map[string]bool // users the server answers 404 for
	opts    *idp.CreationOptions
	next    int
}

// Start starts a server; t.Cleanup-style callers Close it.
func Start() *Server {
	s := &Server{methods: map[string][]Method{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{user}/options", s.options)
	mux.HandleFunc("GET /users/{user}/methods", s.list)
	mux.HandleFunc("POST /users/{user}/methods", s.create)
	mux.HandleFunc("DELETE /users/{user}/methods/{id}", s.delete)
	s.Server = httptest.NewServer(s.gate(mux))
	return s
}

func (s *Server) gate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		down := s.down
		s.mu.Unlock()
		if down {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":"down for maintenance"}`, http.StatusServiceUnavailable)
			return
		}
		if u := userOf(r.URL.Path); u != "" && s.isGone(u) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such user"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// SetGone makes the server answer 404 for everything about user, as a
// provider does for a user deleted or renamed there.
func (s *Server) SetGone(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone == nil {
		s.gone = map[string]bool{}
	}
	s.gone[user] = true
}

func (s *Server) isGone(user string) bool { s.mu.Lock(); defer s.mu.Unlock(); return s.gone[user] }

// userOf is the user a request path names ("/users/USER/..."), or "".
func userOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/users/")
	if !ok {
		return ""
	}
	u, _, _ := strings.Cut(rest, "/")
	u, _ = url.PathUnescape(u)
	return u
}

// SetDown makes the server answer every request with 503 (or not).
func (s *Server) SetDown(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

// SetOptions makes the server hand out creation options (nil: import).
func (s *Server) SetOptions(o *idp.CreationOptions) { s.mu.Lock(); s.opts = o; s.mu.Unlock() }

// Writes counts the methods the server accepted; Deletes the methods it
// deleted.
func (s *Server) Writes() int  { s.mu.Lock(); defer s.mu.Unlock(); return s.writes }
func (s *Server) Deletes() int { s.mu.Lock(); defer s.mu.Unlock(); return s.deletes }

// Methods lists user's methods.
func (s *Server) Methods(user string) []Method {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Method(nil), s.methods[user]...)
}

// Put adds a method directly (a method registered outside the desk).
func (s *Server) Put(user string, m Method) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.methods[user] = append(s.methods[user], m)
}

// Remove deletes a method directly (removed outside the desk).
func (s *Server) Remove(user, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := s.methods[user]
	for i, m := range ms {
		if m.ID == id {
			s.methods[user] = append(ms[:i:i], ms[i+1:]...)
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) options(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	o := s.opts
	s.mu.Unlock()
	if o == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"methods": s.Methods(r.PathValue("user"))})
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var m Method
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || len(m.CredentialID) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "credential_id is required"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts != nil {
		// The credential must answer exactly the options handed out
		// (WebAuthn L2 §7.1 steps 7-9): type, challenge, origin.
		var cd struct {
			Type, Challenge, Origin string
		}
		if err := json.Unmarshal(m.ClientDataJSON, &cd); err != nil || cd.Type != "webauthn.create" ||
			cd.Challenge != base64.RawURLEncoding.EncodeToString(s.opts.Challenge) || cd.Origin != "https://"+s.opts.RPID {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the credential does not answer the creation options"})
			return
		}
	}
	s.next++
	s.writes++
	m.ID, m.Created = "m"+strconv.Itoa(s.next), time.Now().UTC()
	u := r.PathValue("user")
	s.methods[u] = append(s.methods[u], m)
	writeJSON(w, http.StatusCreated, m)
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, id := r.PathValue("user"), r.PathValue("id")
	ms := s.methods[u]
	for i, m := range ms {
		if m.ID == id {
			s.methods[u] = append(ms[:i:i], ms[i+1:]...)
			s.deletes++
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such method"})
}

// Settings are the idptest kind's settings.
type Settings struct {
	URL string `json:"url"`
}

func init() {
	idp.RegisterKind(Kind, func(cfg idp.Config, _ idp.Secrets) (idp.Connector, error) {
		var st Settings
		if err := json.Unmarshal(cfg.Settings, &st); err != nil || st.URL == "" {
			return nil, fmt.Errorf("identity provider %q: settings need a url", cfg.Name)
		}
		return &Connector{name: cfg.Name, base: st.URL, hc: &http.Client{Timeout: 10 * time.Second}}, nil
	})
}

// Config is the settings entry of a provider of this kind at s.
func (s *Server) Config(name string) idp.Config {
	b, _ := json.Marshal(Settings{URL: s.URL})
	return idp.Config{Kind: Kind, Name: name, Settings: b}
}

// Connector talks to a Server over HTTP.
type Connector struct {
	name string
	base string
	hc   *http.Client
}

func (c *Connector) Name() string { return c.name }

func (c *Connector) do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return 0, &idp.TemporaryError{Provider: c.name, Err: err}
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	switch {
	case res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests:
		ra, _ := strconv.Atoi(res.Header.Get("Retry-After"))
		return res.StatusCode, &idp.TemporaryError{Provider: c.name, Status: res.StatusCode, RetryAfter: time.Duration(ra) * time.Second, Err: fmt.Errorf("%d %s", res.StatusCode, bytes.TrimSpace(raw))}
	case res.StatusCode >= 400:
		return res.StatusCode, &idp.RefusedError{Provider: c.name, Status: res.StatusCode, Hint: "The test provider refused the request.", Err: fmt.Errorf("%d %s", res.StatusCode, bytes.TrimSpace(raw))}
	}
	if out != nil && res.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(raw, out); err != nil {
			return res.StatusCode, fmt.Errorf("%s: reading the answer: %w", c.name, err)
		}
	}
	return res.StatusCode, nil
}

func userPath(u idp.User) string { return "/users/" + url.PathEscape(u.ExternalID) }

func (c *Connector) Options(ctx context.Context, u idp.User) (*idp.CreationOptions, error) {
	var o idp.CreationOptions
	st, err := c.do(ctx, "GET", userPath(u)+"/options", nil, &o)
	if err != nil || st == http.StatusNoContent {
		return nil, err
	}
	return &o, nil
}

func (c *Connector) Register(ctx context.Context, u idp.User, _ *idp.CreationOptions, cr idp.Credential) (string, error) {
	var m Method
	if _, err := c.do(ctx, "POST", userPath(u)+"/methods", Method{CredentialID: cr.ID, PublicKey: cr.PublicKey, DisplayName: cr.DisplayName, AAGUID: fmt.Sprintf("%x", cr.AAGUID), ClientDataJSON: cr.ClientDataJSON}, &m); err != nil {
		return "", err
	}
	if m.ID == "" {
		return "", errors.New(c.name + ": the answer names no method")
	}
	return m.ID, nil
}

func (c *Connector) Delete(ctx context.Context, u idp.User, id string) error {
	_, err := c.do(ctx, "DELETE", userPath(u)+"/methods/"+url.PathEscape(id), nil, nil)
	var re *idp.RefusedError
	if errors.As(err, &re) && re.Status == http.StatusNotFound {
		return nil
	}
	return err
}

func (c *Connector) List(ctx context.Context, u idp.User) ([]idp.Method, error) {
	var out struct {
		Methods []Method `json:"methods"`
	}
	if _, err := c.do(ctx, "GET", userPath(u)+"/methods", nil, &out); err != nil {
		return nil, err
	}
	ms := make([]idp.Method, len(out.Methods))
	for i, m := range out.Methods {
		ms[i] = idp.Method{ID: m.ID, CredentialID: m.CredentialID, DisplayName: m.DisplayName, AAGUID: m.AAGUID, Created: m.Created}
	}
	return ms, nil
}
