package enrol

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/roster"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/credential"
	"github.com/keydesk/keydesk/registry/regtest"
)

// TestKeyPulledAtEachStep pulls the key as each stage of an enrolment
// begins. Afterwards the registry holds nothing for the key, or the key
// pending — never active; and the next run finishes it: a key left half
// set up is reset (PIV and FIDO2) and enrolled afresh, a key the registry
// already holds is resumed once it is back. Either way it ends active, once,
// and signs in: the registry verifies a fresh FIDO2 challenge signed by it.
func TestKeyPulledAtEachStep(t *testing.T) {
	d := newDesk(t)
	e := d.enroller()
	ctx := context.Background()
	for i, step := range []Step{StepKey, StepGenuine, StepFIDO2PIN, StepFIDO2, StepSignIn, StepPIV, StepCert, StepRegister, StepEscrow, StepActivate} {
		t.Run(string(step), func(t *testing.T) {
			// A factory-fresh key in the first reader, for a new user.
			y, err := d.fleet.Replace(d.fleet.Keys[0].Serial())
			if err != nil {
				t.Fatal(err)
			}
			serial := y.Serial()
			user := client.EnrolUser{ExternalID: fmt.Sprintf("pulled%d", i), DisplayName: "Pulled " + string(step), Email: fmt.Sprintf("pulled%d@example.org", i)}
			ui := testUI(nil)
			pulled := false
			ui.Progress = func(ev Event) {
				if ev.Step == step && !pulled {
					pulled = true
					y.Key.Remove()
				}
			}
			_, err = e.EnrolKey(ctx, Request{User: user, CreateUser: true, Serial: serial}, ui)
			if !pulled || err == nil {
				t.Fatalf("pulled %v, enrolment error %v", pulled, err)
			}
			var ie *InterruptedError
			interrupted := errors.As(err, &ie)
			if interrupted && ie.Hint() == "" {
				t.Errorf("no hint: %v", err)
			}
			// A pulled key is reported as pulled, never as one that is
			// not factory-fresh; pulled before anything was written, it
			// is said so plainly.
			if errors.Is(err, ErrNotFresh) {
				t.Fatalf("pulled at %s, reported as not factory-fresh: %v", step, err)
			}
			// Whatever the device call said, the cause named is the
			// pulled key (exit 3 at the CLI).
			if !errors.Is(err, device.ErrKeyRemoved) {
				t.Fatalf("pulled at %s, the cause is not the key's removal: %v", step, err)
			}
			var re *RemovedError
			removed := errors.As(err, &re)
			if step == StepKey {
				want := fmt.Sprintf("key %d was removed before anything was written", serial)
				if !removed || err.Error() != want || re.Hint() != "Insert it and run the same command again." || !errors.Is(err, device.ErrKeyRemoved) {
					t.Fatalf("pulled as the enrolment starts: %v, want %q", err, want)
				}
			}
			// Nothing, or pending: never an active key.
			kd, rerr := d.cl.KeyBySerial(ctx, strconv.FormatUint(uint64(serial), 10))
			switch {
			case errors.Is(rerr, registry.ErrNotFound):
				if interrupted && !halfSetUp(ie.Stage) && ie.Stage != StagePrepared && ie.Stage != StageQueued {
					t.Fatalf("stage %s, but the registry holds nothing", ie.Stage)
				}
			case rerr != nil:
				t.Fatal(rerr)
			case kd.Status != registry.KeyPending:
				t.Fatalf("after the key was pulled at %s the registry holds it %s", step, kd.Status)
			case !interrupted || halfSetUp(ie.Stage):
				t.Fatalf("the registry holds the key (pending) but the error is %v", err)
			}
			t.Logf("pulled at %s: %v; registry: %v", step, err, rerr)

			y.Key.Insert()
			k := waitBack(t, d, serial)
			var res *Result
			switch {
			case removed:
				// Nothing was written: the same command runs again.
				if res, err = e.EnrolKey(ctx, Request{User: user, CreateUser: true, Serial: serial}, testUI(nil)); err != nil {
					t.Fatalf("enrolling again after the key came back: %v", err)
				}
			case interrupted && !halfSetUp(ie.Stage):
				// The key's side is done: the next run completes it.
				if res, err = e.Resume(ctx, serial, testUI(nil)); err != nil {
					t.Fatalf("resuming: %v", err)
				}
			default:
				// Rolled back: nothing registered, so the admin resets the
				// key as the hint says, and enrols it afresh.
				if interrupted {
					if _, err := e.Resume(ctx, serial, testUI(nil)); !errors.As(err, &ie) || !halfSetUp(ie.Stage) {
						t.Fatalf("resuming a half set up key: %v", err)
					}
				}
				card, err := d.svc.PIV(k)
				if err != nil {
					t.Fatal(err)
				}
				if err := card.Reset(ctx, serial); err != nil {
					t.Fatalf("PIV reset: %v", err)
				}
				reinsert := func(context.Context) error { y.Key.PowerCycle(); return nil }
				if err := fidokey.Open(k.FIDOPath).Reset(ctx, device.Callbacks{Reinsert: reinsert}, serial); err != nil {
					t.Fatalf("FIDO2 reset: %v", err)
				}
				waitBack(t, d, serial)
				if res, err = e.EnrolKey(ctx, Request{User: user, CreateUser: true, Serial: serial}, testUI(nil)); err != nil {
					t.Fatalf("enrolling the reset key: %v", err)
				}
			}
			if res.Status != registry.KeyActive {
				t.Fatalf("next run: %+v", res)
			}
			u, err := e.FindUser(ctx, user.ExternalID)
			if err != nil {
				t.Fatal(err)
			}
			if ks, _ := d.cl.UserKeys(ctx, u.ID); len(ks) != 1 {
				t.Fatalf("the user holds %d keys", len(ks))
			}
			signIn(t, d, res.KeyID, serial, "fido-"+strconv.Itoa(int(serial)))
			un, _ := e.Unfinished(ctx)
			for _, r := range un {
				if r.Serial == serial {
					t.Fatalf("unfinished after the next run: %+v", r)
				}
			}
		})
	}
	if out, err := regtest.AuditVerify(bin, d.regState); err != nil {
		t.Fatalf("audit: %v: %s", err, out)
	}
}

