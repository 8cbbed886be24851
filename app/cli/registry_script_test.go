package cli_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keydesk/keydesk/app/enroltest"
	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/recover"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

// Practice PINs the workflow scenarios enrol keys with.
const (
	scriptPIVPIN  = "246810"
	scriptFIDOPIN = "fido-2468"
	scriptRPID    = "keydesk.localhost" // the settings' default rp id
)

var (
	wfRegistryOnce sync.Once
	wfRegistryBin  string
	wfRegistryErr  error
)

// workflowCmds are the testscript commands of the workflow scenarios:
//
//	registry-process start|audit-verify   a real keydesk-registry process for the script
//	registry-process start-empty|audit-verify-empty   a second, empty one ($REGISTRY2_URL)
//	enrol-practice SERIAL USER ROLE [SET...]   enrol a practice key (as an admin desk would)
//	fido-delete-credential SERIAL      delete the enrolled FIDO2 credential on the key
//	block-fido-pin SERIAL              type wrong FIDO2 PINs until the PIN is blocked
//	plan-migration NAME FROM TO        plan a migration of everyone from key set FROM to TO
//	crash-enrol                        kill keydesk enrol at every crash point and recover (crashpoint_test.go)
//	crash-recover                      the same for keydesk recover fido2-reset
//	crash-piv-pin                      the same for keydesk recover piv-pin
//	crash-lost                         the same for keydesk recover lost --replace
//	crash-restore                      the same for keydesk restore, each into a new empty registry
//	secrets-absent [SECRET...]         no PIN, PUK or management key used in the script (and the
//	                                   given ones) in the registries' state, outboxes, settings or logs
var workflowCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"registry-process":       cmdWorkflowRegistry,
	"enrol-practice":         cmdEnrolPractice,
	"fido-delete-credential": cmdFIDODelete,
	"block-fido-pin":         cmdBlockFIDOPIN,
	"plan-migration":         cmdPlanMigration,
	"secrets-absent":         cmdSecretsAbsent,
	"crash-enrol":            cmdCrashEnrol,
	"crash-recover":          cmdCrashRecover,
	"crash-piv-pin":          cmdCrashPIVPIN,
	"crash-lost":             cmdCrashLost,
	"crash-restore":          cmdCrashRestore,
}

// wfRegistry is one script's registry.
type wfRegistry struct {
	p     *regtest.Process
	admin *client.Client
	token string
	// secrets are the PUKs enrol-practice generated.
	secrets []string
}

var (
	wfRegMu      sync.Mutex
	wfRegistries = map[*testscript.TestScript]*wfRegistry{}
)

