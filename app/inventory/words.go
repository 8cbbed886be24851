package inventory

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/keydesk/keydesk/registry"
)

// SortByName orders users by display name (ignoring case), then external
// id, as the Inventory screen and keydesk inventory list them.
func SortByName(us []User) {
	sort.SliceStable(us, func(i, j int) bool {
		a, b := strings.ToLower(us[i].DisplayName), strings.ToLower(us[j].DisplayName)
		if a != b {
			return a < b
		}
		return us[i].ExternalID < us[j].ExternalID
	})
}

// Standing is the user's coverage in words: "covered", the labels of
// their problems ("no backup key, key never verified"), or the user's
// status when they are not active.
func (u *User) Standing() string {
	if u.Status != registry.UserActive {
		return "user " + string(u.Status)
	}
	if u.Problems == 0 {
		return "covered"
	}
	var parts []string
	for _, p := range Problems {
		if u.Problems&p != 0 {
			parts = append(parts, p.Label())
		}
	}
	return strings.Join(parts, ", ")
}

// Ago is a verification time in words, as seen at now: "never" (zero t),
// "today", "yesterday" or "N days ago".
func Ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	switch d := now.Sub(t); {
	case d < 24*time.Hour:
		return "today"
	case d < 48*time.Hour:
		return "yesterday"
	default:
		return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
	}
}
