package invui

import (
	"strings"
	"testing"

	"github.com/keydesk/keydesk/app/inventory"
	"github.com/keydesk/keydesk/registry"
)

// A key's line in the selected user's panel names its FIDO2 model from the
// FIDO Metadata Service when the registry has one, and nothing without.
func TestKeyLineNamesModel(t *testing.T) {
	v := &Inventory{}
	k := inventory.Key{Key: registry.Key{Serial: "31000001", Role: registry.RolePrimary, Status: registry.KeyActive},
		FIDO2Models: []registry.FIDOModel{{AAGUID: "a", Model: "YubiKey 5 Series", Status: "FIDO_CERTIFIED_L2"}}}
	if got := v.keyLine(k); !strings.HasSuffix(got, "\nFIDO2: YubiKey 5 Series (FIDO_CERTIFIED_L2)") {
		t.Errorf("key line %q does not name the model", got)
	}
	k.FIDO2Models = nil
	if got := v.keyLine(k); strings.Contains(got, "FIDO2:") {
		t.Errorf("key line %q names a model without metadata", got)
	}
}