func cmdWorkflowRegistry(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: registry-process start|audit-verify|start-empty|audit-verify-empty")
	}
	state := ts.MkAbs("registry-state")
	switch args[0] {
	case "start":
		wfRegistryOnce.Do(func() {
			dir, err := os.MkdirTemp("", "keydesk-registry-bin-")
			if err != nil {
				wfRegistryErr = err
				return
			}
			wfRegistryBin, wfRegistryErr = regtest.Build(dir)
		})
		ts.Check(wfRegistryErr)
		admin, err := regtest.Token(wfRegistryBin, state, "admin", "first-admin", "")
		ts.Check(err)
		helpdesk, err := regtest.Token(wfRegistryBin, state, "helpdesk", "helpdesk-ana", "")
		ts.Check(err)
		p, err := regtest.Start(wfRegistryBin, state, "--practice")
		ts.Check(err)
		ac, err := client.New(p.URL, admin, client.Options{OutboxPath: ts.MkAbs("admin-outbox.db")})
		if err != nil {
			p.Stop()
			ts.Fatalf("%v", err)
		}
		wfRegMu.Lock()
		wfRegistries[ts] = &wfRegistry{p: p, admin: ac, token: admin}
		wfRegMu.Unlock()
		ts.Defer(func() { ac.Close(); p.Stop() })
		// Tokens go to files the script pipes to 'keydesk login' on stdin.
		ts.Check(os.WriteFile(ts.MkAbs("admin.token"), []byte(admin+"\n"), 0o600))
		ts.Check(os.WriteFile(ts.MkAbs("helpdesk.token"), []byte(helpdesk+"\n"), 0o600))
		id, rcpt, err := escrow.NewIdentity()
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs("helpdesk.identity"), []byte(id+"\n"), 0o600))
		ts.Check(os.WriteFile(ts.MkAbs("helpdesk.recipient"), []byte(rcpt), 0o600))
		ts.Setenv("REGISTRY_URL", p.URL)
		ts.Setenv("HELPDESK_RECIPIENT", rcpt)
		// Each script keeps its own settings, outbox and keyring entries.
		ts.Setenv("XDG_CONFIG_HOME", ts.MkAbs("config"))
		// The desk seals escrow to the helpdesk (enrolling a replacement).
		st := settings.Default()
		st.HelpdeskRecipients = []string{rcpt}
		ts.Check(settings.Save(filepath.Join(ts.MkAbs("config"), "keydesk", "settings.json"), st))
		ts.Setenv("XDG_DATA_HOME", ts.MkAbs("data"))
		// The keyring is the session's real Secret Service
		// (packaging/with-services.sh), reached over D-Bus.
		ts.Setenv("DBUS_SESSION_BUS_ADDRESS", os.Getenv("DBUS_SESSION_BUS_ADDRESS"))
		ts.Setenv("KEYDESK_KEYRING_SERVICE", "keydesk-script-"+filepath.Base(ts.Getenv("WORK")))
	case "start-empty":
		// A second registry with only an admin token, to restore into.
		state2 := ts.MkAbs("registry2-state")
		admin, err := regtest.Token(wfRegistryBin, state2, "admin", "restorer", "")
		ts.Check(err)
		p, err := regtest.Start(wfRegistryBin, state2, "--practice")
		ts.Check(err)
		ts.Defer(p.Stop)
		ts.Check(os.WriteFile(ts.MkAbs("admin2.token"), []byte(admin+"\n"), 0o600))
		ts.Setenv("REGISTRY2_URL", p.URL)
	case "audit-verify", "audit-verify-empty":
		if args[0] == "audit-verify-empty" {
			state = ts.MkAbs("registry2-state")
		}
		out, err := regtest.AuditVerify(wfRegistryBin, state)
		ts.Logf("%s", out)
		if (err != nil) != neg {
			ts.Fatalf("audit verify: %v: %s", err, out)
		}
	default:
		ts.Fatalf("unknown registry-process command %q", args[0])
	}
}

func wfReg(ts *testscript.TestScript) *wfRegistry {
	wfRegMu.Lock()
	defer wfRegMu.Unlock()
	r := wfRegistries[ts]
	if r == nil {
		ts.Fatalf("no registry: run 'registry-process start' first")
	}
	return r
}

func practiceKey(ts *testscript.TestScript, serial string) (*keys.Service, device.Key) {
	n, err := strconv.ParseUint(serial, 10, 32)
	ts.Check(err)
	svc, err := keys.New(keys.Config{Practice: true, SimDir: filepath.Join(ts.Getenv("XDG_STATE_HOME"), "keydesk", "sim"), FIDOInfo: enroltest.FIDOInfo})
	ts.Check(err)
	k, err := svc.Find(context.Background(), uint32(n))
	ts.Check(err)
	return svc, k
}

func cmdEnrolPractice(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: enrol-practice SERIAL USER ROLE [KEYSET...]")
	}
	r := wfReg(ts)
	svc, k := practiceKey(ts, args[0])
	rcpt, err := os.ReadFile(ts.MkAbs("helpdesk.recipient"))
	ts.Check(err)
	e, err := enroltest.Enrol(context.Background(), svc, r.admin, k, enroltest.Options{User: args[1], Role: registry.KeyRole(args[2]), RPID: scriptRPID,
		PIVPIN: scriptPIVPIN, FIDOPIN: scriptFIDOPIN, Recipients: []string{string(rcpt)}, KeySets: args[3:]})
	ts.Check(err)
	wfRegMu.Lock()
	r.secrets = append(r.secrets, e.PUK)
	wfRegMu.Unlock()
	fmt.Fprintf(ts.Stdout(), "enrolled key %d for %s (%s, %s)\n", k.Serial, e.User.ExternalID, e.Key.Role, e.Key.Status)
}

