package verify_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/verify"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

var env *enroltest.Env

func TestMain(m *testing.M) { enroltest.Main(m, 2, &env, nil) }

func pins(piv string) device.Callbacks {
	return device.Callbacks{PIN: func(_ context.Context, what string) (string, error) { return piv, nil }}
}

func dump(t *testing.T, r *verify.Report) string {
	var b strings.Builder
	for _, c := range r.Checks {
		b.WriteString(string(c.Status) + " " + c.Name + ": " + c.Detail + c.Cause + " | " + c.Next + " | " + c.Mismatch + "\n")
	}
	return b.String()
}

// TestVerifyBeforeMigration: two enrolled keys pass every check; planning
// a migration to a key set they are not in fails the migration check as a
// key that works but that the registry will not accept; deleting one key's
// FIDO2 credential on the key names that cause, as the registry expecting a
// key that fails.
func TestVerifyBeforeMigration(t *testing.T) {
	ctx := context.Background()
	opt := enroltest.Options{User: "ada", PIVPIN: "246810", FIDOPIN: "fido-2468", Recipients: []string{env.Recipient}, KeySets: []string{"gen5"}}
	var enrolled []enroltest.Enrolled
	for i, role := range []string{"primary", "backup"} {
		k, err := env.Key(ctx, env.Serial(i))
		if err != nil {
			t.Fatal(err)
		}
		opt.Role = registryRole(role)
		e, err := enroltest.Enrol(ctx, env.Keys, env.Admin, k, opt)
		if err != nil {
			t.Fatalf("enrolling key %d: %v", k.Serial, err)
		}
		enrolled = append(enrolled, e)
	}
	run := func(i int, user string) *verify.Report {
		t.Helper()
		k, err := env.Key(ctx, env.Serial(i))
		if err != nil {
			t.Fatal(err)
		}
		r, err := verify.Run(ctx, k, verify.Options{Registry: env.Helpdesk, Keys: env.Keys, User: user, Callbacks: pins("246810")})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := run(0, "ada")
	if !r.OK || len(r.Checks) != 7 {
		t.Fatalf("freshly enrolled key:\n%s", dump(t, r))
	}
	for _, c := range r.Checks {
		if c.Status != verify.Pass {
			t.Fatalf("check %s not passed:\n%s", c.Name, dump(t, r))
		}
	}
	if r.ExternalID != "ada" || r.KeyID != enrolled[0].Key.ID {
		t.Fatalf("report names %q %q", r.ExternalID, r.KeyID)
	}
	// The engineer verifies with their own (self) token: everything but the
	// migration plans, which only staff may read.
	selfTok, err := regtest.Token(env.Bin, env.State, "self", "ada-laptop", enrolled[0].User.ID)
	if err != nil {
		t.Fatal(err)
	}
	selfReg, err := client.New(env.Registry.URL, selfTok, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer selfReg.Close()
	k0, _ := env.Key(ctx, env.Serial(0))
	sr, err := verify.Run(ctx, k0, verify.Options{Registry: selfReg, Keys: env.Keys, User: "ada", Callbacks: pins("246810")})
	if err != nil {
		t.Fatal(err)
	}
	if !sr.OK || sr.Check(verify.CheckSignature).Status != verify.Pass || sr.Check(verify.CheckMigration).Status != verify.Skip {
		t.Fatalf("self token:\n%s", dump(t, sr))
	}

	// Grace's self token on Ada's key: not listed under her account.
	var grace registry.User
	if err := env.AdminCall("POST", "/v1/users", map[string]string{"external_id": "grace"}, &grace); err != nil {
		t.Fatal(err)
	}
	graceTok, err := regtest.Token(env.Bin, env.State, "self", "grace-laptop", grace.ID)
	if err != nil {
		t.Fatal(err)
	}
	graceReg, err := client.New(env.Registry.URL, graceTok, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer graceReg.Close()
	gr, err := verify.Run(ctx, k0, verify.Options{Registry: graceReg, Keys: env.Keys, Callbacks: pins("246810")})
	if err != nil {
		t.Fatal(err)
	}
	if c := gr.Check(verify.CheckRegistered); gr.OK || c.Status != verify.Fail || !strings.Contains(c.Cause, "under your account") || c.Mismatch != verify.RegistryDisagrees {
		t.Fatalf("another user's self token:\n%s", dump(t, gr))
	}

	// Someone else's key.
	if r := run(0, "grace"); r.OK || r.Check(verify.CheckRegistered).Status != verify.Fail {
		t.Fatalf("key verified for the wrong user:\n%s", dump(t, r))
	}

	if err := env.PlanMigration("to-gen6", "gen5", "gen6", enrolled[0].User.ID); err != nil {
		t.Fatal(err)
	}
	r = run(0, "")
	c := r.Check(verify.CheckMigration)
	if r.OK || c.Status != verify.Fail || c.Mismatch != verify.RegistryDisagrees || !strings.Contains(c.Cause, `"gen6"`) {
		t.Fatalf("key outside the migration's target set:\n%s", dump(t, r))
	}
	if s := r.Check(verify.CheckSignature); s.Status != verify.Pass {
		t.Fatalf("signature:\n%s", dump(t, r))
	}

	// Break key 1: delete its FIDO2 credential on the key.
	k1, _ := env.Key(ctx, env.Serial(1))
	dev := fidokey.Open(k1.FIDOPath)
	fcb := device.Callbacks{PIN: func(context.Context, string) (string, error) { return "fido-2468", nil }}
	if err := dev.DeleteCredential(ctx, fcb, enrolled[1].FIDO2[0].CredentialID); err != nil {
		t.Fatal(err)
	}
	r = run(1, "ada")
	p := r.Check(verify.CheckPresent)
	if r.OK || p.Status != verify.Fail || p.Mismatch != verify.KeyDisagrees || !strings.Contains(p.Cause, "FIDO2 credential") || !strings.Contains(p.Cause, "not on the key") {
		t.Fatalf("broken key:\n%s", dump(t, r))
	}
	if s := r.Check(verify.CheckSignature); s.Status != verify.Fail || !strings.Contains(s.Cause, "FIDO2") || strings.Contains(s.Cause, "PIV") {
		t.Fatalf("broken key's signatures:\n%s", dump(t, r))
	}
	t.Logf("broken key report:\n%s", dump(t, r))
}

func registryRole(s string) registry.KeyRole { return registry.KeyRole(s) }
