package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/regtest"
	"github.com/keydesk/keydesk/registry/validity"
)

var (
	env *enroltest.Env
	ctx = context.Background()
)

func TestMain(m *testing.M) {
	var bin string
	regtest.RunTests(runner{m, &bin}, &bin)
}

type runner struct {
	m   *testing.M
	bin *string
}

func (r runner) Run() int {
	var err error
	if env, err = enroltest.Start(os.TempDir(), *r.bin, 1); err != nil {
		fmt.Fprintln(os.Stderr, "starting a practice key and the registry:", err)
		return 1
	}
	defer env.Stop()
	return r.m.Run()
}

var b64 = base64.RawURLEncoding

// client drives the relying party's HTTP API with the practice key, the
// way a browser would: libfido2 over the key's pseudo-terminal signs.
type rpClient struct {
	t    *testing.T
	url  string
	fido *fidokey.Device
}

type begun struct {
	Session string `json:"session"`
	Options struct {
		PublicKey struct {
			Challenge        string `json:"challenge"`
			RPID             string `json:"rpId"`
			AllowCredentials []struct {
				ID string `json:"id"`
			} `json:"allowCredentials"`
		} `json:"publicKey"`
	} `json:"options"`
	Reason string `json:"reason"`
}

func (c *rpClient) post(path string, body any, out any) int {
	c.t.Helper()
	j, _ := json.Marshal(body)
	res, err := http.Post(c.url+path, "application/json", bytes.NewReader(j))
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(raw, out); err != nil {
		c.t.Fatalf("%s: %d %s", path, res.StatusCode, raw)
	}
	return res.StatusCode
}

// begin starts a login for userID and has the key sign it; it returns the
// finish request's body.
func (c *rpClient) begin(userID string) (map[string]any, begun, int) {
	c.t.Helper()
	var b begun
	if st := c.post("/login/begin", map[string]string{"user_id": userID}, &b); st != http.StatusOK {
		return nil, b, st
	}
	chal, err := b64.DecodeString(b.Options.PublicKey.Challenge)
	if err != nil {
		c.t.Fatal(err)
	}
	var allow [][]byte
	for _, a := range b.Options.PublicKey.AllowCredentials {
		id, err := b64.DecodeString(a.ID)
		if err != nil {
			c.t.Fatal(err)
		}
		allow = append(allow, id)
	}
	a, err := c.fido.GetAssertion(ctx, fidokey.AssertOptions{RPID: enroltest.RPID, Challenge: chal, CredentialIDs: allow}, device.Callbacks{})
	if err != nil {
		c.t.Fatal(err)
	}
	return map[string]any{"session": b.Session, "credential": map[string]any{
		"id": b64.EncodeToString(a.CredentialID), "rawId": b64.EncodeToString(a.CredentialID), "type": "public-key",
		"response": map[string]string{
			"clientDataJSON": b64.EncodeToString(a.ClientDataJSON), "authenticatorData": b64.EncodeToString(a.AuthenticatorData),
			"signature": b64.EncodeToString(a.Signature), "userHandle": b64.EncodeToString(a.UserHandle),
		},
	}}, b, http.StatusOK
}

func (c *rpClient) finish(body map[string]any) (Outcome, int) {
	c.t.Helper()
	var o Outcome
	st := c.post("/login/finish", body, &o)
	return o, st
}

// head is the registry's change-feed head.
func head(t *testing.T) int64 {
	t.Helper()
	p, err := env.Admin.Changes(ctx, "0", 1)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := strconv.ParseInt(p.Head, 10, 64)
	return h
}

