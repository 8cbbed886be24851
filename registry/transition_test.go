package registry_test

import (
	"errors"
	"testing"

	"github.com/keydesk/keydesk/registry"
)

// TestKeyTransition checks every pair of states for both authorities
// against the table in docs/registry.md.
func TestKeyTransition(t *testing.T) {
	all := []registry.KeyStatus{registry.KeyPending, registry.KeyActive, registry.KeySuspended, registry.KeyLost, registry.KeyRevoked, registry.KeyRetired}
	// Rows: from; columns: to, in the order of all. 'y' allowed, '.' not.
	want := map[registry.Authority][]string{
		registry.ByStaff: {
			"yyyyyy", // pending
			"yyyyyy", // active
			"yyyyyy", // suspended
			".y.yyy", // lost
			".y..yy", // revoked
			".....y", // retired
		},
		registry.BySelf: {
			"..yy..", // pending
			"..yy..", // active
			"..yy..", // suspended
			"...y..", // lost
			"......", // revoked
			"......", // retired
		},
	}
	for by, rows := range want {
		for i, from := range all {
			for j, to := range all {
				err := registry.KeyTransition(by, from, to)
				allowed := rows[i][j] == 'y'
				if allowed != (err == nil) {
					t.Errorf("%s: %s -> %s: allowed %v, got %v", by, from, to, allowed, err)
				}
				var te *registry.KeyTransitionError
				if err != nil && (!errors.As(err, &te) || te.By != by || te.From != from || te.To != to) {
					t.Errorf("%s: %s -> %s: error %#v", by, from, to, err)
				}
			}
		}
	}
	if registry.KeyTransition("authserver", registry.KeyActive, registry.KeyLost) == nil {
		t.Error("an unknown authority may change a key")
	}
}

func TestCredentialPending(t *testing.T) {
	cases := []struct {
		key     registry.KeyStatus
		verdict registry.AttestationVerdict
		pending bool
	}{
		{registry.KeyPending, registry.VerdictNone, false},
		{registry.KeyPending, registry.VerdictGenuine, false},
		{registry.KeyActive, registry.VerdictGenuine, false},
		{registry.KeyActive, registry.VerdictNone, true},
		{registry.KeyActive, registry.VerdictUntrustedRoot, true},
		{registry.KeyActive, registry.VerdictInvalid, true},
		{registry.KeySuspended, registry.VerdictNone, true},
	}
	for _, c := range cases {
		if got := registry.CredentialPending(c.key, c.verdict); got != c.pending {
			t.Errorf("key %s, verdict %s: pending %v, want %v", c.key, c.verdict, got, c.pending)
		}
	}
}
