package kinds_test

import (
	"slices"
	"testing"

	"github.com/keydesk/keydesk/app/idp"
	_ "github.com/keydesk/keydesk/app/idp/kinds"
)

// TestKindsLinked: the desk can open every connector kind by name.
func TestKindsLinked(t *testing.T) {
	for _, k := range []string{"entra", "kratos", "okta"} {
		if !slices.Contains(idp.Kinds(), k) {
			t.Errorf("kind %q is not linked into the desk: %v", k, idp.Kinds())
		}
	}
}
