package server_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"

	"github.com/keydesk/keydesk/registry/credential"
)

type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func issueCert(t *testing.T, parent *testCA, key *ecdsa.PrivateKey, tmpl *x509.Certificate) *testCA {
	t.Helper()
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	pc, pk := tmpl, key
	if parent != nil {
		pc, pk = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pc, &key.PublicKey, pk)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{key: key, cert: c}
}

func caCert(t *testing.T, parent *testCA, cn string) *testCA {
	return issueCert(t, parent, mustEC(p256.Curve), &x509.Certificate{Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign})
}

// pivAttestation is a YubiKey-style chain: root -> F9 device certificate ->
// slot certificate for slotKey naming serial.
func pivAttestation(t *testing.T, root *testCA, serial int64, slotKey *ecdsa.PrivateKey) (slot, dev []byte) {
	d := caCert(t, root, "Test PIV Attestation")
	sn, _ := asn1.Marshal(big.NewInt(serial))
	s := issueCert(t, d, slotKey, &x509.Certificate{Subject: pkix.Name{CommonName: "YubiKey PIV Attestation 9a"},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}, Value: sn}}})
	return s.cert.Raw, d.cert.Raw
}

// packedAttestation is a packed attestation object (WebAuthn L2 §8.2) for
// credential credID with key cred, signed by a leaf under root.
func packedAttestation(t *testing.T, root *testCA, credID []byte, cred *ecdsa.PrivateKey, cdHash []byte) []byte {
	return packedAttestationOf(t, root, credID, cred, cdHash, []byte("keydesk-test-aag"))
}

// packedAttestationOf is packedAttestation for an authenticator model
// (AAGUID) of one's choosing.
func packedAttestationOf(t *testing.T, root *testCA, credID []byte, cred *ecdsa.PrivateKey, cdHash, aaguid []byte) []byte {
	ext, _ := asn1.Marshal(aaguid)
	leaf := issueCert(t, root, mustEC(p256.Curve), &x509.Certificate{Subject: pkix.Name{CommonName: "Test FIDO", OrganizationalUnit: []string{"Authenticator Attestation"}, Organization: []string{"Test"}, Country: []string{"SE"}},
		BasicConstraintsValid: true, ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 45724, 1, 1, 4}, Value: ext}}})
	rp := sha256.Sum256([]byte("example.org"))
	ad := append(append([]byte{}, rp[:]...), 0x41, 0, 0, 0, 0)
	ad = append(ad, aaguid...)
	ad = binary.BigEndian.AppendUint16(ad, uint16(len(credID)))
	ad = append(append(ad, credID...), credential.COSEKeyES256(&cred.PublicKey)...)
	d := sha256.Sum256(append(append([]byte{}, ad...), cdHash...))
	sig, _ := ecdsa.SignASN1(rand.Reader, leaf.key, d[:])
	obj, err := cbor.Marshal(map[string]any{"fmt": "packed", "authData": ad, "attStmt": map[string]any{"alg": -7, "sig": sig, "x5c": [][]byte{leaf.cert.Raw}}})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// TestAttestationVerdicts: the registry, started with --trust-roots, decides
