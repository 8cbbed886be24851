package practiceroots

import (
	"crypto"
	"crypto/x509"
	"testing"

	"github.com/keydesk/keydesk/device/virtual/ctap"
	"github.com/keydesk/keydesk/device/virtual/pivapplet"
	"github.com/keydesk/keydesk/registry/attest"
)

// TestEmbeddedPracticeRootsMatchVirtualKeys: same subject and same public
// key (the virtual roots' self-signatures differ between processes, so the
// certificates are compared by what a chain check uses).
func TestEmbeddedPracticeRootsMatchVirtualKeys(t *testing.T) {
	fido, err := ctap.AttestationCA()
	if err != nil {
		t.Fatal(err)
	}
	emb := attest.PracticeRoots()
	if len(emb) != 2 {
		t.Fatalf("%d embedded practice roots", len(emb))
	}
	for i, live := range []*x509.Certificate{fido, pivapplet.VirtualRoot()} {
		if emb[i].Subject.String() != live.Subject.String() {
			t.Errorf("root %d: embedded %q, virtual key %q", i, emb[i].Subject, live.Subject)
		}
		if !emb[i].PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(live.PublicKey) {
			t.Errorf("root %d (%s): embedded public key differs from the virtual key's", i, live.Subject.CommonName)
		}
	}
}
