package client_test

import (
	"errors"
	"flag"
	"sync"
	"testing"

	"github.com/keydesk/keydesk/registry/client"
	"github.com/keydesk/keydesk/registry/regtest"
)

// soak makes the fault tests long: go test ./registry/client -args -soak.
var soak = flag.Bool("soak", false, "run the fault tests at soak size (500 enrolment races, 2,000 enrolments across PostgreSQL restarts)")

// TestTwoAdminsEnrolOneKey: two admins, each with their own token and
// client, enrol the same physical key (same serial) at the same moment
// through a real registry process, once for the same user and once for
// two different users. Every time exactly one wins; the other gets a 409
// it can tell is a conflict, and nothing of the losing enrolment remains
// (its user is not created, the key has one owner).
func TestTwoAdminsEnrolOneKey(t *testing.T) {
	rounds := 20
	if *soak {
		rounds = 500
	}
	reg := startRegistry(t, "admin-a", "admin-b")
	state, a, b := reg.State, reg.Clients[0], reg.Clients[1]

	wins := map[string]int{}
	for r := range rounds {
		ea, eb := enrolment(2*r), enrolment(2*r+1)
		eb.Key.Serial = ea.Key.Serial
		if r%2 == 0 {
			eb.User = ea.User // the same user, twice
		}
		var wg sync.WaitGroup
		gate := make(chan struct{})
		var errA, errB error
		var gotA, gotB client.Enrolled
		wg.Add(2)
		go func() { defer wg.Done(); <-gate; gotA, errA = a.Enrol(ctx, ea) }()
		go func() { defer wg.Done(); <-gate; gotB, errB = b.Enrol(ctx, eb) }()
		close(gate)
		wg.Wait()
		winner, loser, lerr := gotA, eb, errB
		switch {
		case errA == nil && errB != nil:
			wins["a"]++
		case errB == nil && errA != nil:
			winner, loser, lerr = gotB, ea, errA
			wins["b"]++
		default:
			t.Fatalf("round %d: a %v, b %v: want exactly one winner", r, errA, errB)
		}
		var ae *client.APIError
		if !errors.As(lerr, &ae) || !ae.Conflict() || ae.Code == "" || ae.Message == "" {
			t.Fatalf("round %d: the loser got %v, want a 409 conflict", r, lerr)
		}
		keys, err := a.UserKeys(ctx, winner.User.ID)
		if err != nil || len(keys) != 1 || keys[0].Serial != ea.Key.Serial {
			t.Fatalf("round %d: winner's keys %+v %v", r, keys, err)
		}
		if loser.User.ExternalID != winner.User.ExternalID {
			if u := findUser(t, a, loser.User.ExternalID); u != "" {
				t.Fatalf("round %d: the losing enrolment's user %s exists", r, u)
			}
		}
	}
	t.Logf("winners over %d rounds: %v", rounds, wins)
	reg.P.Stop()
	if out, err := regtest.AuditVerify(bin, state); err != nil {
		t.Fatalf("audit verify: %v %s", err, out)
	}
}

func findUser(t *testing.T, c *client.Client, external string) string {
	for after := ""; ; {
		users, next, err := c.Users(ctx, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			if u.ExternalID == external {
				return u.ID
			}
		}
		if next == "" || len(users) == 0 {
			return ""
		}
		after = next
	}
}
