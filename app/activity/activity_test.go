package activity

import (
	"errors"
	"strings"
	"testing"

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
