package enrol

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/roster"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/device/virtual"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

var (
	bin      string
	simState string // one for the test binary: libpcsclite reads its socket path once
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "keydesk-enrol-test-")
	if err != nil {
		panic(err)
	}
	simState = d
	regtest.RunTests(m, &bin, func() { os.RemoveAll(d) })
}

// desk is a test desk: two factory-fresh practice keys behind a private
// pcscd, a real registry process trusting the practice roots, settings
// ready to enrol, and the helpdesk identity escrows are sealed to.
type desk struct {
	t        testing.TB
	fleet    *sim.Fleet
	reg      *regtest.Process
	regState string
	cl       *client.Client
	svc      *keys.Service
	set      settings.Settings
	identity string
	data     string
	token    string // the desk's admin token
}

func newDesk(t testing.TB) *desk {
	t.Helper()
	d := &desk{t: t, data: t.TempDir(), regState: t.TempDir()}
	dir := filepath.Join(simState, "sim")
	os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	f, err := sim.Start(ctx, dir, 2, virtual.Version{Major: 5, Minor: 7, Patch: 2})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); f.Stop() })
	os.Setenv("PCSCLITE_CSOCK_NAME", f.Daemon.Socket())
	wctx, done := context.WithTimeout(ctx, 20*time.Second)
	defer done()
	for i := range f.Keys {
		if err := f.Daemon.WaitCard(wctx, i, true); err != nil {
			t.Fatal(err)
		}
	}
	d.fleet = f
	if d.svc, err = keys.New(keys.Config{Practice: true, SimDir: dir, FIDOInfo: func(ctx context.Context, p string) (uint32, device.Version, bool, error) {
		return fidokey.Open(p).Info(ctx)
	}}); err != nil {
		t.Fatal(err)
	}
	tok, err := regtest.Token(bin, d.regState, "admin", "desk", "")
	if err != nil {
		t.Fatal(err)
	}
	d.token = tok
	if d.reg, err = regtest.Start(bin, d.regState, "--practice"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.reg.Stop() })
	if d.cl, err = client.New(d.reg.URL, tok, client.Options{OutboxPath: filepath.Join(d.data, "outbox.db")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cl.Close() })
	id, rcpt, err := escrow.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	d.identity = id
	d.set = settings.Default()
	d.set.RPID = "keydesk.example"
	d.set.Practice = true
	d.set.HelpdeskRecipients = []string{rcpt}
	return d
}

func (d *desk) enroller() *Enroller {
	d.t.Helper()
	e, err := New(Config{Settings: d.set, Keys: d.svc, Registry: d.cl, JournalPath: filepath.Join(d.data, "journal.db")})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { e.Close() })
	return e
}

// ui answers PIN prompts with distinct PINs per key, and records progress.
func testUI(steps *[]Event) UI {
	pin := func(_ context.Context, r PINRequest) (string, error) {
		if r.Kind == FIDO2PIN {
			return "fido-" + strconv.Itoa(int(r.Serial)), nil
		}
		return "p" + strconv.Itoa(int(r.Serial%10000000)), nil
	}
	return UI{
		NewPIN: pin,
		// A resumed enrolment has the same PINs typed again.
		PIN: pin,
		Progress: func(ev Event) {
			if steps != nil {
				*steps = append(*steps, ev)
			}
		},
		Confirm: func(context.Context, string) (bool, error) { return true, nil },
	}
}

var ada = client.EnrolUser{ExternalID: "u1", DisplayName: "Ada Lovelace", Email: "ada@example.org"}

