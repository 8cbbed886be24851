package inventory

import (
	"slices"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
)

func TestWords(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "never"},
		{now.Add(-time.Hour), "today"},
		{now.Add(-30 * time.Hour), "yesterday"},
		{now.Add(-50 * time.Hour), "2 days ago"},
		{now.Add(-400 * 24 * time.Hour), "400 days ago"},
	} {
		if got := Ago(c.t, now); got != c.want {
			t.Errorf("Ago(%v) = %q, want %q", now.Sub(c.t), got, c.want)
		}
	}

	us := []User{
		{User: registry.User{ExternalID: "b2", DisplayName: "bea", Status: registry.UserActive}, Problems: NoBackup | Unverified},
		{User: registry.User{ExternalID: "a", DisplayName: "Zed", Status: registry.UserSuspended}},
		{User: registry.User{ExternalID: "b1", DisplayName: "Bea", Status: registry.UserActive}},
	}
	SortByName(us)
	var ids, standing []string
	for i := range us {
		ids = append(ids, us[i].ExternalID)
		standing = append(standing, us[i].Standing())
	}
	if want := []string{"b1", "b2", "a"}; !slices.Equal(ids, want) {
		t.Errorf("sorted %v, want %v", ids, want)
	}
	if want := []string{"covered", "no backup key, key never verified", "user suspended"}; !slices.Equal(standing, want) {
		t.Errorf("standing %q, want %q", standing, want)
	}
}