func cmdFIDODelete(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: fido-delete-credential SERIAL")
	}
	r := wfReg(ts)
	_, k := practiceKey(ts, args[0])
	kd, err := r.admin.KeyBySerial(context.Background(), args[0])
	ts.Check(err)
	cb := device.Callbacks{PIN: func(context.Context, string) (string, error) { return scriptFIDOPIN, nil }}
	for _, c := range kd.FIDO2 {
		ts.Check(fidokey.Open(k.FIDOPath).DeleteCredential(context.Background(), cb, c.CredentialID))
	}
}

func cmdBlockFIDOPIN(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: block-fido-pin SERIAL")
	}
	ctx := context.Background()
	_, k := practiceKey(ts, args[0])
	dev := fidokey.Open(k.FIDOPath)
	for i := 0; i < 20; i++ {
		err := dev.ChangePIN(ctx, "not-the-pin", "fido-0000")
		switch {
		case err == nil:
			ts.Fatalf("a wrong FIDO2 PIN was accepted")
		case errors.Is(err, device.ErrPINAuthBlocked):
			// Three wrong in a row: the key wants to be replugged.
			var out strings.Builder
			ts.Check(simPowerCycle(ts, args[0], &out))
		case errors.Is(err, device.ErrPINBlocked):
			// The person's key is whole again before they reach the desk.
			svc, _ := practiceKey(ts, args[0])
			_, err := recover.WaitWhole(ctx, svc, k.Serial, true, true, 15*time.Second)
			ts.Check(err)
			return
		}
	}
	ts.Fatalf("the FIDO2 PIN did not block")
}

func simPowerCycle(ts *testscript.TestScript, serial string, out *strings.Builder) error {
	return sim.Main(context.Background(), []string{"power-cycle", serial, "--state", filepath.Join(ts.Getenv("XDG_STATE_HOME"), "keydesk", "sim")}, out, out)
}

func cmdPlanMigration(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: plan-migration NAME FROM TO")
	}
	r := wfReg(ts)
	us, _, err := r.admin.Users(context.Background(), "", 1000)
	ts.Check(err)
	var ids []string
	for _, u := range us {
		ids = append(ids, u.ID)
	}
	env := enroltest.Env{Registry: r.p, AdminToken: r.token}
	ts.Check(env.PlanMigration(args[0], args[1], args[2], ids...))
}

func cmdSecretsAbsent(ts *testscript.TestScript, neg bool, args []string) {
	r := wfReg(ts)
	wfRegMu.Lock()
	want := append([]string{scriptPIVPIN, scriptFIDOPIN, hex.EncodeToString(pivkey.DefaultManagementKey)}, r.secrets...)
	wfRegMu.Unlock()
	want = append(want, args...)
	// What keydesk and the registries wrote: their state, databases,
	// outboxes, journals, settings and logs. The script's own input files
	// (which hold the PINs typed on stdin) are not theirs.
	n := 0
	for _, dir := range []string{"registry-state", "registry2-state", "config", "data"} {
		filepath.WalkDir(ts.MkAbs(dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(p)
			ts.Check(err)
			n++
			for _, w := range want {
				if bytes.Contains(b, []byte(w)) || bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(w))) {
					ts.Fatalf("%s holds a secret the script used (%d characters)", p, len(w))
				}
			}
			return nil
		})
	}
	if n == 0 {
		ts.Fatalf("no files to search")
	}
	fmt.Fprintf(ts.Stdout(), "searched %d files for %d secrets: none found\n", n, len(want))
}
