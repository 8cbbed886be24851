package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/registry"
)

// The readiness report names the new keys' models from the FIDO Metadata
// Service, counted by user, when the registry has them.
func TestReadinessNamesModels(t *testing.T) {
	var out bytes.Buffer
	e := &env{stdout: &out}
	yk := registry.FIDOModel{AAGUID: "a", Model: "YubiKey 5 Series", Status: "FIDO_CERTIFIED_L2"}
	printReadiness(e, registry.Readiness{MigrationID: "mig_1", Users: []registry.UserReadiness{
		{Ready: true, BModels: []registry.FIDOModel{yk}},
		{Ready: true, BModels: []registry.FIDOModel{yk}},
		{Ready: true, BModels: []registry.FIDOModel{{AAGUID: "b"}}},
		{Ready: true},
	}})
	want := "  new keys' FIDO2 models: YubiKey 5 Series (FIDO_CERTIFIED_L2): 2 users; unlisted AAGUID b: 1 user\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("readiness:\n%s\nwant the line\n%s", out.String(), want)
	}
	out.Reset()
	printReadiness(e, registry.Readiness{MigrationID: "mig_1", Users: []registry.UserReadiness{{Ready: true}}})
	if strings.Contains(out.String(), "models") {
		t.Errorf("without metadata the report names models:\n%s", out.String())
	}
}
