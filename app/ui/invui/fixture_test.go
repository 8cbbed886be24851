package invui

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

var bin string

func TestMain(m *testing.M) { regtest.RunTests(m, &bin) }

// reg is one registry process with an admin and a helpdesk client.
type reg struct {
	t                 testing.TB
	state             string
	proc              *regtest.Process
	host              string
	adminTok, deskTok string
	admin, desk       *client.Client
}

func startRegistry(t testing.TB) *reg {
	t.Helper()
	r := &reg{t: t, state: t.TempDir()}
	var err error
	if r.adminTok, err = regtest.Token(bin, r.state, "admin", "first-admin", ""); err != nil {
		t.Fatal(err)
	}
	if r.deskTok, err = regtest.Token(bin, r.state, "helpdesk", "desk-1", ""); err != nil {
		t.Fatal(err)
	}
	if r.proc, err = regtest.Start(bin, r.state); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(r.proc.URL)
	r.host = u.Host
	t.Cleanup(func() { r.proc.Stop() })
	dir := t.TempDir()
	if r.admin, err = client.New(r.proc.URL, r.adminTok, client.Options{OutboxPath: filepath.Join(dir, "admin.db"), Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if r.desk, err = client.New(r.proc.URL, r.deskTok, client.Options{OutboxPath: filepath.Join(dir, "desk.db"), Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.admin.Close(); r.desk.Close() })
	return r
}

// restart starts the registry again on the same address and state.
func (r *reg) restart() {
	r.t.Helper()
	p, err := regtest.Start(bin, r.state, "--listen", r.host)
	if err != nil {
		r.t.Fatal(err)
	}
	r.proc = p
}

// call sends one admin request the typed client has no method for.
func (r *reg) call(method, path string, in, out any, hdr ...string) {
	r.t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(method, r.proc.URL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+r.adminTok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", rand.Text())
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		var e map[string]any
		json.NewDecoder(res.Body).Decode(&e)
		r.t.Fatalf("%s %s: %d %v", method, path, res.StatusCode, e)
	}
	if out != nil {
		json.NewDecoder(res.Body).Decode(out)
	}
}

// seedKey and seedUser are what a test registers, and all it knows when
// it computes the figures it expects.
type seedKey struct {
	Serial   string
	Role     registry.KeyRole
	Status   registry.KeyStatus // the final status
	Verified bool               // passed a signed challenge
}

type seedUser struct {
	Ext, Name, Email string
	Groups           []string
	Status           registry.UserStatus
	Keys             []seedKey
}

// plan is the seeded organisation: every combination of keys the
// inventory must judge, in a deterministic order.
func plan(n int) []seedUser {
	groups := []string{"engineering", "operations", "sales"}
	var us []seedUser
	serial := 20000000
	key := func(role registry.KeyRole, st registry.KeyStatus, verified bool) seedKey {
		serial++
		return seedKey{Serial: fmt.Sprint(serial), Role: role, Status: st, Verified: verified}
	}
	P, B := registry.RolePrimary, registry.RoleBackup
	A, Pe, L := registry.KeyActive, registry.KeyPending, registry.KeyLost
	for i := 0; i < n; i++ {
		u := seedUser{Ext: fmt.Sprintf("u%03d", i), Name: fmt.Sprintf("%s %03d", []string{"Ada", "Grace", "Linus", "Barbara"}[i%4], i),
			Email: fmt.Sprintf("person%03d@example.org", i), Groups: []string{groups[i%3]}, Status: registry.UserActive}
		if i%7 == 0 {
			u.Groups = append(u.Groups, "oncall")
		}
		switch i % 7 {
		case 0: // covered and verified
			u.Keys = []seedKey{key(P, A, true), key(B, A, true)}
		case 1: // no backup
			u.Keys = []seedKey{key(P, A, true)}
		case 2: // an active primary that never proved possession
			u.Keys = []seedKey{key(P, A, false), key(B, A, true)}
		case 3: // only a pending key: no active key
			u.Keys = []seedKey{key(P, Pe, false)}
		case 4: // no keys at all
		case 5: // primary lost, backup active
			u.Keys = []seedKey{key(P, L, true), key(B, A, true)}
		case 6: // suspended user: outside the policy
			u.Status = registry.UserSuspended
			u.Keys = []seedKey{key(P, A, true)}
		}
		us = append(us, u)
	}
	return us
}

// seed registers us through the API: enrolment with a software PIV key,
// a signed challenge for the verified ones, break glass for the rest.
func (r *reg) seed(us []seedUser) {
	r.t.Helper()
	ctx := context.Background()
	for _, u := range us {
		if len(u.Keys) == 0 || u.Status != registry.UserActive {
			r.call("POST", "/v1/users", map[string]any{"external_id": u.Ext, "display_name": u.Name, "email": u.Email, "groups": u.Groups}, nil)
		}
		ids := make([]string, len(u.Keys))
		for i, k := range u.Keys {
			pub, priv, _ := ed25519.GenerateKey(rand.Reader)
			der, _ := x509.MarshalPKIXPublicKey(pub)
			e, err := r.admin.Enrol(ctx, client.Enrolment{
				User: client.EnrolUser{ExternalID: u.Ext, DisplayName: u.Name, Email: u.Email, Groups: u.Groups},
				Key:  client.EnrolKey{Serial: k.Serial, Model: "YubiKey 5 NFC", Firmware: "5.7.2", Role: string(k.Role)},
				PIV:  []client.PIVSlot{{Slot: "9a", PublicKey: der}},
			})
			if err != nil {
				r.t.Fatalf("enrolling %s for %s: %v", k.Serial, u.Ext, err)
			}
			ids[i] = e.Key.ID
			switch {
			case k.Verified:
				// The registry activates a key with PIV slots only with
				// its escrow stored.
				if _, err := r.admin.PutEscrow(ctx, e.Key.ID, "piv", []byte("sealed"), 0); err != nil {
					r.t.Fatal(err)
				}
				ch, err := r.admin.Challenge(ctx, e.Key.ID, "piv", e.PIV[0].ID)
				if err != nil {
					r.t.Fatal(err)
				}
				v, err := r.admin.VerifyPIV(ctx, ch.Challenge.ID, ed25519.Sign(priv, ch.Challenge.Nonce))
				if err != nil || !v.OK {
					r.t.Fatalf("verifying %s: %v %+v", k.Serial, err, v)
				}
			case k.Status == registry.KeyActive:
				if _, err := r.admin.SetKeyStatus(ctx, e.Key.ID, e.Key.Version, registry.KeyActive, "seeded without proof"); err != nil {
					r.t.Fatal(err)
				}
			}
		}
		for i, k := range u.Keys {
			if k.Status == registry.KeyLost {
				kd, err := r.admin.Key(ctx, ids[i])
				if err != nil {
					r.t.Fatal(err)
				}
				if _, err := r.admin.SetKeyStatus(ctx, ids[i], kd.Version, registry.KeyLost, ""); err != nil {
					r.t.Fatal(err)
				}
			}
		}
		if u.Status != registry.UserActive {
			got, err := r.findUser(u.Ext)
			if err != nil {
				r.t.Fatal(err)
			}
			r.call("PATCH", "/v1/users/"+got.ID, map[string]any{"status": u.Status, "break_glass_reason": "inventory fixture: a user who is not active"}, nil, "If-Match", fmt.Sprintf(`"v%d"`, got.Version))
		}
	}
}

func (r *reg) findUser(ext string) (registry.User, error) {
	after := ""
	for {
		us, next, err := r.admin.Users(context.Background(), after, 1000)
		if err != nil {
			return registry.User{}, err
		}
		for _, u := range us {
			if u.ExternalID == ext {
				return u, nil
			}
		}
		if next == "" {
			return registry.User{}, fmt.Errorf("no user %s", ext)
		}
		after = next
	}
}

// newEnv is a desk on a headless window: admin or helpdesk.
func newEnv(t testing.TB, c *client.Client, role uikit.Role) *uikit.Env {
	t.Helper()
	uitest.HoldUI(t)
	a := test.NewTempApp(t)
	w := test.NewTempWindow(t, nil)
	w.Resize(fyne.NewSize(1280, 800))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &uikit.Env{App: a, Window: w, Ctx: ctx, Role: role,
		Registry: func(context.Context) (*client.Client, error) { return c, nil }}
}

// wait receives from ch, with the UI lock given up so the background work
// can report, or fails after a generous time.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	var v T
	ok := false
	uitest.Unlocked(func() {
		select {
		case v = <-ch:
			ok = true
		case <-time.After(60 * time.Second):
		}
	})
	if !ok {
		t.Fatalf("timed out waiting for %s", what)
	}
	return v
}
