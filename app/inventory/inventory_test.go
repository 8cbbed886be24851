package inventory

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/registry"
)

func key(serial string, role registry.KeyRole, st registry.KeyStatus) Key {
	return Key{Key: registry.Key{ID: "k" + serial, Serial: serial, Role: role, Status: st}}
}

// TestJudge: the problems found for each combination of keys, with and
// without known verifications.
func TestJudge(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	last := map[string]time.Time{"k1": now.Add(-time.Hour), "k2": now.Add(-400 * 24 * time.Hour), "k5": now}
	P, B := registry.RolePrimary, registry.RoleBackup
	A, Pe, L := registry.KeyActive, registry.KeyPending, registry.KeyLost
	cases := []struct {
		name   string
		status registry.UserStatus
		keys   []Key
		known  bool
		want   Problem
	}{
		{"covered, fresh and old", registry.UserActive, []Key{key("1", P, A), key("2", B, A)}, true, Stale},
		{"covered, verifications unknown", registry.UserActive, []Key{key("1", P, A), key("2", B, A)}, false, 0},
		{"no keys", registry.UserActive, nil, true, NoActive | NoPrimary | NoBackup},
		{"pending only", registry.UserActive, []Key{key("3", P, Pe)}, false, NoActive | NoPrimary | NoBackup | Unverified},
		{"active never verified", registry.UserActive, []Key{key("4", P, A), key("5", B, A)}, true, Unverified},
		{"lost primary", registry.UserActive, []Key{key("1", P, L), key("5", B, A)}, true, NoPrimary},
		{"suspended user", registry.UserSuspended, nil, true, 0},
	}
	for _, c := range cases {
		u := User{User: registry.User{ID: "u", Status: c.status}, Keys: append([]Key(nil), c.keys...)}
		if c.known {
			for i := range u.Keys {
				u.Keys[i].LastVerified = last[u.Keys[i].ID]
			}
		}
		u.judge(c.known, now, 180*24*time.Hour)
		if u.Problems != c.want {
			t.Errorf("%s: %v, want %v", c.name, u.Problems, c.want)
		}
		if u.Coverage.Covered != (u.Problems&(NoPrimary|NoBackup) == 0) && c.status == registry.UserActive {
			t.Errorf("%s: covered %v with problems %v", c.name, u.Coverage.Covered, u.Problems)
		}
	}
}

// TestFilterAndCSV: each filter field narrows the users, and the CSV holds
// exactly the selected users.
func TestFilterAndCSV(t *testing.T) {
	us := []User{
		{User: registry.User{ExternalID: "ada", DisplayName: "Ada Lovelace", Email: "ada@example.org", Groups: []string{"eng"}, Status: registry.UserActive},
			Keys: []Key{key("111", registry.RolePrimary, registry.KeyActive)}, Problems: NoBackup},
		{User: registry.User{ExternalID: "bob", DisplayName: "Bob, \"the\" builder", Email: "bob@example.org", Groups: []string{"ops"}, Status: registry.UserActive},
			Keys: []Key{key("222", registry.RoleBackup, registry.KeyLost)}, Problems: NoActive | NoPrimary | NoBackup},
	}
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "ada,bob"},
		{Filter{Text: "LOVE"}, "ada"},
		{Filter{Text: "222"}, "bob"},
		{Filter{Text: "bob@"}, "bob"},
		{Filter{Group: "eng"}, "ada"},
		{Filter{KeyStatus: registry.KeyLost}, "bob"},
		{Filter{KeyRole: registry.RolePrimary}, "ada"},
		{Filter{KeyStatus: registry.KeyLost, KeyRole: registry.RolePrimary}, ""},
		{Filter{Problems: NoActive}, "bob"},
		{Filter{Problems: NoBackup}, "ada,bob"},
	} {
		var got []string
		for _, i := range c.f.Select(us) {
			got = append(got, us[i].ExternalID)
		}
		if strings.Join(got, ",") != c.want {
			t.Errorf("%+v: %v, want %s", c.f, got, c.want)
		}
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, us, []int{1}); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 2 || rows[1][1] != `Bob, "the" builder` || rows[1][9] != "no-active-key;no-primary;no-backup" {
		t.Fatalf("CSV %q: %v", rows, err)
	}
}

// TestModelNames: a key's FIDO2 models in words, one per distinct model,
// with unlisted and missing AAGUIDs said as such.
func TestModelNames(t *testing.T) {
	k := key("1", registry.RolePrimary, registry.KeyActive)
	if got := k.ModelNames(); got != nil {
		t.Fatalf("without metadata: %v", got)
	}
	k.FIDO2Models = []registry.FIDOModel{
		{AAGUID: "cb69481e-8ff7-4039-93ec-0a2729a154a8", Model: "YubiKey 5 Series", Status: "FIDO_CERTIFIED_L2"},
		{AAGUID: "cb69481e-8ff7-4039-93ec-0a2729a154a8", Model: "YubiKey 5 Series", Status: "FIDO_CERTIFIED_L2"},
		{AAGUID: "00000000-0000-0000-0000-000000000001"},
		{},
	}
	want := "YubiKey 5 Series (FIDO_CERTIFIED_L2)|unlisted AAGUID 00000000-0000-0000-0000-000000000001|no AAGUID"
	if got := strings.Join(k.ModelNames(), "|"); got != want {
		t.Fatalf("names %q, want %q", got, want)
	}
}
