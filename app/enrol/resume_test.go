package enrol

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/idp/idptest"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

// TestResumeMakesTheSameChecks: an enrolment stopped by a registry outage
// (SIGKILL of the registry process) and resumed passes what a fresh one
// passes. With the PIN-change policy on and certificates by CSR, the
// registry is killed as registration begins; the CSR written at enrolment
// is lost. A resume that cannot ask for the PINs registers the key and
// stores its escrow but leaves it pending, with no proof sent and the
// reason journalled. A resume with the PINs typed again makes the PIV and
// FIDO2 proofs (the registry's audit log holds an accepted PIV
// verification of the key), tells the key to demand a new FIDO2 PIN (its
// FIDO2 state says so), writes the CSR again, names the attestation root,
// and says what it did not do again, in the result and in the journal.
func TestResumeMakesTheSameChecks(t *testing.T) {
	d := newDesk(t)
	d.set.ForcePINChange = true
	d.set.PIVCertMode = settings.CertCSR
	d.set.CSRDir = filepath.Join(d.data, "csr")
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
	if !errors.As(err, &ie) || ie.Stage != StageQueued {
		t.Fatalf("registry down: %v", err)
	}
	csrs, _ := filepath.Glob(filepath.Join(d.set.CSRDir, "*.csr.pem"))
	if len(csrs) != 1 {
		t.Fatalf("CSRs written at enrolment: %v", csrs)
	}
	if err := os.Remove(csrs[0]); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(d.reg.URL)
	if d.reg, err = regtest.Start(bin, d.regState, "--practice", "--listen", u.Host); err != nil {
		t.Fatal(err)
	}
	k, err := d.svc.Find(ctx, sim.FirstSerial)
	if err != nil {
		t.Fatal(err)
	}
	forced := func() bool {
		t.Helper()
		st, err := fidokey.Open(k.FIDOPath).Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.ForcePINChange
	}

	// No way to ask for the PINs: registered and escrowed, never active.
	noPIN := testUI(nil)
	noPIN.PIN = nil
	if _, err := e.Resume(ctx, sim.FirstSerial, noPIN); !errors.Is(err, ErrProofNeedsPIN) || !errors.As(err, &ie) || ie.Stage != StageEscrowed {
		t.Fatalf("resume without PINs: %v", err)
	}
	kd, err := d.cl.KeyBySerial(ctx, "31000001")
	if err != nil || kd.Status != registry.KeyPending {
		t.Fatalf("after a resume without PINs the key is %s (%v), want pending", kd.Status, err)
	}
	if n := pivProofs(t, d.cl, kd.ID); n != 0 || forced() {
		t.Fatalf("after a resume without PINs: %d PIV proofs, PIN change forced %v", n, forced())
	}
	if rec, _ := e.j.get(ctx, sim.FirstSerial); rec == nil || rec.Stage != StageEscrowed || rec.Error == "" {
		t.Fatalf("journal after a resume without PINs: %+v", rec)
	}

	res, err := e.Resume(ctx, sim.FirstSerial, testUI(nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != registry.KeyActive || !res.Resumed || !res.PIVProof || !res.FIDO2Proof || res.PINChange != PINChangeForced ||
		res.Genuine == "" || res.CSRPath == "" || len(res.NotRedone) == 0 {
		t.Fatalf("resumed: %+v", res)
	}
	if _, err := os.Stat(res.CSRPath); err != nil {
		t.Fatalf("the CSR written again: %v", err)
	}
	if n := pivProofs(t, d.cl, res.KeyID); n != 1 {
		t.Fatalf("%d accepted PIV verifications of the key in the registry's audit log, want 1", n)
	}
	if !forced() {
		t.Fatal("the resumed key does not demand a new FIDO2 PIN")
	}
	// The journal keeps the checks: asking again reports them.
	again, err := e.Resume(ctx, sim.FirstSerial, testUI(nil))
	if err != nil || !again.PIVProof || again.PINChange != PINChangeForced || len(again.NotRedone) != len(res.NotRedone) || again.Genuine != res.Genuine {
		t.Fatalf("the journal's record of the checks: %+v, %v", again, err)
	}
}

// TestResumeMakesProviderCredentials: an identity provider that hands out
// creation options gets a credential made on the key by a resumed
// enrolment, as by a fresh one. The provider is a real HTTP server
// (idptest) that checks the credential answers its options; the registry
// process is killed as registration begins and restarted; the resume,
// with the PINs typed again, registers the key with the provider once.
func TestResumeMakesProviderCredentials(t *testing.T) {
	d := newDesk(t)
	s := idptest.Start()
	defer s.Close()
	s.SetOptions(&idp.CreationOptions{RPID: "login.example", RPName: "login.example", UserID: []byte("user-handle-u1"), UserName: "ada@login.example",
		Challenge: []byte("a challenge from login.example"), ResidentKey: "required", UserVerification: "required", CredProtect: 2})
	orch, err := idp.OpenDesk([]idp.Config{s.Config("login")}, nil, d.cl, filepath.Join(d.data, "idp-outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Settings: d.set, Keys: d.svc, Registry: d.cl, JournalPath: filepath.Join(d.data, "journal.db"), IDP: orch})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	ui := testUI(nil)
	ui.Progress = func(ev Event) {
		if ev.Step == StepRegister {
			d.reg.Kill()
		}
	}
	_, err = e.EnrolKey(ctx, Request{User: ada, CreateUser: true, Serial: sim.FirstSerial}, ui)
	var ie *InterruptedError
	if !errors.As(err, &ie) || ie.Stage != StageQueued {
		t.Fatalf("registry down: %v", err)
	}
	u, _ := url.Parse(d.reg.URL)
	if d.reg, err = regtest.Start(bin, d.regState, "--practice", "--listen", u.Host); err != nil {
		t.Fatal(err)
	}
	res, err := e.Resume(ctx, sim.FirstSerial, testUI(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Providers) != 1 || res.Providers[0].State != idp.IntentDone {
		t.Fatalf("providers after resume: %+v", res.Providers)
	}
	ms := s.Methods(ada.ExternalID)
	if len(ms) != 1 || len(ms[0].ClientDataJSON) == 0 || s.Writes() != 1 {
		t.Fatalf("the provider holds %d methods after %d writes: %+v", len(ms), s.Writes(), ms)
	}
}

// pivProofs counts the accepted PIV verifications of key keyID in the
// registry's audit log.
func pivProofs(t *testing.T, c *client.Client, keyID string) int {
	t.Helper()
	n := 0
	q := client.AuditQuery{Action: "verification", Limit: 1000}
	for {
		p, err := c.Audit(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range p.Entries {
			var v registry.Verification
			if err := json.Unmarshal(en.Payload, &v); err != nil {
				t.Fatal(err)
			}
			if v.KeyID == keyID && v.Kind == "piv" && v.OK {
				n++
			}
		}
		if p.Next == 0 {
			return n
		}
		q.After = p.Next
	}
}

// TestJournalGainsChecks: a journal written before checks were kept
// (no checks column) opens, keeps its records, and then keeps checks.
func TestJournalGainsChecks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "journal.db")
	db, err := sql.Open("sqlite", "file:"+p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE enrolments (serial INTEGER PRIMARY KEY, external_id TEXT NOT NULL, role TEXT NOT NULL,
		batch TEXT NOT NULL DEFAULT '', stage TEXT NOT NULL, request BLOB, escrow BLOB, key_id TEXT NOT NULL DEFAULT '',
		outbox_seq INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '', updated_at INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO enrolments (serial, external_id, role, stage, updated_at) VALUES (7, 'u7', 'primary', 'queued', 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ctx := context.Background()
	for range 2 { // the second open finds the column there
		j, err := openJournal(p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := j.get(ctx, 7)
		if err != nil || r == nil || r.Stage != StageQueued {
			t.Fatalf("the old record: %+v, %v", r, err)
		}
		r.Checks = Checks{PIVProof: true, PINChange: PINChangeForced, NotRedone: []string{"x"}}
		if err := j.put(ctx, r); err != nil {
			t.Fatal(err)
		}
		if r, err = j.get(ctx, 7); err != nil || !r.Checks.PIVProof || r.Checks.PINChange != PINChangeForced || len(r.Checks.NotRedone) != 1 {
			t.Fatalf("checks kept: %+v, %v", r, err)
		}
		j.close()
	}
}
