// Package mdstest signs FIDO Metadata Service v3 BLOBs under a test root
// chain, for tests of the registry's MDS support. Nothing here is trusted
// outside tests: the registry trusts a test root only when told to
// (`keydesk-registry mds update --trust-root`).
package mdstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"time"
)

// Chain is a test MDS signing chain: root -> intermediate -> signer.
type Chain struct {
	Root, Intermediate, Signer *x509.Certificate
	signerKey                  *ecdsa.PrivateKey
}

// NewChain makes a chain valid from an hour ago for a year.
func NewChain() (*Chain, error) {
	now := time.Now()
	mk := func(cn string, ca bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		sn, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
		t := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: cn, Organization: []string{"keydesk tests"}},
			NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), BasicConstraintsValid: true, IsCA: ca}
		if ca {
			t.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		} else {
			t.KeyUsage = x509.KeyUsageDigitalSignature
		}
		if parent == nil {
			parent, parentKey = t, k
		}
		der, err := x509.CreateCertificate(rand.Reader, t, parent, &k.PublicKey, parentKey)
		if err != nil {
			return nil, nil, err
		}
		c, err := x509.ParseCertificate(der)
		return c, k, err
	}
	root, rk, err := mk("keydesk Test MDS Root", true, nil, nil)
	if err != nil {
		return nil, err
	}
	inter, ik, err := mk("keydesk Test MDS Intermediate", true, root, rk)
	if err != nil {
		return nil, err
	}
	signer, sk, err := mk("keydesk Test MDS Signer", false, inter, ik)
	if err != nil {
		return nil, err
	}
	return &Chain{Root: root, Intermediate: inter, Signer: signer, signerKey: sk}, nil
}

// RootPEM is the chain's root as PEM.
func (c *Chain) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw})
}

// Model is one FIDO2 authenticator model in a test BLOB.
type Model struct {
	AAGUID      string // canonical text form
	Description string
	// Statuses are status reports, oldest first: status and effective date.
	Statuses [][2]string
	// Roots are the model's attestation roots (DER).
	Roots [][]byte
}

// BLOB signs a BLOB with serial number no and nextUpdate next (a date)
// listing models, as an ES256 JWS with the chain's signer and intermediate
// in x5c (FIDO Metadata Service v3.0 §3.1.7).
func (c *Chain) BLOB(no int, next time.Time, models ...Model) ([]byte, error) {
	entries := []map[string]any{}
	for _, m := range models {
		reports := []map[string]any{}
		for _, s := range m.Statuses {
			reports = append(reports, map[string]any{"status": s[0], "effectiveDate": s[1]})
		}
		roots := []string{}
		for _, r := range m.Roots {
			roots = append(roots, base64.StdEncoding.EncodeToString(r))
		}
		entries = append(entries, map[string]any{
			"aaguid": m.AAGUID,
			"metadataStatement": map[string]any{
				"legalHeader": "keydesk test metadata", "aaguid": m.AAGUID, "description": m.Description,
				"authenticatorVersion": 1, "protocolFamily": "fido2", "schema": 3,
				"upv":                         []map[string]int{{"major": 1, "minor": 1}},
				"authenticationAlgorithms":    []string{"secp256r1_ecdsa_sha256_raw"},
				"publicKeyAlgAndEncodings":    []string{"cose"},
				"attestationTypes":            []string{"basic_full"},
				"userVerificationDetails":     [][]map[string]any{{{"userVerificationMethod": "presence_internal"}}},
				"keyProtection":               []string{"hardware", "secure_element"},
				"matcherProtection":           []string{"on_chip"},
				"attachmentHint":              []string{"external", "wired"},
				"tcDisplay":                   []string{},
				"attestationRootCertificates": roots,
			},
			"statusReports":          reports,
			"timeOfLastStatusChange": "2024-01-01",
		})
	}
	payload, err := json.Marshal(map[string]any{"legalHeader": "keydesk test metadata", "no": no, "nextUpdate": next.Format(time.DateOnly), "entries": entries})
	if err != nil {
		return nil, err
	}
	header, err := json.Marshal(map[string]any{"alg": "ES256", "typ": "JWT",
		"x5c": []string{base64.StdEncoding.EncodeToString(c.Signer.Raw), base64.StdEncoding.EncodeToString(c.Intermediate.Raw)}})
	if err != nil {
		return nil, err
	}
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc(header) + "." + enc(payload)
	d := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, c.signerKey, d[:])
	if err != nil {
		return nil, err
	}
	sig := make([]byte, 64) // JWS ES256: R || S, 32 bytes each (RFC 7518 §3.4)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return []byte(signing + "." + enc(sig)), nil
}
