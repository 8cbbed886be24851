package backup_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/app/backup"
	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

var env *enroltest.Env

func TestMain(m *testing.M) { enroltest.Main(m, 2, &env, nil) }

// TestCoverageExportRestore: coverage names a user with no backup key until
// one is enrolled; the organisation's bundle opens only with the helpdesk
// identity and restores into an empty registry whose audit chain then
// verifies with the source's entries kept; the restored registry refuses a
// second restore.
func TestCoverageExportRestore(t *testing.T) {
	ctx := context.Background()
	k0, err := env.Key(ctx, env.Serial(0))
	if err != nil {
		t.Fatal(err)
	}
	opt := enroltest.Options{User: "cyrille-lamarck", Role: registry.RolePrimary, PIVPIN: "246810", FIDOPIN: "fido-2468", Recipients: []string{env.Recipient}}
	if _, err := enroltest.Enrol(ctx, env.Keys, env.Admin, k0, opt); err != nil {
		t.Fatal(err)
	}
	c, err := backup.Coverage(ctx, env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	if c.Uncovered != 1 || c.Users[0].Covered || len(c.Users[0].Missing) == 0 {
		t.Fatalf("coverage with one key: %+v", c)
	}
	k1, _ := env.Key(ctx, env.Serial(1))
	opt.Role = registry.RoleBackup
	if _, err := enroltest.Enrol(ctx, env.Keys, env.Admin, k1, opt); err != nil {
		t.Fatal(err)
	}
	if c, err = backup.Coverage(ctx, env.Admin); err != nil || c.Covered != 1 || c.Uncovered != 0 {
		t.Fatalf("coverage with two keys: %+v %v", c, err)
	}

	var bundle bytes.Buffer
	sum, err := backup.Export(ctx, env.Admin, "", []string{env.Recipient}, &bundle)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Scope != "organisation" || sum.Users != 1 || sum.Keys != 2 || sum.Credentials != 4 || sum.AuditEntries == 0 {
		t.Fatalf("summary: %+v", sum)
	}
	if !strings.HasPrefix(bundle.String(), "-----BEGIN AGE ENCRYPTED FILE-----") || strings.Contains(bundle.String(), "cyrille-lamarck") {
		t.Fatal("the bundle is not an armored age file, or shows a user id in clear")
	}
	other, _, _ := escrow.NewIdentity()
	if _, err := backup.Open(bytes.NewReader(bundle.Bytes()), other); !errors.Is(err, escrow.ErrWrongIdentity) {
		t.Fatalf("another identity: %v", err)
	}

	// A second, empty registry.
	state := filepath.Join(t.TempDir(), "restored")
	tok, err := regtest.Token(env.Bin, state, "admin", "restorer", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := regtest.Start(env.Bin, state, "--practice")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	reg2, err := client.New(p.URL, tok, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer reg2.Close()
	out, err := backup.Restore(ctx, reg2, bytes.NewReader(bundle.Bytes()), env.Identity)
	if err != nil {
		t.Fatal(err)
	}
	if out.Users != 1 || out.Keys != 2 || out.AuditEntries != sum.AuditEntries || out.Rechained != 1 {
		t.Fatalf("restored: %+v", out)
	}
	if o, err := regtest.AuditVerify(env.Bin, state); err != nil {
		t.Fatalf("audit verify of the restored registry: %v: %s", err, o)
	}
	v1, _ := env.Admin.Validity(ctx, "")
	v2, _ := reg2.Validity(ctx, "")
	if len(v1.Credentials) != 4 || len(v2.Credentials) != len(v1.Credentials) {
		t.Fatalf("validity: %d credentials, restored %d", len(v1.Credentials), len(v2.Credentials))
	}
	if cv, err := backup.Coverage(ctx, reg2); err != nil || cv.Covered != 1 {
		t.Fatalf("restored coverage: %+v %v", cv, err)
	}
	// The same bundle again is a replay of the first restore; nothing is
	// restored twice.
	if again, err := backup.Restore(ctx, reg2, bytes.NewReader(bundle.Bytes()), env.Identity); err != nil || again != out {
		t.Fatalf("the same bundle again: %+v, %v; first %+v", again, err, out)
	}
	if us, _, err := reg2.Users(ctx, "", 100); err != nil || len(us) != 1 {
		t.Fatalf("after the replay the registry holds %d users: %v", len(us), err)
	}
	// One user's bundle.
	var ub bytes.Buffer
	us, err := backup.Export(ctx, env.Admin, "cyrille-lamarck", []string{env.Recipient}, &ub)
	if err != nil || us.Scope != "user" || us.Users != 1 || us.AuditEntries != 0 {
		t.Fatalf("user export: %+v %v", us, err)
	}
	// Another bundle into the restored registry is refused.
	if _, err := backup.Restore(ctx, reg2, bytes.NewReader(ub.Bytes()), env.Identity); err == nil || !strings.Contains(err.Error(), "registry_not_empty") {
		t.Fatalf("another bundle into the restored registry: %v", err)
	}
}
