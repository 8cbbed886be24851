package enroltest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

// Env is a test's world: practice keys behind a private pcscd, a real
// registry process trusting the practice roots, admin and helpdesk clients,
// and a helpdesk age identity.
type Env struct {
	Dir      string
	Fleet    *sim.Fleet
	Keys     *keys.Service
	Bin      string
	State    string
	Registry *regtest.Process
	Admin    *client.Client
	Helpdesk *client.Client
	// AdminToken and HelpdeskToken are the clients' bearer tokens.
	AdminToken, HelpdeskToken string
	// Identity and Recipient are the helpdesk's age key pair.
	Identity, Recipient string
	cancel              context.CancelFunc
}

// FIDOInfo reads a FIDO device's serial, so discovery merges a key's
// interfaces.
func FIDOInfo(ctx context.Context, path string) (uint32, device.Version, bool, error) {
	return fidokey.Open(path).Info(ctx)
}

// Start builds nothing: bin is a keydesk-registry binary (regtest.Build). It
// starts n practice keys and a registry in a new directory under base.
// PC/SC clients in this process follow the fleet's pcscd from then on, so a
// test binary starts one Env.
func Start(base, bin string, n int) (*Env, error) {
	dir, err := os.MkdirTemp(base, "env-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, Bin: bin, State: filepath.Join(dir, "registry")}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	simDir := filepath.Join(dir, "sim")
	f, err := sim.Start(ctx, simDir, n, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	if err != nil {
		cancel()
		return nil, err
	}
	e.Fleet = f
	os.Setenv("PCSCLITE_CSOCK_NAME", f.Daemon.Socket())
	wctx, done := context.WithTimeout(ctx, 20*time.Second)
	defer done()
	for i := range f.Keys {
		if err := f.Daemon.WaitCard(wctx, i, true); err != nil {
			e.Stop()
			return nil, err
		}
	}
	if e.Keys, err = keys.New(keys.Config{Practice: true, SimDir: simDir, FIDOInfo: FIDOInfo}); err != nil {
		e.Stop()
		return nil, err
	}
	if e.AdminToken, err = regtest.Token(bin, e.State, "admin", "first-admin", ""); err != nil {
		e.Stop()
		return nil, err
	}
	if e.HelpdeskToken, err = regtest.Token(bin, e.State, "helpdesk", "desk-1", ""); err != nil {
		e.Stop()
		return nil, err
	}
	if e.Registry, err = regtest.Start(bin, e.State, "--practice"); err != nil {
		e.Stop()
		return nil, err
	}
	if e.Admin, err = client.New(e.Registry.URL, e.AdminToken, client.Options{OutboxPath: filepath.Join(dir, "admin-outbox.db")}); err != nil {
		e.Stop()
		return nil, err
	}
	if e.Helpdesk, err = client.New(e.Registry.URL, e.HelpdeskToken, client.Options{OutboxPath: filepath.Join(dir, "helpdesk-outbox.db")}); err != nil {
		e.Stop()
		return nil, err
	}
	if e.Identity, e.Recipient, err = escrow.NewIdentity(); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

// Key finds the practice key with serial.
func (e *Env) Key(ctx context.Context, serial uint32) (device.Key, error) {
	return e.Keys.Find(ctx, serial)
}

// Serial is the serial of the fleet's i-th key.
func (e *Env) Serial(i int) uint32 { return e.Fleet.Keys[i].Serial() }

// Stop stops the registry, the keys and pcscd.
func (e *Env) Stop() {
	if e.Admin != nil {
		e.Admin.Close()
	}
	if e.Helpdesk != nil {
		e.Helpdesk.Close()
	}
	if e.Registry != nil {
		e.Registry.Stop()
	}
	e.cancel()
	if e.Fleet != nil {
		if err := e.Fleet.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping practice keys:", err)
		}
	}
	os.RemoveAll(e.Dir)
}

// AdminCall sends one admin request to the registry (for what the typed
// client does not cover, such as planning a migration) and decodes a 2xx
// answer into out.
func (e *Env) AdminCall(method, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(method, e.Registry.URL+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+e.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", fmt.Sprintf("enroltest-%d", time.Now().UnixNano()))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// PlanMigration creates key set to and a migration of everyone from set
// from to set to with canaryUsers (registry ids) first (a draft counts
// as upcoming).
func (e *Env) PlanMigration(name, from, to string, canaryUsers ...string) error {
	for _, s := range []string{from, to} {
		// A set that exists already (created by an enrolment) is a 409.
		e.AdminCall("POST", "/v1/key-sets", map[string]string{"name": s}, nil)
	}
	return e.AdminCall("POST", "/v1/migrations", map[string]any{"name": name, "from_set": from, "to_set": to, "scope": map[string]any{"all": true}, "canary": map[string]any{"users": canaryUsers}, "stages": []float64{50}, "policy": map[string]any{"min_verified_b_keys": 1}}, nil)
}