// each credential's verdict itself from the attestation it is given.
func TestAttestationVerdicts(t *testing.T) {
	trusted, stranger := caCert(t, nil, "Org Attestation Root"), caCert(t, nil, "Unknown Root")
	roots := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: trusted.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, "--trust-roots", roots)
	slotKey := mustEC(p256.Curve)
	cdj := []byte(`{"type":"webauthn.create","challenge":"AAAA","origin":"https://example.org","crossOrigin":false}`)
	cdh := sha256.Sum256(cdj)
	cases := []struct {
		name        string
		serial      int64
		fido        map[string]any
		piv         map[string]any
		fidoVerdict string
		pivVerdict  string
	}{
		{"genuine", 5001, map[string]any{"attestation_object": packedAttestation(t, trusted, []byte("c5001"), slotKey, cdh[:]), "attestation_client_data_json": cdj},
			nil, "genuine", "genuine"},
		{"untrusted root", 5002, map[string]any{"attestation_object": packedAttestation(t, stranger, []byte("c5002"), slotKey, cdh[:]), "attestation_client_data_json": cdj, "attestation_client_data_hash": cdh[:]},
			nil, "untrusted-root", "untrusted-root"},
		{"no attestation", 5003, map[string]any{}, map[string]any{"attestation_certificate": nil}, "none", "none"},
		{"claims another model", 5005, map[string]any{"attestation_object": packedAttestation(t, trusted, []byte("c5005"), slotKey, cdh[:]), "attestation_client_data_json": cdj,
			"aaguid": []byte("another-model-00")}, nil, "invalid", "none"},
		{"for another key", 5004, map[string]any{"attestation_object": packedAttestation(t, trusted, []byte("c5004"), mustEC(p256.Curve), cdh[:]), "attestation_client_data_json": cdj},
			nil, "invalid", "invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sn := big.NewInt(c.serial).String()
			fido := map[string]any{"credential_id": []byte("c" + sn), "public_key": credential.COSEKeyES256(&slotKey.PublicKey), "rp_id": "example.org"}
			for k, v := range c.fido {
				fido[k] = v
			}
			piv := map[string]any{"slot": "9a", "public_key": pkixDER(&slotKey.PublicKey)}
			switch c.name {
			case "genuine":
				piv["attestation_certificate"], piv["attestation_intermediate"] = pivAttestation(t, trusted, c.serial, slotKey)
			case "untrusted root":
				piv["attestation_certificate"], piv["attestation_intermediate"] = pivAttestation(t, stranger, c.serial, slotKey)
			case "for another key":
				piv["attestation_certificate"], piv["attestation_intermediate"] = pivAttestation(t, trusted, c.serial, mustEC(p256.Curve))
			}
			out := r.must(r.do(r.admin, "POST", "/v1/enrolments", map[string]any{
				"user": map[string]any{"external_id": "att-" + sn}, "key": map[string]any{"serial": sn},
				"fido2": []any{fido}, "piv": []any{piv},
			}), 201)
			// What the registry stored, read back.
			k := r.must(r.do(r.admin, "GET", "/v1/keys/"+out["key"].(map[string]any)["id"].(string), nil), 200)
			f, p := k["fido2"].([]any)[0].(map[string]any), k["piv"].([]any)[0].(map[string]any)
			if f["verdict"] != c.fidoVerdict || p["verdict"] != c.pivVerdict {
				t.Fatalf("fido2 %v (%v), piv %v (%v); want %s, %s", f["verdict"], f["verdict_reason"], p["verdict"], p["verdict_reason"], c.fidoVerdict, c.pivVerdict)
			}
			if c.name == "genuine" {
				reverify(t, f)
			}
		})
	}
	// A registration that brings the attestation object with only the hash
	// of its clientDataJSON is refused: it could not be verified again.
	hashOnly := r.do(r.admin, "POST", "/v1/enrolments", map[string]any{
		"user": map[string]any{"external_id": "hash-only"}, "key": map[string]any{"serial": "5010"},
		"fido2": []any{map[string]any{"credential_id": []byte("c5010"), "public_key": credential.COSEKeyES256(&slotKey.PublicKey), "rp_id": "example.org",
			"attestation_object": packedAttestation(t, trusted, []byte("c5010"), slotKey, cdh[:]), "attestation_client_data_hash": cdh[:]}},
	})
	if hashOnly.status != 422 || hashOnly.body["code"] != "missing_client_data_json" {
		t.Fatalf("hash-only registration: %d %s", hashOnly.status, hashOnly.raw)
	}
	// clientDataJSON of an assertion is not a registration's.
	wrongType := r.do(r.admin, "POST", "/v1/enrolments", map[string]any{
		"user": map[string]any{"external_id": "wrong-type"}, "key": map[string]any{"serial": "5011"},
		"fido2": []any{map[string]any{"credential_id": []byte("c5011"), "public_key": credential.COSEKeyES256(&slotKey.PublicKey), "rp_id": "example.org",
			"attestation_object":           packedAttestation(t, trusted, []byte("c5011"), slotKey, cdh[:]),
			"attestation_client_data_json": []byte(`{"type":"webauthn.get","challenge":"AAAA","origin":"https://example.org"}`)}},
	})
	if wrongType.status != 422 || wrongType.body["code"] != "invalid_client_data" {
		t.Fatalf("assertion client data as a registration: %d %s", wrongType.status, wrongType.raw)
	}
	// The client cannot assert a verdict.
	res := r.do(r.admin, "POST", "/v1/enrolments", map[string]any{
		"user": map[string]any{"external_id": "liar"}, "key": map[string]any{"serial": "5009"},
		"piv": []any{map[string]any{"slot": "9a", "public_key": pkixDER(&slotKey.PublicKey), "verdict": "genuine"}},
	})
	if res.status != 400 || res.body["code"] != "unknown_field" {
		t.Fatalf("client-asserted verdict: %d %s", res.status, res.raw)
	}
}

