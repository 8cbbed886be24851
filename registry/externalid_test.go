package registry_test

import (
	"errors"
	"testing"

	"github.com/keydesk/keydesk/registry"
)

func TestNormalizeExternalID(t *testing.T) {
	for in, want := range map[string]string{"caf\u00e9": "caf\u00e9", "cafe\u0301": "caf\u00e9", "alice@example.org": "alice@example.org", "Ｍ": "Ｍ"} {
		if got, err := registry.NormalizeExternalID(in); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"a\u200bb", "\u202eab", "\ufeffab", "a\x00", "a\tb", "a\u00adb", "a\u2066b", "\xff"} {
		_, err := registry.NormalizeExternalID(in)
		var ie *registry.InvalidError
		if !errors.As(err, &ie) || ie.Code != "invalid_external_id" {
			t.Errorf("%q: %v, want invalid_external_id", in, err)
		}
	}
	if !registry.SameExternalID("caf\u00e9", "cafe\u0301") || registry.SameExternalID("cafe", "caf\u00e9") {
		t.Error("SameExternalID")
	}
}
