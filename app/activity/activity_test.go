package activity

import (
	"errors"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

func TestTermsAndSummary(t *testing.T) {
	e := client.AuditEntry{Action: "key.status", Payload: []byte(`{"id":"key_1","serial":"20000001","owner_id":"usr_9","status":"lost","role":"primary"}`)}
	for _, c := range []struct {
		terms Terms
		want  bool
	}{{nil, true}, {Terms{"20000001"}, true}, {Terms{"USR_9"}, true}, {Terms{"nobody", "key_1"}, true}, {Terms{"nobody"}, false}, {Terms{""}, false}} {
		if got := c.terms.match(e.Payload); got != c.want {
			t.Errorf("%q: %v", c.terms, got)
		}
	}
	if got := Summary(e); got != "serial=20000001 status=lost role=primary owner_id=usr_9" {
		t.Errorf("summary %q", got)
	}
	if got := Summary(client.AuditEntry{Payload: []byte(`{"id":"x"}`)}); got != "id=x" {
		t.Errorf("summary of an id only %q", got)
	}
}

func TestExplain(t *testing.T) {
	err := Explain(&client.APIError{Status: 403, Code: "forbidden"})
	var h interface{ Hint() string }
	if !errors.Is(err, ErrAdminOnly) || !errors.As(err, &h) || !strings.Contains(h.Hint(), "admin") {
		t.Fatalf("403: %v", err)
	}
	other := &client.APIError{Status: 400}
	if Explain(other) != error(other) {
		t.Fatal("a 400 was changed")
	}
}

func TestDescribeNames(t *testing.T) {
	n := NewNames()
	n.users["usr_9"] = registry.User{ID: "usr_9", ExternalID: "ada", DisplayName: "Ada Lovelace"}
	n.keys["key_1"] = registry.Key{ID: "key_1", Serial: "20000001", OwnerID: "usr_9", Role: registry.RolePrimary}
	e := client.AuditEntry{Action: "key.status", Payload: []byte(`{"id":"key_1","serial":"20000001","owner_id":"usr_9","status":"lost","role":"primary"}`)}
	if got := n.Describe(e); got != "key 20000001 of ada (Ada Lovelace) (primary) · status lost" {
		t.Errorf("describe %q", got)
	}
	v := client.AuditEntry{Action: "verification", Payload: []byte(`{"key_id":"key_1","kind":"piv","ok":true}`)}
	if got := n.Describe(v); got != "key 20000001 of ada (Ada Lovelace) (primary) · kind piv · passed true" {
		t.Errorf("describe %q", got)
	}
	// An id the registry did not know stays as it is.
	u := client.AuditEntry{Payload: []byte(`{"key_id":"key_gone","owner_id":"usr_9"}`)}
	if got := n.Describe(u); got != "key_gone · owner ada (Ada Lovelace)" {
		t.Errorf("describe %q", got)
	}
	f := n.Fields(e)
	if len(f) != 5 || f[0] != [2]string{"id", "key_1 — key 20000001 of ada (Ada Lovelace) (primary)"} || f[1] != [2]string{"owner_id", "usr_9 — ada (Ada Lovelace)"} {
		t.Errorf("fields %q", f)
	}
	if got := (*Names)(nil).Describe(e); !strings.Contains(got, "usr_9") {
		t.Errorf("no names: %q", got)
	}
}