// waitBack waits for the key to be back with both interfaces (PC/SC may
// follow the FIDO one).
func waitBack(t *testing.T, d *desk, serial uint32) device.Key {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		k, err := d.svc.Find(ctx, serial)
		if err == nil {
			if _, err = d.svc.PIV(k); err == nil && k.FIDOPath != "" {
				return k
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %d is not back: %v", serial, err)
		}
	}
}

// signIn has the registry issue a FIDO2 challenge for the key's credential,
// signs it with the key (with the PIN, as a sign-in would) and checks the
// registry verifies it.
func signIn(t *testing.T, d *desk, keyID string, serial uint32, pin string) {
	t.Helper()
	ctx := context.Background()
	kd, err := d.cl.Key(ctx, keyID)
	if err != nil || len(kd.FIDO2) != 1 {
		t.Fatalf("key %s: %+v, %v", keyID, kd, err)
	}
	ch, err := d.cl.Challenge(ctx, keyID, "fido2", kd.FIDO2[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	k, err := d.svc.Find(ctx, serial)
	if err != nil {
		t.Fatal(err)
	}
	cb := device.Callbacks{PIN: func(context.Context, string) (string, error) { return pin, nil }}
	as, err := fidokey.Open(k.FIDOPath).GetAssertion(ctx, fidokey.AssertOptions{RPID: ch.RPID, Challenge: ch.Challenge.Nonce,
		CredentialIDs: [][]byte{ch.FIDO2CredentialID}, UserVerification: true}, cb)
	if err != nil {
		t.Fatalf("signing in with key %d: %v", serial, err)
	}
	v, err := d.cl.VerifyFIDO2(ctx, ch.Challenge.ID, credential.Assertion{AuthenticatorData: as.AuthenticatorData, ClientDataJSON: as.ClientDataJSON, Signature: as.Signature})
	if err != nil || !v.OK {
		t.Fatalf("the registry did not verify key %d's sign-in: %+v, %v", serial, v, err)
	}
}

// TestRegistryKilledMidBatch: a batch of three users, one key each. The
// registry is SIGKILLed as the second user's key is being registered and
// restarted on the same state when the batch reaches the third user: an
// outage longer than the batch waits for (the enroller here does not wait;
// TestBatchRidesOutRegistryOutage has one it rides out). The batch goes on: the third user is enrolled, the second is reported with
// what to do. Running the batch again finishes the second user's key from
// the journal; every user then holds exactly one active key that signs in,
// nothing is left in the outbox or the journal, and the audit log verifies.
func TestRegistryKilledMidBatch(t *testing.T) {
	d := newDesk(t)
	csv := "external_id,display_name,email,keys\nk1,Kay One,k1@example.org,1\nk2,Kay Two,k2@example.org,1\nk3,Kay Three,k3@example.org,1\n"
	r, err := roster.Parse(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Settings: d.set, Keys: d.svc, Registry: d.cl, JournalPath: filepath.Join(d.data, "journal.db"), RegistryWait: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	u, _ := url.Parse(d.reg.URL)
	killed, restarted := false, false
	ui := testUI(nil)
	ui.InsertKey = func(ctx context.Context, _ InsertRequest) error {
		for _, y := range d.fleet.Keys {
			if done, _ := e.Finished(ctx, y.Serial()); done {
				_, err := d.fleet.Replace(y.Serial())
				return err
			}
		}
		return errors.New("no enrolled key to swap")
	}
	ui.Progress = func(ev Event) {
		switch {
		case ev.Step == StepRegister && ev.User == "k2" && !killed:
			killed = true
			d.reg.Kill()
		case ev.Step == StepBatchUser && ev.User == "k3" && killed && !restarted:
			restarted = true
			if d.reg, err = regtest.Start(bin, d.regState, "--practice", "--listen", u.Host); err != nil {
				t.Errorf("restarting the registry: %v", err)
			}
		}
	}
	rep, err := e.Batch(ctx, r, "kill", ui)
	if err != nil || !killed || !restarted {
		t.Fatalf("batch: %v (killed %v, restarted %v)", err, killed, restarted)
	}
	if rep.Failed != 1 || rep.Users[1].OK() || !strings.Contains(rep.Users[1].Hint, "--resume") || !rep.Users[0].OK() || !rep.Users[2].OK() {
		t.Fatalf("first run: %d failed; %s; %s; %s", rep.Failed, rep.Users[0].Describe(), rep.Users[1].Describe(), rep.Users[2].Describe())
	}
	// The key of the user whose registration was cut off is pending at
	// most: never active before the desk has proven it.
	if kd, err := d.cl.KeyBySerial(ctx, strconv.FormatUint(uint64(mustSerial(t, e, "k2")), 10)); err == nil && kd.Status != registry.KeyPending {
		t.Fatalf("cut-off key is %s", kd.Status)
	} else {
		t.Logf("after the first run the registry holds the cut-off key: %v (%v)", err == nil, err)
	}
	rep, err = e.Batch(ctx, r, "kill", testUI(nil))
	if err != nil || rep.Failed != 0 || rep.Enrolled != 1 {
		t.Fatalf("second run: %+v, %v", rep, err)
	}
	us, _, err := d.cl.Users(ctx, "", 10)
	if err != nil || len(us) != 3 {
		t.Fatalf("%d users, %v", len(us), err)
	}
	signed := 0
	for _, u := range us {
		ks, err := d.cl.UserKeys(ctx, u.ID)
		if err != nil || len(ks) != 1 || ks[0].Status != registry.KeyActive {
			t.Fatalf("user %s: %+v, %v", u.ExternalID, ks, err)
		}
		kd, err := d.cl.Key(ctx, ks[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		serial, _ := strconv.ParseUint(kd.Serial, 10, 32)
		if _, err := d.cl.Escrow(ctx, ks[0].ID, EscrowKind); err != nil {
			t.Fatalf("escrow of %s: %v", u.ExternalID, err)
		}
		// Keys swapped out of the readers cannot sign in here; the ones
		// still in a reader must.
		if d.fleet.Find(uint32(serial)) != nil {
			signIn(t, d, ks[0].ID, uint32(serial), "fido-"+kd.Serial)
			signed++
		}
	}
	// Two readers: the second and third users' keys are still in them.
	if signed != 2 {
		t.Fatalf("%d keys signed in, want 2", signed)
	}
	if pend, _ := d.cl.Entries(ctx, client.Pending); len(pend) != 0 {
		t.Fatalf("%d outbox entries pending", len(pend))
	}
	if un, _ := e.Unfinished(ctx); len(un) != 0 {
		t.Fatalf("unfinished: %+v", un[0])
	}
	if out, err := regtest.AuditVerify(bin, d.regState); err != nil {
		t.Fatalf("audit: %v: %s", err, out)
	}
}

// mustSerial is the serial of the key journalled for a user.
func mustSerial(t *testing.T, e *Enroller, externalID string) uint32 {
	t.Helper()
	recs, err := e.j.list(context.Background(), externalID)
	if err != nil || len(recs) != 1 {
		t.Fatalf("journal for %s: %d records, %v", externalID, len(recs), err)
	}
	return recs[0].Serial
}

// TestBatchRidesOutRegistryOutage: a batch of three users, one key each.
// The registry process is SIGKILLed as the second user's key is being
// registered and restarted on the same state and port 2 s later. The
// batch waits for it with back-off (StepRegistryWait) instead of failing
// the rest: all three users are enrolled in the one run, each holding one
// active key with its escrow, nothing left in the outbox or the journal,
// and the audit log verifies.
func TestBatchRidesOutRegistryOutage(t *testing.T) {
	d := newDesk(t)
	csv := "external_id,display_name,email,keys\no1,Oz One,o1@example.org,1\no2,Oz Two,o2@example.org,1\no3,Oz Three,o3@example.org,1\n"
	r, err := roster.Parse(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	e := d.enroller()
	ctx := context.Background()
	u, _ := url.Parse(d.reg.URL)
	const outage = 2 * time.Second
	killed, waits := false, 0
	back := make(chan error, 1)
	ui := testUI(nil)
	ui.InsertKey = func(ctx context.Context, _ InsertRequest) error {
		for _, y := range d.fleet.Keys {
			if done, _ := e.Finished(ctx, y.Serial()); done {
				_, err := d.fleet.Replace(y.Serial())
				return err
			}
		}
		return errors.New("no enrolled key to swap")
	}
	ui.Progress = func(ev Event) {
		switch {
		case ev.Step == StepRegister && ev.User == "o2" && !killed:
			killed = true
			d.reg.Kill()
			go func() {
				time.Sleep(outage) // the outage itself, not a check
				p, err := regtest.Start(bin, d.regState, "--practice", "--listen", u.Host)
				if err == nil {
					d.t.Cleanup(p.Stop)
				}
				back <- err
			}()
		case ev.Step == StepRegistryWait:
			waits++
			t.Logf("%s: %s", ev.User, ev.Detail)
		}
	}
	start := time.Now()
	rep, err := e.Batch(ctx, r, "outage", ui)
	if err != nil || !killed {
		t.Fatalf("batch: %v (killed %v)", err, killed)
	}
	if err := <-back; err != nil {
		t.Fatalf("restarting the registry: %v", err)
	}
	if rep.Failed != 0 || rep.Enrolled != 3 || waits == 0 {
		t.Fatalf("batch across the outage: %d failed, %d enrolled, %d waits; %s; %s; %s", rep.Failed, rep.Enrolled, waits,
			rep.Users[0].Describe(), rep.Users[1].Describe(), rep.Users[2].Describe())
	}
	t.Logf("3 users enrolled across a %s registry outage in %.1fs, %d waits", outage, time.Since(start).Seconds(), waits)
	us, _, err := d.cl.Users(ctx, "", 10)
	if err != nil || len(us) != 3 {
		t.Fatalf("%d users, %v", len(us), err)
	}
	for _, u := range us {
		ks, err := d.cl.UserKeys(ctx, u.ID)
		if err != nil || len(ks) != 1 || ks[0].Status != registry.KeyActive {
			t.Fatalf("user %s: %+v, %v", u.ExternalID, ks, err)
		}
		if _, err := d.cl.Escrow(ctx, ks[0].ID, EscrowKind); err != nil {
			t.Fatalf("escrow of %s: %v", u.ExternalID, err)
		}
	}
	if pend, _ := d.cl.Entries(ctx, client.Pending); len(pend) != 0 {
		t.Fatalf("%d outbox entries pending", len(pend))
	}
	if un, _ := e.Unfinished(ctx); len(un) != 0 {
		t.Fatalf("unfinished: %+v", un[0])
	}
	if out, err := regtest.AuditVerify(bin, d.regState); err != nil {
		t.Fatalf("audit: %v: %s", err, out)
	}
}

// TestEnrolUserRidesOutRegistryOutage: one user's primary and backup keys,
// enrolled at the desk (EnrolUser with WaitRegistry, as keydesk enrol
// --user asks). The registry process is SIGKILLed as the primary's escrow
// is about to be stored (the key registered, pending), and again as the
// backup is about to be activated; each time it is restarted on the same
// state and port once the enroller reports that it waits. Both keys finish
// in place — not resumed, so with the PINs at hand for the PIV proof —
// active, with their escrows; nothing is left in the outbox or the
// journal, and the audit log verifies. Each wait says how much of the
// whole wait is left.
func TestEnrolUserRidesOutRegistryOutage(t *testing.T) {
	d := newDesk(t)
	e := d.enroller()
	ctx := context.Background()
	u, _ := url.Parse(d.reg.URL)
	kills := map[Step]bool{StepEscrow: false, StepActivate: false}
	down, waits, keysDone := false, 0, 0
	ui := testUI(nil)
	ui.Progress = func(ev Event) {
		switch {
		case ev.Step == StepDone:
			keysDone++
		case (ev.Step == StepEscrow && keysDone == 0 || ev.Step == StepActivate && keysDone == 1) && !kills[ev.Step]:
			kills[ev.Step], down = true, true
			d.reg.Kill()
		case ev.Step == StepRegistryWait:
			waits++
			t.Logf("%s: %s (%s left)", ev.User, ev.Detail, ev.Left)
			if ev.Left <= 0 || ev.Left > DefaultRegistryWait {
				t.Errorf("wait event says %s left of a %s wait", ev.Left, DefaultRegistryWait)
			}
			if down {
				p, err := regtest.Start(bin, d.regState, "--practice", "--listen", u.Host)
				if err != nil {
					t.Errorf("restarting the registry: %v", err)
					return
				}
				d.reg, down = p, false
				t.Cleanup(p.Stop)
			}
		}
	}
	res, err := e.EnrolUser(ctx, Request{User: ada, CreateUser: true, WaitRegistry: true}, ui)
	if err != nil || len(res) != 2 || !kills[StepEscrow] || !kills[StepActivate] || waits < 2 {
		t.Fatalf("enrolment across two outages: %d keys, %v (kills %v, %d waits)", len(res), err, kills, waits)
	}
	for _, r := range res {
		if r.Status != registry.KeyActive || r.Resumed || r.Genuine == "" {
			t.Fatalf("key %d: %s, resumed %v, genuine %q", r.Serial, r.Status, r.Resumed, r.Genuine)
		}
		if _, err := d.cl.Escrow(ctx, r.KeyID, EscrowKind); err != nil {
			t.Fatalf("escrow of key %d: %v", r.Serial, err)
		}
	}
	if !res[1].Covered {
		t.Fatalf("the user is not covered: missing %v", res[1].Missing)
	}
	if pend, _ := d.cl.Entries(ctx, client.Pending); len(pend) != 0 {
		t.Fatalf("%d outbox entries pending", len(pend))
	}
	if un, _ := e.Unfinished(ctx); len(un) != 0 {
		t.Fatalf("unfinished: %+v", un[0])
	}
	if out, err := regtest.AuditVerify(bin, d.regState); err != nil {
		t.Fatalf("audit: %v: %s", err, out)
	}
}
