package recover_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/recover"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/regtest"
)

var env *enroltest.Env

func TestMain(m *testing.M) { enroltest.Main(m, 2, &env, nil) }

func key(t *testing.T, i int) device.Key {
	t.Helper()
	k, err := env.Key(context.Background(), env.Serial(i))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func auditHas(t *testing.T, action, want string) {
	t.Helper()
	var out struct {
		Entries []struct {
			Actor   string `json:"actor"`
			Action  string `json:"action"`
			Payload any    `json:"payload"`
		} `json:"entries"`
	}
	if err := env.AdminCall("GET", "/v1/audit?action="+action, nil, &out); err != nil {
		t.Fatal(err)
	}
	for _, e := range out.Entries {
		if e.Actor == "helpdesk:desk-1" {
			return
		}
	}
	t.Fatalf("no %s audit entry by the helpdesk: %+v", action, out)
}

// TestHelpdeskRecoveries, on one enrolled key: a blocked PIV PIN unblocked
// with the escrowed PUK; a blocked FIDO2 PIN recovered by a confirmed reset
// whose new credential replaces the old one in one registry change set; the
// key lost, refused as the user's last key until a break-glass reason is
// given, with a temporary access pass; a replacement enrolled with
// app/enrol on the other key. Each step is audited under the helpdesk's
// token and the audit chain verifies.
func TestHelpdeskRecoveries(t *testing.T) {
	ctx := context.Background()
	var enrolled []enroltest.Enrolled
	for i, role := range []registry.KeyRole{registry.RolePrimary} {
		e, err := enroltest.Enrol(ctx, env.Keys, env.Admin, key(t, i), enroltest.Options{User: "bob", Role: role, PIVPIN: "135790", FIDOPIN: "fido-1357", Recipients: []string{env.Recipient}})
		if err != nil {
			t.Fatal(err)
		}
		enrolled = append(enrolled, e)
	}
	confirmed := 0
	opt := recover.Options{Registry: env.Helpdesk, Keys: env.Keys,
		Identity: func() (string, error) { return env.Identity, nil },
		Confirm:  func(context.Context, string) (bool, error) { confirmed++; return true, nil },
		Callbacks: device.Callbacks{Reinsert: func(context.Context) error {
			env.Fleet.Keys[0].Key.PowerCycle()
			return nil
		}}}

	// PIV PIN blocked.
	card, _ := env.Keys.PIV(key(t, 0))
	for i := 0; i < 3; i++ {
		card.ChangePIN(ctx, "000000", "111111")
	}
	d, err := recover.Diagnose(ctx, key(t, 0), opt)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Has(recover.PIVPINBlocked) || d.User.ExternalID != "bob" || len(d.UserKeys) != 1 {
		t.Fatalf("diagnosis: %+v", d)
	}
	// A new PIN the key would refuse, or the factory PIN, ends the unblock
	// before the escrow is read: nothing is opened, nothing audited.
	opened := auditCount(t, "recovery.escrow_opened")
	for _, bad := range []string{"13579", "123456789", "123456"} {
		if err := recover.UnblockPIVPIN(ctx, key(t, 0), bad, opt); !errors.Is(err, recover.ErrPIVPINRule) {
			t.Fatalf("new PIN of %d characters: %v", len(bad), err)
		}
	}
	if n := auditCount(t, "recovery.escrow_opened"); n != opened {
		t.Fatalf("refused unblocks opened the escrow: %d escrow_opened entries, %d before", n, opened)
	}
	// Not attached: the registry's side only, one step per problem.
	if rd, err := recover.Diagnose(ctx, device.Key{Serial: env.Serial(0)}, opt); err != nil || rd.PIV != nil || rd.FIDO != nil || len(rd.Steps) != len(rd.Problems) {
		t.Fatalf("diagnosis of a key not attached: %+v, %v", rd, err)
	}
	wrong := opt
	other, _, err := escrow.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	wrong.Identity = func() (string, error) { return other, nil }
	if err := recover.UnblockPIVPIN(ctx, key(t, 0), "246802", wrong); err == nil || !strings.Contains(err.Error(), "cannot open") {
		t.Fatalf("another identity opened the escrow: %v", err)
	}
	if err := recover.UnblockPIVPIN(ctx, key(t, 0), "246802", opt); err != nil {
		t.Fatal(err)
	}
	if err := card.ChangePIN(ctx, "246802", "135790"); err != nil {
		t.Fatalf("the unblocked PIN does not work: %v", err)
	}
	auditHas(t, "recovery.escrow_opened", "")
	auditHas(t, "recovery.piv_pin_unblocked", "")

	// FIDO2 PIN blocked: 8 wrong PINs, reinserting after every 3.
	dev := fidokey.Open(key(t, 0).FIDOPath)
	for i := 0; i < 8; i++ {
		err := dev.ChangePIN(ctx, "wrong-pin", "fido-9999")
		if errors.Is(err, device.ErrPINAuthBlocked) {
			env.Fleet.Keys[0].Key.PowerCycle()
			i--
			continue
		}
		if err == nil {
			t.Fatal("a wrong PIN was accepted")
		}
	}
	d, err = recover.Diagnose(ctx, key(t, 0), opt)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Has(recover.FIDO2PINBlocked) {
		t.Fatalf("diagnosis after blocking the FIDO2 PIN: %+v", d.Problems)
	}
	pol := recover.FIDO2Policy{RPID: enroltest.RPID, CredProtect: 2, Discoverable: true}
	no := opt
	no.Confirm = func(context.Context, string) (bool, error) { return false, nil }
	if _, err := recover.ResetFIDO2(ctx, key(t, 0), "fido-2468", pol, no); !errors.Is(err, recover.ErrCanceled) {
		t.Fatalf("unconfirmed reset: %v", err)
	}
	res, err := recover.ResetFIDO2(ctx, key(t, 0), "fido-2468", pol, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Revoked) != 1 || res.Revoked[0] != enrolled[0].FIDO2[0].ID || !res.Verified || confirmed != 1 {
		t.Fatalf("reset: %+v (confirmed %d)", res, confirmed)
	}
	kd, err := env.Helpdesk.Key(ctx, enrolled[0].Key.ID)
	if err != nil || len(kd.FIDO2) != 1 || kd.FIDO2[0].ID != res.New.ID || kd.Status != registry.KeyActive {
		t.Fatalf("key after reset: %+v %v", kd, err)
	}
	auditHas(t, "key.fido2_reset", "")

	// PIV PIN and PUK both blocked: a step for each problem, in order.
	k0, err := recover.WaitWhole(ctx, env.Keys, env.Serial(0), true, true, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	card, _ = env.Keys.PIV(k0)
	for i := 0; i < 3; i++ {
		card.ChangePIN(ctx, "000000", "111111")
		card.UnblockPIN(ctx, "00000000", "111111")
	}
	if st, err := card.Status(ctx); err != nil || st.PINRetries != 0 || st.PUKRetries != 0 {
		t.Fatalf("PIN and PUK not blocked: %+v, %v", st, err)
	}
	d, err = recover.Diagnose(ctx, k0, opt)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Has(recover.PIVPINBlocked) || !d.Has(recover.PIVPUKBlocked) || len(d.Steps) != len(d.Problems) {
		t.Fatalf("PIN and PUK blocked: problems %v, steps %q", d.Problems, d.Steps)
	}

	// The key is lost: it is bob's last key, so it needs break glass.
	serial0 := strconv.FormatUint(uint64(env.Serial(0)), 10)
	if _, err := recover.MarkLost(ctx, env.Helpdesk, serial0, recover.LostOptions{}); !errors.Is(err, registry.ErrLastKey) {
		t.Fatalf("last key marked lost without break glass: %v", err)
	}
	lost, err := recover.MarkLost(ctx, env.Helpdesk, serial0, recover.LostOptions{BreakGlass: "key stolen, ticket 7", PassValidity: "8h"})
	if err != nil {
		t.Fatal(err)
	}
	if lost.Key.Status != registry.KeyLost || lost.Pass == "" || lost.ActiveKeys != 0 || lost.User.ExternalID != "bob" {
		t.Fatalf("lost: %+v", lost)
	}
	auditHas(t, "key.break_glass", "")

	// A replacement, enrolled with app/enrol on the other (fresh) key.
	st := settings.Default()
	st.Practice, st.RPID, st.HelpdeskRecipients = true, enroltest.RPID, []string{env.Recipient}
	st.RegistryURL = env.Registry.URL
	en, err := enrol.New(enrol.Config{Settings: st, Keys: env.Keys, Registry: env.Helpdesk, JournalPath: filepath.Join(t.TempDir(), "journal.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer en.Close()
	// The registry process is SIGKILLed as the replacement is being
	// registered and restarted on the same state and port when the
	// enrolment says it waits: the replacement rides it out, as keydesk
	// enrol --user does.
	killed, waited := false, false
	ui := enrol.UI{NewPIN: func(_ context.Context, r enrol.PINRequest) (string, error) {
		if r.Kind == enrol.PIVPIN {
			return "97531864", nil
		}
		return "fido-pin-97531", nil
	}, Progress: func(ev enrol.Event) {
		switch {
		case ev.Step == enrol.StepRegister && !killed:
			killed = true
			env.Registry.Kill()
		case ev.Step == enrol.StepRegistryWait && killed && !waited:
			waited = true
			u, _ := url.Parse(env.Registry.URL)
			p, err := regtest.Start(env.Bin, env.State, "--practice", "--listen", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			env.Registry = p
		}
	}}
	res2, err := recover.Replace(ctx, en, lost, env.Serial(1), ui)
	if err != nil {
		t.Fatal(err)
	}
	if !killed || !waited || res2.Status != registry.KeyActive || res2.Role != registry.RolePrimary || res2.ExternalID != "bob" || !res2.PIVProof {
		t.Fatalf("replacement (registry killed %v, waited for %v): %+v", killed, waited, res2)
	}
	var av struct {
		OK bool `json:"ok"`
	}
	if err := env.AdminCall("GET", "/v1/audit/verify", nil, &av); err != nil || !av.OK {
		t.Fatalf("audit verify: %+v %v", av, err)
	}

	// bob is suspended (his replacement holds valid credentials, so that
	// is break glass); his replacement is then lost: it is marked, and no
	// pass is issued for a person who is not active.
	suspendUser(t, lost.User.ID, "leave of absence")
	serial1 := strconv.FormatUint(uint64(env.Serial(1)), 10)
	again, err := recover.MarkLost(ctx, env.Helpdesk, serial1, recover.LostOptions{PassValidity: "8h"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Key.Status != registry.KeyLost || again.Pass != "" || again.NoPass != "bob is suspended" {
		t.Fatalf("lost key of a suspended user: %+v", again)
	}
}

// auditCount is how many audit entries with action the registry holds.
func auditCount(t *testing.T, action string) int {
	t.Helper()
	var out struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := env.AdminCall("GET", "/v1/audit?limit=1000&action="+action, nil, &out); err != nil {
		t.Fatal(err)
	}
	return len(out.Entries)
}

// suspendUser suspends user id through the registry's API, with a
// break-glass reason.
func suspendUser(t *testing.T, id, reason string) {
	t.Helper()
	u, err := env.Admin.User(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"status": "suspended", "break_glass_reason": reason})
	req, _ := http.NewRequest("PATCH", env.Registry.URL+"/v1/users/"+id, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+env.AdminToken)
	req.Header.Set("Idempotency-Key", "suspend-"+id)
	req.Header.Set("If-Match", fmt.Sprintf(`"v%d"`, u.Version))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(res.Body)
		t.Fatalf("suspending %s: %d %s", id, res.StatusCode, raw)
	}
}
