package client_test

import (
	"context"
	"errors"
	"testing"

	"github.com/keydesk/keydesk/registry"
)

// TestEachUserAndFindUser: EachUser pages through every user and stops
// when asked; FindUser finds a user by registry id and by external id, and
// says not found for neither.
func TestEachUserAndFindUser(t *testing.T) {
	r := startRegistry(t)
	ctx := context.Background()
	want := map[string]string{}
	for i := 0; i < 5; i++ {
		out, err := r.Client.Enrol(ctx, enrolment(i))
		if err != nil {
			t.Fatal(err)
		}
		want[out.User.ExternalID] = out.User.ID
	}
	seen := map[string]string{}
	if err := r.Client.EachUser(ctx, 2, func(u registry.User) (bool, error) {
		seen[u.ExternalID] = u.ID
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(want) {
		t.Fatalf("EachUser saw %d users in pages of 2, want %d", len(seen), len(want))
	}
	n := 0
	if err := r.Client.EachUser(ctx, 2, func(registry.User) (bool, error) { n++; return n < 3, nil }); err != nil || n != 3 {
		t.Errorf("stopping after 3: called %d times, %v", n, err)
	}
	stop := errors.New("stop")
	if err := r.Client.EachUser(ctx, 2, func(registry.User) (bool, error) { return true, stop }); !errors.Is(err, stop) {
		t.Errorf("an error from f: EachUser returned %v", err)
	}
	for ext, id := range want {
		if u, err := r.Client.FindUser(ctx, ext); err != nil || u.ID != id {
			t.Errorf("FindUser(%q) = %s, %v; want %s", ext, u.ID, err, id)
		}
		if u, err := r.Client.FindUser(ctx, id); err != nil || u.ExternalID != ext {
			t.Errorf("FindUser(%q) = %s, %v; want %s", id, u.ExternalID, err, ext)
		}
	}
	if _, err := r.Client.FindUser(ctx, "nobody"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("FindUser(nobody): %v, want not found", err)
	}
}
