package pivkey

import "testing"

func TestParseSubject(t *testing.T) {
	n, err := ParseSubject(" cn=Ada Lovelace , O=Example,ou=Desk,OU=Helpdesk,C=GB")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := n.String(), "CN=Ada Lovelace,OU=Desk+OU=Helpdesk,O=Example,C=GB"; got != want {
		t.Errorf("subject %q, want %q", got, want)
	}
	for _, bad := range []string{"", "  ", "CN", "CN=", "CN=ada,", "L=London", "CN=ada,ST=x"} {
		if _, err := ParseSubject(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
