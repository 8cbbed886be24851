package cli_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keydesk/keydesk/app/cli"
	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/pgtest"
	"github.com/keydesk/keydesk/registry/regtest"
)

func TestMain(m *testing.M) {
	testscript.Main(stopsPostgres{m}, map[string]func(){
		"keydesk": func() { os.Exit(cli.Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// stopsPostgres stops the PostgreSQL server a script started for Kratos
// (kratos-provider), after the tests.
type stopsPostgres struct{ m *testing.M }

func (s stopsPostgres) Run() int {
	defer pgtest.StopShared()
	return s.m.Run()
}

var (
	fleetMu    sync.Mutex
	fleetState string

	registryOnce sync.Once
	registryBin  string
	registryErr  error
)

// scriptRegistry is a script's registry process and the helpdesk identity
// its escrows are sealed to.
type scriptRegistry struct {
	proc     *regtest.Process // nil for the embedded registry
	state    string
	token    string
	identity string
	service  string // keyring service
	data     string // $XDG_DATA_HOME
	settings settings.Settings
}

type registryKey struct{}

// TestScripts drives the keydesk binary through testdata/script against
// practice-mode virtual keys behind a private pcscd, per script: two keys,
// or as many as the script's .keys file says. A script with a .registry
// file also gets a real keydesk-registry process (practice roots trusted)
// with its state in $WORK/registry-state, an admin token in
// $WORK/admin-token, the URL in $REGISTRY, a fresh keyring service on the
// real Secret Service, and desk settings ready to enrol (practice mode,
// a helpdesk recipient whose identity only the harness holds). A script
// with an .embedded file gets the same without the process: the desk runs
// its embedded registry.
func TestScripts(t *testing.T) {
	fleetState = t.TempDir()
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: func() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
			m := map[string]func(ts *testscript.TestScript, neg bool, args []string){
				"registry":  cmdRegistry,
				"nosecrets": cmdNoSecrets,
			}
			for k, v := range workflowCmds {
				m[k] = v
			}
			return m
		}(),
		Setup: func(env *testscript.Env) error {
			// One fleet at a time: each script's keys live behind their own
			// pcscd, and the test process's PC/SC client follows one socket.
			fleetMu.Lock()
			env.Defer(fleetMu.Unlock)
			n := 2
			if b, err := os.ReadFile(filepath.Join(env.WorkDir, ".keys")); err == nil {
				if n, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
					return fmt.Errorf(".keys: %w", err)
				}
			}
			// The fleet lives at the same path for every script, because
			// libpcsclite reads PCSCLITE_CSOCK_NAME once per process; each
			// script starts from factory-fresh keys.
			state := fleetState
			dir := filepath.Join(state, "keydesk", "sim")
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(context.Background())
			f, err := sim.Start(ctx, dir, n, virtual.Version{Major: 5, Minor: 7, Patch: 2})
			if err != nil {
				cancel()
				return err
			}
			env.Defer(func() { cancel(); f.Stop() })
			if err := f.Serve(ctx, dir); err != nil {
				return err
			}
			wctx, done := context.WithTimeout(ctx, 20*time.Second)
			defer done()
			os.Setenv("PCSCLITE_CSOCK_NAME", f.Daemon.Socket())
			for i := range f.Keys {
				if err := f.Daemon.WaitCard(wctx, i, true); err != nil {
					return err
				}
			}
			// Referees a script runs (pkcs11-tool) reach the fleet with
			// env PCSCLITE_CSOCK_NAME=$PCSC_SOCKET.
			env.Setenv("PCSC_SOCKET", f.Daemon.Socket())
			env.Setenv("XDG_STATE_HOME", state)
			// Settings and data stay in the script's work directory, never
			// the machine's ($HOME is /no-home under testscript).
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, ".config"))
			env.Setenv("XDG_DATA_HOME", filepath.Join(env.WorkDir, ".local", "share"))
			env.Setenv("KEYDESK_PRACTICE", "1")
			if _, err := os.Stat(filepath.Join(env.WorkDir, ".registry")); err == nil {
				return setupRegistry(env, false)
			}
			if _, err := os.Stat(filepath.Join(env.WorkDir, ".embedded")); err == nil {
				return setupRegistry(env, true)
			}
			return nil
		},
	})
}