// caughtUp waits until the relying party's replica has applied change set
// v, and returns how long that took.
func caughtUp(t testing.TB, url string, v int64) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		res, err := http.Get(url + "/status")
		if err != nil {
			t.Fatal(err)
		}
		var st validity.Status
		json.NewDecoder(res.Body).Decode(&st)
		res.Body.Close()
		if st.Cursor >= v {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica still at change set %d, want %d: %+v", st.Cursor, v, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func lockouts(t *testing.T) int {
	t.Helper()
	n, cursor := 0, "0"
	for {
		p, err := env.Admin.Changes(ctx, cursor, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Changes {
			if c.Entity == "migration_signal" && c.Op == "lockout" {
				n++
			}
		}
		cursor = p.Cursor
		if !p.More {
			return n
		}
	}
}

// TestSignInFollowsRegistry: a FIDO2 credential enrolled in the registry
// from the practice key signs in to the relying party; a tampered
// assertion is refused and reported, and so is a ceremony whose client
// reports that the key refused; once the key is marked lost in the
// registry and the replica has applied that change set, a ceremony begun
// before is refused at finish and reported, and a new one cannot begin.
// Each refusal reaches the registry as exactly one lockout signal.
func TestSignInFollowsRegistry(t *testing.T) {
	k, err := env.Key(ctx, env.Serial(0))
	if err != nil {
		t.Fatal(err)
	}
	en, err := enroltest.Enrol(ctx, env.Keys, env.Admin, k, enroltest.Options{User: "alice", PIVPIN: "246810", FIDOPIN: "fido-2468", Recipients: []string{env.Recipient}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := regtest.Token(env.Bin, env.State, "authserver", "rp-1", "")
	if err != nil {
		t.Fatal(err)
	}
	rp, err := Open(Config{RPID: enroltest.RPID, Origins: []string{"https://" + enroltest.RPID}, Dir: t.TempDir(),
		Replica: validity.Options{URL: env.Registry.URL, Token: tok, PollInterval: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- rp.Run(runCtx) }()
	defer func() { cancel(); <-ran }()
	hs := httptest.NewServer(rp.Handler())
	defer hs.Close()
	c := &rpClient{t: t, url: hs.URL, fido: fidokey.Open(k.FIDOPath)}
	before := lockouts(t)

	caughtUp(t, hs.URL, head(t))
	body, _, st := c.begin(en.User.ID)
	if st != http.StatusOK {
		t.Fatalf("begin: %d", st)
	}
	if o, st := c.finish(body); st != http.StatusOK || !o.OK || o.KeyID != en.Key.ID {
		t.Fatalf("sign-in with the enrolled key: %d %+v", st, o)
	}

	// A tampered signature.
	body, _, _ = c.begin(en.User.ID)
	resp := body["credential"].(map[string]any)["response"].(map[string]string)
	sig, _ := b64.DecodeString(resp["signature"])
	sig[len(sig)-1] ^= 1
	resp["signature"] = b64.EncodeToString(sig)
	if o, st := c.finish(body); st != http.StatusForbidden || o.OK || o.Reason != "assertion_rejected" || !o.Reported {
		t.Fatalf("tampered assertion: %d %+v", st, o)
	}

	// The key refused (the client says so instead of sending a credential).
	_, b, _ := c.begin(en.User.ID)
	if o, st := c.finish(map[string]any{"session": b.Session, "error": "NotAllowedError"}); st != http.StatusForbidden || o.Reason != "authenticator_refused" || !o.Reported || o.KeyID != en.Key.ID {
		t.Fatalf("a refusal the client reports: %d %+v", st, o)
	}

	// Begun, signed, and then the key is reported lost.
	pending, _, _ := c.begin(en.User.ID)
	if _, err := env.Admin.SetKeyStatus(ctx, en.Key.ID, en.Key.Version, registry.KeyLost, "lost on the train"); err != nil {
		t.Fatal(err)
	}
	lag := caughtUp(t, hs.URL, head(t))
	t.Logf("the replica applied the loss %v after the registry answered", lag)
	if o, st := c.finish(pending); st != http.StatusForbidden || o.Reason != "credential_not_valid" || !o.Reported || o.KeyID != en.Key.ID {
		t.Fatalf("sign-in with a lost key: %d %+v", st, o)
	}
	if _, b, st := c.begin(en.User.ID); st != http.StatusForbidden || b.Reason != "no_valid_credential" {
		t.Fatalf("beginning a sign-in with only a lost key: %d %+v", st, b)
	}

	if err := rp.Replica().FlushSignals(ctx); err != nil {
		t.Fatal(err)
	}
	if got := lockouts(t) - before; got != 3 {
		t.Fatalf("the registry recorded %d lockout signals, want 3 (the tampered assertion, the refusal and the lost key)", got)
	}
	if st := rp.Replica().Status(); st.Delivered != 3 || st.Rejected != 0 || st.Queued != 0 {
		t.Fatalf("signal queue: %+v", st)
	}
}

// TestRun starts the command as an operator would, with the token in the
// environment, and reads its status over HTTP; it refuses to start without
// a token.
func TestRun(t *testing.T) {
	state := t.TempDir()
	args := []string{"--listen", "127.0.0.1:0", "--registry", env.Registry.URL, "--rp-id", enroltest.RPID, "--state", state, "--poll", "50ms"}
	t.Setenv("KEYDESK_RP_TOKEN", "")
	if err := Run(ctx, args, io.Discard); err == nil || !strings.Contains(err.Error(), "no registry token") {
		t.Fatalf("without a token: %v", err)
	}
	tok, err := regtest.Token(env.Bin, env.State, "authserver", "rp-run", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KEYDESK_RP_TOKEN", tok)
	pr, pw := io.Pipe()
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- Run(runCtx, args, pw); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	url := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	caughtUp(t, url, head(t))
	res, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Contains(page, []byte("navigator.credentials.get")) {
		t.Fatalf("page: %d", res.StatusCode)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(state, "validity", "validity.snap")); err != nil {
		t.Fatalf("no snapshot after shutdown: %v", err)
	}
}
