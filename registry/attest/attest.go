// Package attest checks, on the server, the attestation a key gives for a
// credential: FIDO2 attestation statements (WebAuthn L2 §8, verified by
// go-webauthn; YubiKeys give "packed", §8.2) and
// YubiKey PIV attestation certificates (slot certificate signed by the
// key's F9 device certificate). Both must chain to roots the registry was
// configured with; the client's opinion is never asked.
//
// The result is one of four verdicts:
//   - genuine: the statement is well formed, its signature verifies, it is
//     for the registered public key, and its chain reaches a trusted root;
//   - untrusted-root: all of that, but the chain ends at a root the registry
//     does not trust (or the statement is self attestation);
//   - invalid: something does not verify or does not match (bad signature,
//     another key, another credential, expired chain, missing part);
//   - none: no attestation was given.
package attest

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"embed"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncbor"

	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/credential"
)

//go:embed roots/*.pem
var rootFiles embed.FS

// Result is a verdict with the reason for anything short of genuine.
type Result struct {
	Verdict registry.AttestationVerdict
	Reason  string
	// AAGUID is the attested authenticator data's AAGUID (FIDO2, when the
	// attestation object parses).
	AAGUID []byte
}

func verdict(v registry.AttestationVerdict, format string, args ...any) Result {
	return Result{Verdict: v, Reason: fmt.Sprintf(format, args...)}
}

// Roots are the trust anchors attestation chains must reach.
type Roots struct {
	fido, piv     *x509.CertPool
	intermediates *x509.CertPool
}

// Yubico returns Yubico's published roots: for FIDO "Yubico U2F Root CA
// Serial 457200631" and "Yubico FIDO Root CA Serial 450203556"; for PIV
// "Yubico PIV Root CA Serial 263751" (firmware up to 5.7.3) and "Yubico
// Attestation Root 1" with its intermediates (5.7.4 and later). The PEM
// files in roots/ are copies of Yubico's yubico-ca-certs.txt and
// yubico-intermediate.pem.
func Yubico() *Roots {
	r := &Roots{fido: x509.NewCertPool(), piv: x509.NewCertPool(), intermediates: x509.NewCertPool()}
	r.mustAdd(r.fido, "roots/yubico-fido.pem")
	r.mustAdd(r.piv, "roots/yubico-piv.pem")
	r.mustAdd(r.intermediates, "roots/yubico-intermediates.pem")
	return r
}

func (r *Roots) mustAdd(pool *x509.CertPool, name string) {
	b, err := rootFiles.ReadFile(name)
	if err != nil {
		panic("attest: embedded " + name + ": " + err.Error())
	}
	if !pool.AppendCertsFromPEM(b) {
		panic("attest: no certificate in embedded " + name)
	}
}

// AddPractice trusts the roots of keydesk's virtual keys (practice mode).
// Their private keys are derived from public seeds: anyone can issue under
// them, so a production registry must never call this.
func (r *Roots) AddPractice() {
	r.mustAdd(r.fido, "roots/practice-fido.pem")
	r.mustAdd(r.piv, "roots/practice-piv.pem")
}

// WithFIDO returns a copy of r that also trusts certs as FIDO attestation
// roots (a FIDO Metadata Service BLOB's attestationRootCertificates).
func (r *Roots) WithFIDO(certs []*x509.Certificate) *Roots {
	c := &Roots{fido: r.fido.Clone(), piv: r.piv, intermediates: r.intermediates}
	for _, cert := range certs {
		c.fido.AddCert(cert)
	}
	return c
}

// AddPEM trusts every certificate in b as a root for both FIDO and PIV
// attestation (an organisation's own CA, or test roots).
func (r *Roots) AddPEM(b []byte) error {
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return fmt.Errorf("trust roots: %w", err)
		}
		r.fido.AddCert(c)
		r.piv.AddCert(c)
		n++
	}
	if n == 0 {
		return errors.New("trust roots: no PEM certificate found")
	}
	return nil
}

