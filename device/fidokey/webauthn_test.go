package fidokey_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/go-webauthn/webauthn/metadata/providers/memory"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/google/uuid"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/virtual/ctap"
)

func TestClientDataJSON(t *testing.T) {
	got, err := fidokey.ClientDataJSON("webauthn.create", []byte{0xfb, 0xff, 0x3e, 0x01}, "a&b.example")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"webauthn.create","challenge":"-_8-AQ","origin":"https://a&b.example","crossOrigin":false}`
	if string(got) != want {
		t.Fatalf("clientDataJSON\n got %s\nwant %s", got, want)
	}
}

// rpMetadata is the relying party's trust store: the virtual key's AAGUID
// with the virtual FIDO attestation CA as its root (WebAuthn L2 §7.1 step
// 20, through FIDO metadata).
func rpMetadata(t *testing.T) metadata.Provider {
	t.Helper()
	ca, err := ctap.AttestationCA()
	if err != nil {
		t.Fatal(err)
	}
	return rpMetadataWithRoot(t, ca)
}

func rpMetadataWithRoot(t *testing.T, ca *x509.Certificate) metadata.Provider {
	t.Helper()
	id := uuid.UUID(ctap.AAGUID)
	entry := &metadata.Entry{AaGUID: id, MetadataStatement: metadata.Statement{
		AaGUID:                      id,
		Description:                 "keydesk virtual YubiKey 5",
		AttestationTypes:            metadata.AuthenticatorAttestationTypes{metadata.BasicFull},
		AttestationRootCertificates: []*x509.Certificate{ca},
	}}
	p, err := memory.New(memory.WithMetadata(map[uuid.UUID]*metadata.Entry{id: entry}),
		memory.WithValidateEntry(true), memory.WithValidateTrustAnchor(true),
		memory.WithValidateStatus(false), memory.WithValidateAttestationTypes(true))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var b64 = base64.RawURLEncoding.EncodeToString

// rpVerifyRegistration verifies a registration exactly as a relying party
// does with go-webauthn: from the JSON a browser would post.
func rpVerifyRegistration(t *testing.T, reg *fidokey.Registration, challenge []byte, rpID string, uv bool, mds metadata.Provider) *protocol.ParsedCredentialCreationData {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"id": b64(reg.CredentialID), "rawId": b64(reg.CredentialID), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64(reg.ClientDataJSON), "attestationObject": b64(reg.AttestationObject)},
	})
	pcc, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		t.Fatalf("relying party parsing the registration: %v", err)
	}
	params := []protocol.CredentialParameter{{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgES256}}
	if _, err := pcc.Verify(b64(challenge), rpID, []string{"https://" + rpID}, nil, nil, protocol.TopOriginImplicitVerificationMode,
		false, uv, true, mds, params, protocol.AttestationPolicy{}, protocol.SignaturePolicy{}); err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			t.Fatalf("relying party rejects the registration: %v: %s %s", err, pe.Details, pe.DevInfo)
		}
		t.Fatalf("relying party rejects the registration: %v", err)
	}
	return pcc
}

func rpVerifyAssertion(t *testing.T, a *fidokey.Assertion, challenge []byte, rpID string, uv bool, cosePub []byte) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"id": b64(a.CredentialID), "rawId": b64(a.CredentialID), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64(a.ClientDataJSON), "authenticatorData": b64(a.AuthenticatorData),
			"signature": b64(a.Signature), "userHandle": b64(a.UserHandle)},
	})
	par, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		t.Fatalf("relying party parsing the assertion: %v", err)
	}
	if err := par.Verify(b64(challenge), rpID, "", []string{"https://" + rpID}, nil, nil, protocol.TopOriginImplicitVerificationMode,
		false, uv, true, cosePub, protocol.SignaturePolicy{}); err != nil {
		var pe *protocol.Error
		if errors.As(err, &pe) {
			t.Fatalf("relying party rejects the assertion: %v: %s %s", err, pe.Details, pe.DevInfo)
		}
		t.Fatalf("relying party rejects the assertion: %v", err)
	}
}

func TestMakeCredentialVerifiesAsRelyingParty(t *testing.T) {
	tg := newTarget(t, 3100010)
	ctx := ctxT(t)
	mds := rpMetadata(t)
	if tg.vk == nil {
		mds = nil // a real key chains to Yubico's roots, not the virtual CA
	}
	const rpID = "login.keydesk.example"
	user := []byte("user-handle-0001")

	// Without a PIN: a non-discoverable credential, no user verification.
	var touched int
	cb := tg.callbacks()
	cb.Touch = func(context.Context) { touched++ }
	chal := []byte("registration challenge one, 32by")
	reg, err := tg.dev.MakeCredential(ctx, fidokey.MakeOptions{RPID: rpID, RPName: "Keydesk", UserID: user, UserName: "ada", DisplayName: "Ada", Challenge: chal}, cb)
	if err != nil {
		t.Fatal(err)
	}
	if touched != 1 {
		t.Errorf("touch callback called %d times", touched)
	}
	pcc := rpVerifyRegistration(t, reg, chal, rpID, false, mds)
	if !bytes.Equal(pcc.Response.AttestationObject.AuthData.AttData.CredentialPublicKey, reg.PublicKey) || reg.Format != "packed" || len(reg.AttestationCerts) == 0 || reg.UserVerified {
		t.Errorf("registration %+v", reg)
	}
	if tg.vk != nil && reg.AAGUID != ctap.AAGUID {
		t.Errorf("aaguid %x", reg.AAGUID)
	}
	chal2 := []byte("assertion challenge")
	a, err := tg.dev.GetAssertion(ctx, fidokey.AssertOptions{RPID: rpID, Challenge: chal2, CredentialIDs: [][]byte{reg.CredentialID}}, cb)
	if err != nil {
		t.Fatal(err)
	}
	rpVerifyAssertion(t, a, chal2, rpID, false, reg.PublicKey)
	if a.SignCount <= reg.SignCount && a.SignCount != 0 {
		t.Errorf("sign count %d after %d", a.SignCount, reg.SignCount)
	}

	// With a PIN: discoverable, credProtect 2, user verified.
	if err := tg.dev.SetPIN(ctx, pin1); err != nil {
		t.Fatal(err)
	}
	asked := ""
	cb.PIN = func(_ context.Context, what string) (string, error) { asked = what; return pin1, nil }
	reg, err = tg.dev.MakeCredential(ctx, fidokey.MakeOptions{RPID: rpID, UserID: user, UserName: "ada", Challenge: chal, Discoverable: true, CredProtect: 2}, cb)
	if err != nil {
		t.Fatal(err)
	}
	if asked != "FIDO2 PIN" || !reg.UserVerified || reg.CredProtect != 2 {
		t.Errorf("pin asked %q, uv %v, credProtect %d", asked, reg.UserVerified, reg.CredProtect)
	}
	rpVerifyRegistration(t, reg, chal, rpID, true, mds)
	a, err = tg.dev.GetAssertion(ctx, fidokey.AssertOptions{RPID: rpID, Challenge: chal2, UserVerification: true}, cb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.UserHandle, user) || !bytes.Equal(a.CredentialID, reg.CredentialID) || !a.UserVerified {
		t.Errorf("discoverable assertion: user %q id match %v uv %v", a.UserHandle, bytes.Equal(a.CredentialID, reg.CredentialID), a.UserVerified)
	}
	rpVerifyAssertion(t, a, chal2, rpID, true, reg.PublicKey)

	// A relying party must reject what it did not ask for.
	body, _ := json.Marshal(map[string]any{"id": b64(reg.CredentialID), "rawId": b64(reg.CredentialID), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64(reg.ClientDataJSON), "attestationObject": b64(reg.AttestationObject)}})
	pcc, err = protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pcc.Verify(b64([]byte("another challenge")), rpID, []string{"https://" + rpID}, nil, nil, protocol.TopOriginImplicitVerificationMode,
		false, true, true, mds, nil, protocol.AttestationPolicy{}, protocol.SignaturePolicy{}); err == nil {
		t.Error("relying party accepted a registration for another challenge")
	}

	// Nor may it accept an attestation that chains to another root.
	if tg.vk != nil {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another root"}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		other, _ := x509.ParseCertificate(der)
		if _, err := pcc.Verify(b64(chal), rpID, []string{"https://" + rpID}, nil, nil, protocol.TopOriginImplicitVerificationMode,
			false, true, true, rpMetadataWithRoot(t, other), nil, protocol.AttestationPolicy{}, protocol.SignaturePolicy{}); err == nil {
			t.Error("relying party accepted an attestation that does not chain to its root")
		}
	}

	// A wrong PIN on an assertion is typed, with the retries.
	var wp *device.WrongPINError
	if _, err := tg.dev.GetAssertion(ctx, fidokey.AssertOptions{RPID: rpID, Challenge: chal2, UserVerification: true}, tg.callbacksWithPIN(wrong)); !errors.As(err, &wp) || wp.Retries != 7 {
		t.Fatalf("assertion with a wrong pin: %v", err)
	}
	// An unknown RP has no credential.
	if _, err := tg.dev.GetAssertion(ctx, fidokey.AssertOptions{RPID: "other.example", Challenge: chal2}, cb); !errors.Is(err, device.ErrNoCredentials) {
		t.Fatalf("assertion for an unknown rp: %v, want ErrNoCredentials", err)
	}
}

// TestMakeCredentialRelyingPartyChoices: the exclude list, required user
// verification, enforced credProtect and an explicit origin reach the key
// and the client data exactly as asked.
func TestMakeCredentialRelyingPartyChoices(t *testing.T) {
	tg := newTarget(t, 3100012)
	ctx := ctxT(t)
	const rpID = "login.microsoft.com"
	user := []byte("user-handle-0002")
	chal := []byte("registration challenge two, 32by")
	base := fidokey.MakeOptions{RPID: rpID, RPName: "Microsoft", UserID: user, UserName: "ada@contoso.example", DisplayName: "Ada", Challenge: chal}

	// No PIN yet: user verification "required" refuses before the key is asked.
	o := base
	o.RequireUV = true
	if _, err := tg.dev.MakeCredential(ctx, o, tg.callbacks()); !errors.Is(err, device.ErrPINNotSet) {
		t.Fatalf("required UV on a key without a PIN: %v, want ErrPINNotSet", err)
	}

	o = base
	o.Origin = "https://origin.example"
	o.CredProtect, o.EnforceCredProtect = 2, true
	o.Discoverable = true
	reg, err := tg.dev.MakeCredential(ctx, o, tg.callbacks())
	if err != nil {
		t.Fatal(err)
	}
	if want := `"origin":"https://origin.example"`; !bytes.Contains(reg.ClientDataJSON, []byte(want)) {
		t.Errorf("clientDataJSON %s lacks %s", reg.ClientDataJSON, want)
	}
	if reg.CredProtect != 2 {
		t.Errorf("credProtect %d, want 2", reg.CredProtect)
	}

	// The same key again with its own credential excluded.
	o = base
	o.ExcludeCredentials = [][]byte{[]byte("some other credential id"), reg.CredentialID}
	if _, err := tg.dev.MakeCredential(ctx, o, tg.callbacks()); !errors.Is(err, fidokey.ErrExcluded) {
		t.Fatalf("excluded credential: %v, want ErrExcluded", err)
	}
	// An exclude list that does not name it lets the key make another.
	o.ExcludeCredentials = [][]byte{[]byte("some other credential id")}
	if _, err := tg.dev.MakeCredential(ctx, o, tg.callbacks()); err != nil {
		t.Fatalf("exclude list not naming the key's credential: %v", err)
	}
}
