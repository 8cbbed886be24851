package roster

import (
	"errors"
	"strings"
	"testing"
)

func TestParseGoodAndBadRows(t *testing.T) {
	in := "\ufeffExternal_ID,display_name,email,groups,keys\n" +
		"u1,Ada Lovelace,ada@example.org,eng; admins ,\n" +
		"u2,\"Hopper, Grace\",grace@example.org,,1\n" +
		",No Id,noid@example.org,,\n" +
		"u3,Bad Mail,not-an-email,,\n" +
		"u1,Dup,dup@example.org,,\n" +
		"u4,Too,many,fields,,,\n" +
		"u5,Keys,k@example.org,,9\n" +
		"u6,\"Bare \"quote,q@example.org,,\n" +
		"\n" +
		"u7,Last,last@example.org,,3\n"
	r, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range r.Entries {
		ids = append(ids, e.ExternalID)
	}
	if got := strings.Join(ids, ","); got != "u1,u2,u7" {
		t.Fatalf("entries %s, want u1,u2,u7", got)
	}
	if g := r.Entries[0].Groups; len(g) != 2 || g[0] != "eng" || g[1] != "admins" {
		t.Fatalf("groups %q", g)
	}
	if r.Entries[0].Keys != DefaultKeys || r.Entries[1].Keys != 1 || r.Entries[2].Keys != 3 {
		t.Fatalf("keys %d %d %d", r.Entries[0].Keys, r.Entries[1].Keys, r.Entries[2].Keys)
	}
	if r.Entries[1].DisplayName != "Hopper, Grace" || r.Entries[2].Line != 11 {
		t.Fatalf("entry %+v / line %d", r.Entries[1], r.Entries[2].Line)
	}
	want := []struct {
		line int
		col  string
	}{{4, "external_id"}, {5, "email"}, {6, "external_id"}, {7, ""}, {8, "keys"}, {9, ""}}
	if len(r.Errors) != len(want) {
		t.Fatalf("errors: %v", r.Errors)
	}
	for i, w := range want {
		if r.Errors[i].Line != w.line || r.Errors[i].Column != w.col {
			t.Errorf("error %d = %v, want line %d column %q", i, r.Errors[i], w.line, w.col)
		}
	}
	if !strings.Contains(r.Errors[2].Error(), "already on line 2") {
		t.Errorf("duplicate message: %v", r.Errors[2])
	}
}

func TestParseRefusesBadHeader(t *testing.T) {
	for name, in := range map[string]string{
		"empty":     "",
		"unknown":   "external_id,display_name,email,phone\n",
		"duplicate": "external_id,email,display_name,email\n",
		"missing":   "external_id,display_name\n",
	} {
		_, err := Parse(strings.NewReader(in))
		var he *HeaderError
		if !errors.As(err, &he) {
			t.Errorf("%s: err = %v, want *HeaderError", name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("external_id,display_name,email\nu1,A,a@example.org\n")
	f.Add("external_id,display_name,email,groups,keys\nu1,\"x\"\"y\",a@b.c,g;h,2\n,,,,\n")
	f.Add("\ufeffexternal_id,display_name,email\n\"unterminated\n")
	f.Fuzz(func(t *testing.T, in string) {
		r, err := Parse(strings.NewReader(in))
		if err != nil {
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("non-header error %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, e := range r.Entries {
			if e.ExternalID == "" || e.Keys < 1 || e.Keys > MaxKeys || seen[e.ExternalID] {
				t.Fatalf("invalid entry accepted: %+v", e)
			}
			seen[e.ExternalID] = true
		}
	})
}
