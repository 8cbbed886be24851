package enrol

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/attest"
	"github.com/keydesk/keydesk/registry/credential"
)

// TestStoredRegistrationReverifies: the FIDO2 registration a real enrolment
// (a practice key through libfido2) leaves in the registry, read back
// through the API, verifies end to end with go-webauthn's registration
// verification (WebAuthn L2 §7.1) from the stored clientDataJSON and
// attestation object, and its x5c chains to the practice FIDO root: what an
// auditor or another identity provider can check later.
func TestStoredRegistrationReverifies(t *testing.T) {
	d := newDesk(t)
	e := d.enroller()
	ctx := context.Background()
	res, err := e.EnrolKey(ctx, Request{User: ada, CreateUser: true}, testUI(nil))
	if err != nil {
		t.Fatal(err)
	}
	kd, err := d.cl.Key(ctx, res.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	if len(kd.FIDO2) != 1 {
		t.Fatalf("fido2: %+v", kd.FIDO2)
	}
	f := kd.FIDO2[0]
	if len(f.AttestationClientDataJSON) == 0 || f.Verdict != registry.VerdictGenuine {
		t.Fatalf("stored registration: client data %q, verdict %s", f.AttestationClientDataJSON, f.Verdict)
	}
	enc := base64.RawURLEncoding.EncodeToString
	body, _ := json.Marshal(map[string]any{"id": enc(f.CredentialID), "rawId": enc(f.CredentialID), "type": "public-key",
		"response": map[string]any{"clientDataJSON": enc(f.AttestationClientDataJSON), "attestationObject": enc(f.AttestationObject)}})
	pcc, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		t.Fatalf("parsing the stored registration: %v", err)
	}
	verify := func(challenge string) error {
		_, err := pcc.Verify(challenge, f.RPID, []string{credential.Origin(f.RPID)}, nil, nil, protocol.TopOriginExplicitVerificationMode,
			false, false, true, nil, credential.Algorithms, protocol.AttestationPolicy{}, protocol.SignaturePolicy{})
		return err
	}
	if err := verify(pcc.Response.CollectedClientData.Challenge); err != nil {
		t.Fatalf("go-webauthn refuses the stored registration: %v", err)
	}
	if err := verify(enc([]byte("another challenge"))); err == nil {
		t.Fatal("go-webauthn accepted the stored registration for another challenge")
	}
	// The attested key is the registered one, and the statement's chain
	// reaches the practice FIDO root.
	if got, want := pcc.Response.AttestationObject.AuthData.AttData.CredentialPublicKey, f.PublicKey; string(got) != string(want) {
		t.Fatal("attested public key is not the registered one")
	}
	x5c, _ := pcc.Response.AttestationObject.AttStatement["x5c"].([]any)
	if len(x5c) == 0 {
		t.Fatal("no x5c in the stored attestation")
	}
	leaf, err := x509.ParseCertificate(x5c[0].([]byte))
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(attest.PracticeRoots()[0])
	for _, c := range x5c[1:] {
		if ic, err := x509.ParseCertificate(c.([]byte)); err == nil {
			inter.AddCert(ic)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("attestation chain: %v", err)
	}
}
