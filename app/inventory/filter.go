package inventory

import (
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/keydesk/keydesk/registry"
)

// Filter selects users; zero fields select everyone.
type Filter struct {
	// Text matches, case-insensitively, part of the display name, email,
	// external id, or a key's serial.
	Text string
	// Group is one group the user must be in.
	Group string
	// KeyStatus and KeyRole: the user must hold a key with this status and
	// this role (the same key when both are set).
	KeyStatus registry.KeyStatus
	KeyRole   registry.KeyRole
	// Problems: the user must have at least one of these.
	Problems Problem
}

// Match says whether u passes f.
func (f Filter) Match(u *User) bool {
	if f.Problems != 0 && u.Problems&f.Problems == 0 {
		return false
	}
	if f.Group != "" {
		in := false
		for _, g := range u.Groups {
			if g == f.Group {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	if f.KeyStatus != "" || f.KeyRole != "" {
		held := false
		for _, k := range u.Keys {
			if (f.KeyStatus == "" || k.Status == f.KeyStatus) && (f.KeyRole == "" || k.Role == f.KeyRole) {
				held = true
				break
			}
		}
		if !held {
			return false
		}
	}
	if t := strings.ToLower(strings.TrimSpace(f.Text)); t != "" {
		if !contains(u.DisplayName, t) && !contains(u.Email, t) && !contains(u.ExternalID, t) {
			found := false
			for _, k := range u.Keys {
				if contains(k.Serial, t) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
	}
	return true
}

func contains(s, lowerSub string) bool {
	return strings.Contains(strings.ToLower(s), lowerSub)
}

// Select returns the indexes of the users in us that f matches.
func (f Filter) Select(us []User) []int {
	out := make([]int, 0, len(us))
	for i := range us {
		if f.Match(&us[i]) {
			out = append(out, i)
		}
	}
	return out
}

// CSVHeader is the first row WriteCSV writes.
var CSVHeader = []string{"external_id", "display_name", "email", "groups", "user_status", "keys", "active_keys", "covered", "missing", "problems", "last_verified"}

// WriteCSV writes the users of us at the indexes idx (every user when idx
// is nil) as CSV (RFC 4180): one row per user, multi-valued fields joined
// with ";", times in RFC 3339.
func WriteCSV(w io.Writer, us []User, idx []int) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	row := func(u *User) []string {
		serials := make([]string, len(u.Keys))
		for i, k := range u.Keys {
			serials[i] = k.Serial + " (" + string(k.Role) + ", " + string(k.Status) + ")"
		}
		last := ""
		if !u.LastVerified.IsZero() {
			last = u.LastVerified.UTC().Format(time.RFC3339)
		}
		return []string{u.ExternalID, u.DisplayName, u.Email, strings.Join(u.Groups, ";"), string(u.Status),
			strings.Join(serials, ";"), strconv.Itoa(u.Coverage.ActiveKeys), strconv.FormatBool(u.Coverage.Covered),
			strings.Join(u.Coverage.Missing, ";"), u.Problems.String(), last}
	}
	if idx == nil {
		for i := range us {
			if err := cw.Write(row(&us[i])); err != nil {
				return err
			}
		}
	} else {
		for _, i := range idx {
			if err := cw.Write(row(&us[i])); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}