// TestServeHelp: `serve --help` prints the usage with the attestation
// flags on stdout and exits 0.
func TestServeHelp(t *testing.T) {
	out, err := runBin("serve", "--help")
	if err != nil {
		t.Fatalf("serve --help: %v\n%s", err, out)
	}
	for _, want := range []string{"usage:", "--practice", "-trust-roots"} {
		if !contains(out, want) {
			t.Fatalf("serve --help lacks %q:\n%s", want, out)
		}
	}
}

// reverify feeds a FIDO2 credential as the registry returns it to
// go-webauthn's registration verification (WebAuthn L2 §7.1), as an auditor
// or another identity provider would: the stored clientDataJSON and
// attestation object, checked for this relying party and the challenge the
// stored client data names.
func reverify(t *testing.T, f map[string]any) {
	t.Helper()
	cdj, obj, id := b64(t, f["attestation_client_data_json"]), b64(t, f["attestation_object"]), b64(t, f["credential_id"])
	body, _ := json.Marshal(map[string]any{
		"id": base64.RawURLEncoding.EncodeToString(id), "rawId": base64.RawURLEncoding.EncodeToString(id), "type": "public-key",
		"response": map[string]any{"clientDataJSON": base64.RawURLEncoding.EncodeToString(cdj), "attestationObject": base64.RawURLEncoding.EncodeToString(obj)},
	})
	pcc, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		t.Fatalf("parsing the stored registration: %v", err)
	}
	var cd struct {
		Challenge string `json:"challenge"`
	}
	if err := json.Unmarshal(cdj, &cd); err != nil {
		t.Fatal(err)
	}
	params := []protocol.CredentialParameter{{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgES256}}
	verify := func(challenge string) error {
		_, err := pcc.Verify(challenge, f["rp_id"].(string), []string{"https://" + f["rp_id"].(string)}, nil, nil,
			protocol.TopOriginExplicitVerificationMode, false, false, true, nil, params, protocol.AttestationPolicy{}, protocol.SignaturePolicy{})
		return err
	}
	if err := verify(cd.Challenge); err != nil {
		t.Fatalf("go-webauthn refuses the stored registration: %v", err)
	}
	if !bytes.Equal(pcc.Response.AttestationObject.AuthData.AttData.CredentialID, id) {
		t.Fatalf("verified registration is for credential %x, stored %x", pcc.Response.AttestationObject.AuthData.AttData.CredentialID, id)
	}
	// The check can fail: another challenge does not verify.
	if err := verify("BBBB"); err == nil {
		t.Fatal("go-webauthn accepted the stored registration for another challenge")
	}
}