func TestEnrolUserPrimaryThenBackup(t *testing.T) {
	d := newDesk(t)
	e := d.enroller()
	ctx := context.Background()
	// Picked from the registry: a user who is not there is refused.
	if _, err := e.EnrolKey(ctx, Request{User: ada}, testUI(nil)); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("unknown user: %v", err)
	}
	res, err := e.EnrolUser(ctx, Request{User: ada, CreateUser: true}, testUI(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Role != registry.RolePrimary || res[1].Role != registry.RoleBackup || !res[1].Covered || res[0].Covered {
		t.Fatalf("results: %+v %+v", res[0], res[len(res)-1])
	}
	for _, r := range res {
		if r.Status != registry.KeyActive || r.Genuine == "" || r.Timing.Device <= 0 || r.Timing.Keydesk <= 0 {
			t.Fatalf("result %+v", r)
		}
		kd, err := d.cl.Key(ctx, r.KeyID)
		if err != nil {
			t.Fatal(err)
		}
		if len(kd.FIDO2) != 1 || kd.FIDO2[0].CredProtect != 2 || kd.FIDO2[0].RPID != "keydesk.example" || kd.FIDO2[0].Verdict != registry.VerdictGenuine {
			t.Fatalf("fido2 registered: %+v", kd.FIDO2)
		}
		if len(kd.PIV) != 1 || kd.PIV[0].Slot != "9a" || kd.PIV[0].Verdict != registry.VerdictGenuine || len(kd.PIV[0].Certificate) == 0 {
			t.Fatalf("piv registered: %+v", kd.PIV)
		}
		// The escrow opens with the helpdesk identity and holds what the key has.
		blob, err := d.cl.Escrow(ctx, r.KeyID, EscrowKind)
		if err != nil {
			t.Fatal(err)
		}
		sec, err := escrow.Open(blob.Blob, d.identity)
		if err != nil {
			t.Fatal(err)
		}
		k, err := d.svc.Find(ctx, r.Serial)
		if err != nil {
			t.Fatal(err)
		}
		card, _ := d.svc.PIV(k)
		// The PUK is the escrowed one (a wrong PUK would use up a try).
		if err := card.ChangePUK(ctx, sec.PUK, sec.PUK); err != nil {
			t.Fatalf("escrowed PUK: %v", err)
		}
		st, err := card.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.PINDefault || st.PUKDefault || st.MgmtKeyDefault || !st.MgmtKeyProtected || st.PUKRetries != 3 {
			t.Fatalf("piv status after enrolment: %+v", st)
		}
		// The escrowed management key is the key's: it can generate in 9c.
		withMK := pivkey.Open(k.Reader, k.Serial)
		withMK.ManagementKey = sec.ManagementKey
		if _, err := withMK.Generate(ctx, device.Callbacks{}, 0x9c, pivkey.KeySpec{Algorithm: "ECCP256", PINPolicy: "never", TouchPolicy: "never"}); err != nil {
			t.Fatalf("escrowed management key: %v", err)
		}
		fs, err := fidokey.Open(k.FIDOPath).Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !fs.PINSet || fs.MinPINLength < d.set.MinPINLength {
			t.Fatalf("fido2 status: %+v", fs)
		}
	}
	cv, err := d.cl.Coverage(ctx, res[0].UserID)
	if err != nil || !cv.Covered || cv.ActiveKeys != 2 {
		t.Fatalf("coverage: %+v, %v", cv, err)
	}
	// A used key is not fresh, and registered: it is never enrolled again.
	_, err = e.EnrolKey(ctx, Request{User: client.EnrolUser{ExternalID: "u2", DisplayName: "Bob", Email: "bob@example.org"}, CreateUser: true,
		Serial: res[0].Serial}, testUI(nil))
	var re *RegisteredError
	if !errors.As(err, &re) || re.Same {
		t.Fatalf("a key registered to someone else: %v", err)
	}
	if out, err := regtest.AuditVerify(bin, d.regState); err != nil {
		t.Fatalf("audit: %v: %s", err, out)
	}
}

func TestPINPolicyLeavesKeyUntouched(t *testing.T) {
	d := newDesk(t)
	e := d.enroller()
	ui := testUI(nil)
	var problems []string
	ui.NewPIN = func(_ context.Context, r PINRequest) (string, error) {
		problems = append(problems, r.Problem)
		return "short", nil
	}
	_, err := e.EnrolKey(context.Background(), Request{User: ada, CreateUser: true, Serial: sim.FirstSerial}, ui)
	if !errors.Is(err, ErrPINPolicy) || len(problems) != 3 || problems[1] != "the PIN must be at least 8 characters" {
		t.Fatalf("err %v, problems %q", err, problems)
	}
	k, _ := d.svc.Find(context.Background(), sim.FirstSerial)
	if fresh, why, err := e.fresh(context.Background(), k); !fresh {
		t.Fatalf("key changed by a refused PIN: %s%v", why, err)
	}
	if rec, _ := e.j.get(context.Background(), sim.FirstSerial); rec != nil {
		t.Fatalf("journal holds %+v", rec)
	}
}

func TestVirtualKeyRefusedOutsidePractice(t *testing.T) {
	d := newDesk(t)
	d.set.Practice = false
	e := d.enroller()
	_, err := e.EnrolKey(context.Background(), Request{User: ada, CreateUser: true, Serial: sim.FirstSerial}, testUI(nil))
	if !errors.Is(err, ErrNotGenuine) {
		t.Fatalf("virtual key outside practice mode: %v", err)
	}
}

// TestRegistryDownThenResume: the registry dies just before the key is
// registered. Nothing half-written: the key is set up and tested, the
// registration waits in the outbox, the sealed escrow in the journal; the
// error says what to do. Once the registry is back, Resume finishes it and
// the registry holds the key once.
func TestRegistryDownThenResume(t *testing.T) {
	d := newDesk(t)
	e := d.enroller()
	ctx := context.Background()
	ui := testUI(nil)
	ui.Progress = func(ev Event) {
		if ev.Step == StepRegister {
			d.reg.Kill()
		}
	}
	_, err := e.EnrolKey(ctx, Request{User: ada, CreateUser: true, Serial: sim.FirstSerial}, ui)
	var ie *InterruptedError
	if !errors.As(err, &ie) || ie.Stage != StageQueued || !errors.Is(err, client.ErrUnreachable) || !strings.Contains(ie.Hint(), "keydesk enrol --resume --serial 31000001") {
		t.Fatalf("registry down: %v", err)
	}
	un, err := e.Unfinished(ctx)
	if err != nil || len(un) != 1 || un[0].Serial != sim.FirstSerial || len(un[0].Escrow) == 0 {
		t.Fatalf("unfinished: %+v, %v", un, err)
	}
	u, _ := url.Parse(d.reg.URL)
	if d.reg, err = regtest.Start(bin, d.regState, "--practice", "--listen", u.Host); err != nil {
		t.Fatal(err)
	}
	res, err := e.Resume(ctx, sim.FirstSerial, testUI(nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != registry.KeyActive || !res.Resumed {
		t.Fatalf("resumed: %+v", res)
	}
	if _, err := d.cl.Escrow(ctx, res.KeyID, EscrowKind); err != nil {
		t.Fatalf("escrow after resume: %v", err)
	}
	us, _, _ := d.cl.Users(ctx, "", 10)
	if len(us) != 1 {
		t.Fatalf("%d users", len(us))
	}
	ks, _ := d.cl.UserKeys(ctx, us[0].ID)
	if len(ks) != 1 {
		t.Fatalf("the key is registered %d times", len(ks))
	}
	if un, _ := e.Unfinished(ctx); len(un) != 0 {
		t.Fatalf("still unfinished: %+v", un)
	}
}

// TestKeyPulledMidEnrolment: the key leaves while its PIV side is set up.
// Nothing is registered; the error names the stage and says to reset it;
// the journal keeps the sealed escrow so no secret is lost.
func TestKeyPulledMidEnrolment(t *testing.T) {
	d := newDesk(t)
	e := d.enroller()
	ctx := context.Background()
	ui := testUI(nil)
	y := d.fleet.Find(sim.FirstSerial)
	ui.Progress = func(ev Event) {
		if ev.Step == StepCert {
			y.Key.Remove()
		}
	}
	_, err := e.EnrolKey(ctx, Request{User: ada, CreateUser: true, Serial: sim.FirstSerial}, ui)
	var ie *InterruptedError
	if !errors.As(err, &ie) || ie.Stage != StageSealed || !strings.Contains(ie.Hint(), "nothing was registered") {
		t.Fatalf("key pulled: %v", err)
	}
	if _, err := d.cl.KeyBySerial(ctx, strconv.Itoa(sim.FirstSerial)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("registry after a pulled key: %v", err)
	}
	rec, _ := e.j.get(ctx, sim.FirstSerial)
	if rec == nil || len(rec.Escrow) == 0 {
		t.Fatalf("journal: %+v", rec)
	}
	if _, err := escrow.Open(rec.Escrow, d.identity); err != nil {
		t.Fatalf("journalled escrow: %v", err)
	}
	y.Key.Insert()
	// Resuming says the key must be reset; it needs no key for that.
	if _, err := e.Resume(ctx, sim.FirstSerial, testUI(nil)); !errors.As(err, &ie) || ie.Stage != StageSealed {
		t.Fatalf("resuming a half set up key: %v", err)
	}
	if un, _ := e.Unfinished(ctx); len(un) != 1 || un[0].Stage != StageSealed {
		t.Fatalf("unfinished: %+v", un)
	}
	// Once such a key is reset (here: the other key, fresh, with the same
	// journal record), it is enrolled afresh.
	other := uint32(sim.FirstSerial + 1)
	if err := e.j.put(ctx, &Record{Serial: other, ExternalID: "u1", Role: "primary", Stage: StageSealed, Escrow: rec.Escrow}); err != nil {
		t.Fatal(err)
	}
	res, err := e.EnrolKey(ctx, Request{User: ada, CreateUser: true, Serial: other}, testUI(nil))
	if err != nil || res.Status != registry.KeyActive {
		t.Fatalf("enrolling a reset key: %+v, %v", res, err)
	}
}

// TestBatchResumesAfterCrash: a roster with a bad row; the run is cut off
// after the first key (a crash, as far as the batch can tell); the next run
// enrols the rest and nobody twice.
func TestBatchResumesAfterCrash(t *testing.T) {
	d := newDesk(t)
	csv := "external_id,display_name,email,keys\nu1,Ada Lovelace,ada@example.org,2\nu2,Bad,nope,2\n"
	r, err := roster.Parse(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ui := testUI(nil)
	ui.Progress = func(ev Event) {
		if ev.Step == StepDone {
			cancel()
		}
	}
	e := d.enroller()
	rep, err := e.Batch(ctx, r, "b1", ui)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cut-off batch: %v", err)
	}
	e.Close()
	// A new run, as after a restart.
	e = d.enroller()
	rep, err = e.Batch(context.Background(), r, "b1", testUI(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.RowErrors) != 1 || rep.RowErrors[0].Line != 3 || rep.RowErrors[0].Column != "email" {
		t.Fatalf("row errors: %+v", rep.RowErrors)
	}
	if len(rep.Users) != 1 || rep.Users[0].Already != 1 || len(rep.Users[0].Keys) != 1 || !rep.Users[0].Covered || rep.Failed != 0 {
		t.Fatalf("second run: %+v", rep.Users[0])
	}
	// A third run finds nothing to do.
	rep, err = e.Batch(context.Background(), r, "b1", testUI(nil))
	if err != nil || rep.Enrolled != 0 || rep.Users[0].Already != 2 {
		t.Fatalf("third run: %+v, %v", rep, err)
	}
	us, _, _ := d.cl.Users(context.Background(), "", 10)
	ks, _ := d.cl.UserKeys(context.Background(), us[0].ID)
	if len(us) != 1 || len(ks) != 2 {
		t.Fatalf("%d users, %d keys", len(us), len(ks))
	}
}

// TestCSRModeAndForcedPINChange: the 9a certificate is a CSR written for
// the organisation's CA, and the FIDO2 PIN must be changed at first use.
func TestCSRModeAndForcedPINChange(t *testing.T) {
	d := newDesk(t)
	d.set.PIVCertMode = settings.CertCSR
	d.set.CSRDir = filepath.Join(t.TempDir(), "csr")
	d.set.ForcePINChange = true
	d.set.CredProtect = 3
	e := d.enroller()
	ctx := context.Background()
	res, err := e.EnrolKey(ctx, Request{User: ada, CreateUser: true, Serial: sim.FirstSerial}, testUI(nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(res.CSRPath)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("%s is no PEM certificate request", res.CSRPath)
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	if csr.Subject.CommonName != "Ada Lovelace" {
		t.Fatalf("CSR subject %v", csr.Subject)
	}
	kd, err := d.cl.Key(ctx, res.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if len(kd.PIV) != 1 || !bytes.Equal(kd.PIV[0].PublicKey, pub) || len(kd.PIV[0].Certificate) != 0 {
		t.Fatalf("registered 9a: %+v", kd.PIV)
	}
	if kd.FIDO2[0].CredProtect != 3 {
		t.Fatalf("credProtect %d", kd.FIDO2[0].CredProtect)
	}
	k, _ := d.svc.Find(ctx, sim.FirstSerial)
	st, err := fidokey.Open(k.FIDOPath).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.ForcePINChange {
		t.Fatalf("the key does not ask for a new PIN: %+v", st)
	}
	// No certificate was stored, but the key has its CHUID and CCC.
	card, _ := d.svc.PIV(k)
	if ids, err := card.ReadCardIDs(ctx); err != nil || ids.Parsed == nil || ids.CCC == nil {
		t.Fatalf("card identifiers after a CSR-mode enrolment: %+v %v", ids, err)
	}
}

// TestInsertWaitLimit: with Config.InsertWait set, a key asked for by a
// serial that is not attached (and, without a serial, a fresh key when none
// is) is waited for that long only; then the enrolment stops with a
// *NotInsertedError naming the serial, matching keys.ErrNoKey, and nothing
// is journalled or registered. InsertKey is told which key and the limit.
func TestInsertWaitLimit(t *testing.T) {
	d := newDesk(t)
	ctx := context.Background()
	e, err := New(Config{Settings: d.set, Keys: d.svc, Registry: d.cl, JournalPath: filepath.Join(d.data, "journal.db"), InsertWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// Both keys enrolled, so no fresh key is attached.
	if _, err := e.EnrolUser(ctx, Request{User: ada, CreateUser: true}, testUI(nil)); err != nil {
		t.Fatal(err)
	}
	for _, serial := range []uint32{31009999, 0} {
		var asked []InsertRequest
		ui := testUI(nil)
		ui.InsertKey = func(_ context.Context, r InsertRequest) error { asked = append(asked, r); return nil }
		_, err := e.EnrolKey(ctx, Request{User: client.EnrolUser{ExternalID: "u2", DisplayName: "Grace Hopper"}, CreateUser: true, Serial: serial}, ui)
		var ni *NotInsertedError
		if !errors.As(err, &ni) || ni.Serial != serial || ni.Waited != 300*time.Millisecond || !errors.Is(err, keys.ErrNoKey) || ni.Hint() == "" {
			t.Fatalf("serial %d: %v", serial, err)
		}
		if len(asked) != 1 || asked[0].Serial != serial || asked[0].Wait != 300*time.Millisecond {
			t.Fatalf("serial %d: InsertKey asked %+v", serial, asked)
		}
		t.Logf("serial %d: %v; %s", serial, err, ni.Hint())
	}
	if want := "key 31009999 is not attached (waited 300ms)"; (&NotInsertedError{Serial: 31009999, Waited: 300 * time.Millisecond}).Error() != want {
		t.Fatalf("message: want %q", want)
	}
	if u, err := e.FindUser(ctx, "u2"); err == nil && u.ID != "" {
		t.Fatalf("a user was created for an enrolment that never had a key: %+v", u)
	}
	if un, _ := e.Unfinished(ctx); len(un) != 0 {
		t.Fatalf("journal: %+v", un[0])
	}
}