func (r *Roots) chain(leaf *x509.Certificate, roots *x509.CertPool, extra []*x509.Certificate, now time.Time) Result {
	inter := r.intermediates.Clone()
	for _, c := range extra {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	var ua x509.UnknownAuthorityError
	switch {
	case err == nil:
		return Result{Verdict: registry.VerdictGenuine}
	case errors.As(err, &ua):
		return verdict(registry.VerdictUntrustedRoot, "chain does not reach a trusted root: %v", err)
	}
	return verdict(registry.VerdictInvalid, "attestation chain: %v", err)
}

// FIDOInput is what a FIDO2 enrolment carries about one credential.
type FIDOInput struct {
	AttestationObject []byte // CBOR {fmt, attStmt, authData} (WebAuthn L2 §6.5)
	ClientDataHash    []byte // SHA-256 of the clientDataJSON the key signed
	CredentialID      []byte
	PublicKey         []byte // COSE_Key being registered
	RPID              string
}

// FIDO checks an attestation object with go-webauthn's registration
// verification (WebAuthn L2 §7.1 steps 13-19, and the verification
// procedure of the statement's format, e.g. §8.2.1 for packed): the
// authenticator data is for this relying party with user presence, its
// credential id and public key are the registered ones, the key's algorithm
// is one the registry accepts, and the statement's signature over
// authenticatorData || clientDataHash verifies with the certificate
// requirements of its format. The registry then chains the statement's x5c
// to its FIDO roots at now. go-webauthn also checks each x5c certificate's
// validity period against the wall clock.
func (r *Roots) FIDO(in FIDOInput, now time.Time) Result {
	if len(in.AttestationObject) == 0 {
		return Result{Verdict: registry.VerdictNone}
	}
	var obj protocol.AttestationObject
	if err := webauthncbor.Unmarshal(in.AttestationObject, &obj); err != nil {
		return verdict(registry.VerdictInvalid, "attestation object: %v", err)
	}
	if protocol.AttestationFormat(obj.Format) == protocol.AttestationFormatNone {
		return Result{Verdict: registry.VerdictNone}
	}
	if err := obj.AuthData.Unmarshal(obj.RawAuthData); err != nil {
		return verdict(registry.VerdictInvalid, "authenticator data: %s", credential.LibError(err))
	}
	ad := obj.AuthData
	if !ad.Flags.HasAttestedCredentialData() {
		return verdict(registry.VerdictInvalid, "authenticator data carries no attested credential")
	}
	res := r.checkFIDO(&obj, in, now)
	res.AAGUID = ad.AttData.AAGUID
	return res
}

// checkFIDO is FIDO's checks past parsing, on an object with an attested
// credential.
func (r *Roots) checkFIDO(obj *protocol.AttestationObject, in FIDOInput, now time.Time) Result {
	ad := obj.AuthData
	rp := sha256.Sum256([]byte(in.RPID))
	if !bytes.Equal(ad.RPIDHash, rp[:]) {
		return verdict(registry.VerdictInvalid, "authenticator data is for another relying party")
	}
	if !bytes.Equal(ad.AttData.CredentialID, in.CredentialID) {
		return verdict(registry.VerdictInvalid, "attested credential id is not the registered one")
	}
	attested, err := credential.ParseCOSEKey(ad.AttData.CredentialPublicKey)
	if err != nil {
		return verdict(registry.VerdictInvalid, "attested public key: %v", err)
	}
	registered, err := credential.ParseCOSEKey(in.PublicKey)
	if err != nil || !sameKey(attested, registered) {
		return verdict(registry.VerdictInvalid, "attested public key is not the registered one")
	}
	if len(in.ClientDataHash) != sha256.Size {
		return verdict(registry.VerdictInvalid, "no client data hash to check the attestation signature against")
	}
	if err := obj.Verify(in.RPID, in.ClientDataHash, false, true, nil, credential.Algorithms, protocol.AttestationPolicy{}, protocol.SignaturePolicy{}); err != nil {
		msg := credential.LibError(err)
		if strings.Contains(msg, "signature") {
			return verdict(registry.VerdictInvalid, "attestation signature: %s", msg)
		}
		return verdict(registry.VerdictInvalid, "attestation statement: %s", msg)
	}
	x5c, _ := obj.AttStatement["x5c"].([]any)
	if len(x5c) == 0 {
		// Self attestation (§8.2.1): signed by the credential key itself,
		// which says nothing about who made the authenticator; or a format
		// whose chain is not in x5c, which the registry cannot anchor.
		if obj.Type == string(metadata.BasicSurrogate) {
			return verdict(registry.VerdictUntrustedRoot, "self attestation: no certificate chain")
		}
		return verdict(registry.VerdictUntrustedRoot, "%s attestation (%s) has no x5c chain to check", obj.Format, obj.Type)
	}
	certs := make([]*x509.Certificate, len(x5c))
	for i, v := range x5c {
		der, _ := v.([]byte)
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return verdict(registry.VerdictInvalid, "x5c[%d]: %v", i, err)
		}
	}
	return r.chain(certs[0], r.fido, certs[1:], now)
}

func sameKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// oidYubicoSerial is the YubiKey serial number extension of a PIV
// attestation certificate (Yubico, "PIV attestation").
var oidYubicoSerial = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 41482, 3, 7}

// PIVInput is what a PIV enrolment carries about one slot.
type PIVInput struct {
	SlotCert   []byte           // ATTEST (INS 0xF9) output for the slot
	DeviceCert []byte           // the key's attestation certificate from slot F9
	SlotKey    crypto.PublicKey // the public key being registered
	Serial     string           // the enrolled key's serial, checked when numeric
}

// PIV checks a YubiKey PIV attestation: the slot certificate certifies the
// registered slot key, is signed by the F9 device certificate, names the
// enrolled serial (when the certificate carries one), and the device
// certificate chains to a PIV root.
func (r *Roots) PIV(in PIVInput, now time.Time) Result {
	if len(in.SlotCert) == 0 {
		return Result{Verdict: registry.VerdictNone}
	}
	slot, err := x509.ParseCertificate(in.SlotCert)
	if err != nil {
		return verdict(registry.VerdictInvalid, "slot attestation certificate: %v", err)
	}
	if !sameKey(slot.PublicKey, in.SlotKey) {
		return verdict(registry.VerdictInvalid, "attested public key is not the registered slot key")
	}
	if len(in.DeviceCert) == 0 {
		return verdict(registry.VerdictInvalid, "no F9 device certificate to check the slot attestation against")
	}
	dev, err := x509.ParseCertificate(in.DeviceCert)
	if err != nil {
		return verdict(registry.VerdictInvalid, "F9 device certificate: %v", err)
	}
	// The device certificate signs slot certificates although older
	// firmware does not mark it as a CA, so the signature is checked
	// directly rather than with CheckSignatureFrom.
	if err := dev.CheckSignature(slot.SignatureAlgorithm, slot.RawTBSCertificate, slot.Signature); err != nil {
		return verdict(registry.VerdictInvalid, "slot certificate is not signed by the F9 device certificate: %v", err)
	}
	if now.Before(slot.NotBefore) || now.After(slot.NotAfter) {
		return verdict(registry.VerdictInvalid, "slot attestation certificate is outside its validity period")
	}
	if want, err := strconv.ParseUint(in.Serial, 10, 64); err == nil {
		for _, e := range slot.Extensions {
			if e.Id.Equal(oidYubicoSerial) {
				var got *big.Int
				if _, err := asn1.Unmarshal(e.Value, &got); err != nil || !got.IsUint64() || got.Uint64() != want {
					return verdict(registry.VerdictInvalid, "attestation names another serial number")
				}
			}
		}
	}
	return r.chain(dev, r.piv, nil, now)
}

func embedded(name string) []*x509.Certificate {
	b, err := rootFiles.ReadFile(name)
	if err != nil {
		panic("attest: embedded " + name + ": " + err.Error())
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			panic("attest: embedded " + name + ": " + err.Error())
		}
		out = append(out, c)
	}
}

// Subjects lists the common names of every embedded root, practice roots
// included.
func Subjects() []string {
	var out []string
	for _, f := range []string{"roots/yubico-fido.pem", "roots/yubico-piv.pem", "roots/practice-fido.pem", "roots/practice-piv.pem"} {
		for _, c := range embedded(f) {
			out = append(out, c.Subject.CommonName)
		}
	}
	return out
}

// PracticeRoots returns the embedded practice roots: the virtual FIDO
// attestation CA and the virtual PIV attestation root, in that order.
func PracticeRoots() []*x509.Certificate {
	return append(embedded("roots/practice-fido.pem"), embedded("roots/practice-piv.pem")...)
}
