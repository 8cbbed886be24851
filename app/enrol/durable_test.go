package enrol

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/keydesk/keydesk/device/virtual/sim"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

// TestOwnEarlierRegistrationRecognised: the registry already holds the
// key's registration when the desk sends it — sent before under another
// idempotency key (an older desk re-queued it after a crash) — so the
// desk's own copy is refused as a conflict. The desk recognises its own
// write (serial, owner, FIDO2 credential and PIV public key as journalled)
// and finishes the enrolment: the key ends active once, with its escrow.
// A registration of the same serial that is not the desk's (another owner)
// is refused with *RefusedError and its hint instead.
func TestOwnEarlierRegistrationRecognised(t *testing.T) {
	d := newDesk(t)
	e := d.enroller()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		other bool // the registry's copy is someone else's
	}{{"own", false}, {"other", true}} {
		t.Run(tc.name, func(t *testing.T) {
			y, err := d.fleet.Replace(d.fleet.Keys[0].Serial())
			if err != nil {
				t.Fatal(err)
			}
			serial := y.Serial()
			user := client.EnrolUser{ExternalID: "early-" + tc.name, DisplayName: "Early " + tc.name}
			ui := testUI(nil)
			sent := false
			ui.Progress = func(ev Event) {
				if ev.Step != StepRegister || sent {
					return
				}
				sent = true
				rec, err := e.j.get(ctx, serial)
				if err != nil || rec == nil || rec.Stage != StagePrepared {
					t.Errorf("journal at register: %+v, %v", rec, err)
					return
				}
				var er client.Enrolment
				if err := json.Unmarshal(rec.Request, &er); err != nil {
					t.Error(err)
					return
				}
				if tc.other {
					er.User = client.EnrolUser{ExternalID: "someone-else", DisplayName: "Someone Else"}
				}
				if _, err := d.cl.Enrol(ctx, er); err != nil {
					t.Errorf("the earlier copy: %v", err)
				}
			}
			res, err := e.EnrolKey(ctx, Request{User: user, CreateUser: true, Serial: serial}, ui)
			if !sent {
				t.Fatalf("never registered: %v", err)
			}
			if tc.other {
				var re *RefusedError
				var ie *InterruptedError
				if !errors.As(err, &re) || !errors.As(err, &ie) || ie.Hint() != re.Hint() || re.State != client.Conflict {
					t.Fatalf("someone else's registration of the serial: %v", err)
				}
				t.Logf("%v; %s", err, ie.Hint())
				return
			}
			if err != nil || res.Status != registry.KeyActive {
				t.Fatalf("enrolment over its own earlier registration: %+v, %v", res, err)
			}
			kd, err := d.cl.KeyBySerial(ctx, strconv.FormatUint(uint64(serial), 10))
			if err != nil || kd.ID != res.KeyID || kd.Status != registry.KeyActive {
				t.Fatalf("registry: %+v, %v", kd, err)
			}
			u, err := e.FindUser(ctx, user.ExternalID)
			if err != nil {
				t.Fatal(err)
			}
			if ks, _ := d.cl.UserKeys(ctx, u.ID); len(ks) != 1 {
				t.Fatalf("the user holds %d keys", len(ks))
			}
			if _, err := d.cl.Escrow(ctx, kd.ID, EscrowKind); err != nil {
				t.Fatalf("escrow: %v", err)
			}
			if done, _ := e.Finished(ctx, serial); !done {
				t.Fatal("journal not finished")
			}
		})
	}
}

// TestOutboxLostThenResume: a registration queued while the registry was
// down, then the desk's outbox is lost (a new outbox file; the journal
// kept). Resuming queues the journalled request again under the same
// idempotency key: the key is registered once, active, with its escrow.
func TestOutboxLostThenResume(t *testing.T) {
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
	if !errors.As(err, &ie) || ie.Stage != StageQueued || !errors.Is(err, client.ErrUnreachable) {
		t.Fatalf("registry down: %v", err)
	}
	u, _ := url.Parse(d.reg.URL)
	if d.reg, err = regtest.Start(bin, d.regState, "--practice", "--listen", u.Host); err != nil {
		t.Fatal(err)
	}
	// The same desk (its token), a new outbox.
	cl, err := client.New(d.reg.URL, d.token, client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	e2, err := New(Config{Settings: d.set, Keys: d.svc, Registry: cl, JournalPath: filepath.Join(d.data, "journal.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	res, err := e2.Resume(ctx, sim.FirstSerial, testUI(nil))
	if err != nil || res.Status != registry.KeyActive {
		t.Fatalf("resume with the outbox lost: %+v, %v", res, err)
	}
	if _, err := d.cl.Escrow(ctx, res.KeyID, EscrowKind); err != nil {
		t.Fatalf("escrow: %v", err)
	}
	us, _, _ := d.cl.Users(ctx, "", 10)
	if len(us) != 1 {
		t.Fatalf("%d users", len(us))
	}
	if ks, _ := d.cl.UserKeys(ctx, us[0].ID); len(ks) != 1 {
		t.Fatalf("the key is registered %d times", len(ks))
	}
	// The first outbox still holds the request; sending it is a replay
	// under the same key, answered from the registry's record.
	if err := d.cl.Flush(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if ents, _ := d.cl.Entries(ctx, ""); len(ents) != 1 || ents[0].State != client.Done {
		t.Fatalf("first outbox: %+v", ents)
	}
	if ks, _ := d.cl.UserKeys(ctx, us[0].ID); len(ks) != 1 {
		t.Fatalf("after the replay the key is registered %d times", len(ks))
	}
}
