package enrol

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
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