// setupRegistry prepares a script's registry: a keydesk-registry process,
// or with embedded set, the desk's embedded registry (no URL in the
// settings; its state in $XDG_DATA_HOME/keydesk/registry, its token made by
// keydesk on first use).
func setupRegistry(env *testscript.Env, embedded bool) error {
	registryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keydesk-registry-bin-")
		if err != nil {
			registryErr = err
			return
		}
		registryBin, registryErr = regtest.Build(dir)
	})
	if registryErr != nil {
		return registryErr
	}
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		return fmt.Errorf("this script needs the Secret Service: run it through packaging/with-services.sh")
	}
	b := make([]byte, 6)
	rand.Read(b)
	r := &scriptRegistry{state: filepath.Join(env.WorkDir, "registry-state"), service: "keydesk-test-" + hex.EncodeToString(b),
		data: filepath.Join(env.WorkDir, ".local", "share")}
	env.Setenv(secrets.ServiceEnv, r.service)
	env.Setenv("DBUS_SESSION_BUS_ADDRESS", os.Getenv("DBUS_SESSION_BUS_ADDRESS"))
	cfg := filepath.Join(env.WorkDir, ".config")
	env.Setenv("XDG_CONFIG_HOME", cfg)
	env.Setenv("XDG_DATA_HOME", r.data)
	var err error
	if embedded {
		r.state = filepath.Join(r.data, "keydesk", "registry")
		env.Defer(func() { secrets.New(r.service).Delete(regconn.EmbeddedTokenAccount(r.state)) })
	} else {
		if r.token, err = regtest.Token(registryBin, r.state, "admin", "desk", ""); err != nil {
			return err
		}
		if r.proc, err = regtest.Start(registryBin, r.state, "--practice"); err != nil {
			return err
		}
		env.Defer(r.proc.Stop)
		if err := os.WriteFile(filepath.Join(env.WorkDir, "admin-token"), []byte(r.token+"\n"), 0o600); err != nil {
			return err
		}
		env.Defer(func() { secrets.New(r.service).Delete(secrets.RegistryTokenAccount(r.proc.URL)) })
		env.Setenv("REGISTRY", r.proc.URL)
	}
	id, rcpt, err := escrow.NewIdentity()
	if err != nil {
		return err
	}
	r.identity = id
	r.settings = settings.Default()
	r.settings.RPID = "keydesk.example"
	r.settings.Practice = true
	r.settings.HelpdeskRecipients = []string{rcpt}
	if err := settings.Save(filepath.Join(cfg, "keydesk", "settings.json"), r.settings); err != nil {
		return err
	}
	env.Values[registryKey{}] = r
	return nil
}

// client is an admin client of the script's registry; for the embedded
// registry it runs one in this process over the same state, with the token
// keydesk made. The caller calls the returned close.
func (r *scriptRegistry) client(ts *testscript.TestScript) (*client.Client, func()) {
	tmp, err := os.MkdirTemp("", "keydesk-script-client-")
	ts.Check(err)
	if r.proc != nil {
		c, err := client.New(r.proc.URL, r.token, client.Options{OutboxPath: filepath.Join(tmp, "outbox.db")})
		ts.Check(err)
		return c, func() { c.Close(); os.RemoveAll(tmp) }
	}
	conn, err := regconn.Open(context.Background(), regconn.Options{Settings: r.settings, Keyring: secrets.New(r.service),
		DataDir: filepath.Join(r.data, "keydesk"), OutboxPath: filepath.Join(tmp, "outbox.db")})
	ts.Check(err)
	return conn.Client, func() { conn.Close(); os.RemoveAll(tmp) }
}

func scriptReg(ts *testscript.TestScript) *scriptRegistry {
	r, _ := ts.Value(registryKey{}).(*scriptRegistry)
	if r == nil {
		ts.Fatalf("this script has no registry: add an empty .registry or .embedded file to it")
	}
	return r
}

// cmdRegistry: "registry audit" verifies the registry's audit chain and
// signed checkpoints with keydesk-registry audit verify; "registry user
// EXTERNAL_ID NAME EMAIL" creates a user, as the organisation's directory
// sync would.
func cmdRegistry(ts *testscript.TestScript, neg bool, args []string) {
	r := scriptReg(ts)
	if len(args) == 4 && args[0] == "user" && r.proc != nil {
		body, _ := json.Marshal(map[string]string{"external_id": args[1], "display_name": args[2], "email": args[3]})
		req, _ := http.NewRequest("POST", r.proc.URL+"/v1/users", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+r.token)
		req.Header.Set("Idempotency-Key", "create-"+args[1])
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		ts.Check(err)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			ts.Fatalf("creating user %s: status %d", args[1], res.StatusCode)
		}
		return
	}
	if len(args) != 1 || args[0] != "audit" {
		ts.Fatalf("usage: registry audit | registry user EXTERNAL_ID NAME EMAIL")
	}
	out, err := regtest.AuditVerify(registryBin, r.state)
	ts.Logf("%s", out)
	if (err != nil) != neg {
		ts.Fatalf("audit verify: %v: %s", err, out)
	}
}
