package mds_test

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/google/uuid"

	"github.com/keydesk/keydesk/registry/mds"
	"github.com/keydesk/keydesk/registry/mds/mdstest"
)

const yk5 = "cb69481e-8ff7-4039-93ec-0a2729a154a8"

func chain(t *testing.T) *mdstest.Chain {
	t.Helper()
	c, err := mdstest.NewChain()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestVerify: a BLOB signed under the test root loads and names a model by
// its AAGUID with its newest status and highest certification.
func TestVerify(t *testing.T) {
	c := chain(t)
	now := time.Now()
	blob, err := c.BLOB(42, now.AddDate(0, 1, 0),
		mdstest.Model{AAGUID: yk5, Description: "YubiKey 5 Series with NFC", Roots: [][]byte{c.Root.Raw},
			Statuses: [][2]string{{"FIDO_CERTIFIED_L1", "2020-05-12"}, {"FIDO_CERTIFIED_L2", "2022-03-01"}, {"UPDATE_AVAILABLE", "2023-10-01"}}},
		mdstest.Model{AAGUID: "00000000-0000-0000-0000-000000000001", Description: "Revoked Key", Statuses: [][2]string{{"FIDO_CERTIFIED_L1", "2019-01-01"}, {"REVOKED", "2021-01-01"}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := mds.Verify(blob, mds.Options{Roots: []*x509.Certificate{c.Root}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if s.Number != 42 || len(s.Entries) != 2 {
		t.Fatalf("set: no %d, %d entries", s.Number, len(s.Entries))
	}
	id := uuid.MustParse(yk5)
	e, ok := s.Lookup(id[:])
	if !ok || e.Description != "YubiKey 5 Series with NFC" || e.Status != "UPDATE_AVAILABLE" || e.StatusDate != "2023-10-01" || e.Certification != "FIDO_CERTIFIED_L2" {
		t.Fatalf("entry %+v (found %v)", e, ok)
	}
	if e.Undesired() {
		t.Fatal("UPDATE_AVAILABLE counted as undesired")
	}
	if r, ok := s.Lookup([]byte{1, 2}); ok {
		t.Fatalf("a short aaguid found %+v", r)
	}
	rid := uuid.MustParse("00000000-0000-0000-0000-000000000001")
	if r, ok := s.Lookup(rid[:]); !ok || r.Status != "REVOKED" || !r.Undesired() || r.Certification != "FIDO_CERTIFIED_L1" {
		t.Fatalf("revoked entry %+v (found %v)", r, ok)
	}
	if roots := s.AttestationRoots(); len(roots) != 1 || !roots[0].Equal(c.Root) {
		t.Fatalf("attestation roots: %v", roots)
	}
	if _, ok := s.Lookup(make([]byte, 16)); ok {
		t.Fatal("found an unknown AAGUID")
	}
	var none *mds.Set
	if _, ok := none.Lookup(id[:]); ok {
		t.Fatal("a nil set found an entry")
	}
}

// TestVerifyRefuses: a tampered, an expired and a foreign-signed BLOB are
// refused with their typed errors.
func TestVerifyRefuses(t *testing.T) {
	c := chain(t)
	now := time.Now()
	m := mdstest.Model{AAGUID: yk5, Description: "YubiKey 5", Statuses: [][2]string{{"FIDO_CERTIFIED_L1", "2020-05-12"}}}
	blob, err := c.BLOB(1, now.AddDate(0, 0, 7), m)
	if err != nil {
		t.Fatal(err)
	}
	opt := mds.Options{Roots: []*x509.Certificate{c.Root}, Now: now}
	// The payload changed after signing: another model name.
	parts := strings.Split(string(blob), ".")
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	parts[1] = base64.RawURLEncoding.EncodeToString(bytes.Replace(p, []byte("YubiKey 5"), []byte("YubiKey 6"), 1))
	if _, err := mds.Verify([]byte(strings.Join(parts, ".")), opt); !errors.Is(err, mds.ErrUntrusted) {
		t.Fatalf("tampered payload: %v", err)
	}
	// Signed under another root.
	if _, err := mds.Verify(blob, mds.Options{Roots: []*x509.Certificate{chain(t).Root}, Now: now}); !errors.Is(err, mds.ErrUntrusted) {
		t.Fatalf("foreign root: %v", err)
	}
	// Against the embedded GlobalSign roots a test BLOB does not verify.
	if _, err := mds.Verify(blob, mds.Options{Now: now}); !errors.Is(err, mds.ErrUntrusted) {
		t.Fatalf("embedded roots: %v", err)
	}
	// Past nextUpdate; the day itself still counts.
	if _, err := mds.Verify(blob, mds.Options{Roots: opt.Roots, Now: now.AddDate(0, 0, 8)}); !errors.Is(err, mds.ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := mds.Verify(blob, mds.Options{Roots: opt.Roots, Now: now.AddDate(0, 0, 7)}); err != nil {
		t.Fatalf("on its nextUpdate day: %v", err)
	}
	if _, err := mds.Verify([]byte("not a jws"), opt); !errors.Is(err, mds.ErrUntrusted) {
		t.Fatalf("garbage: %v", err)
	}
}

// TestEmbeddedRoots: the embedded roots are GlobalSign Root CA - R3 and
// GlobalSign Root R46, the latter the same certificate go-webauthn ships
// as the production MDS root.
func TestEmbeddedRoots(t *testing.T) {
	rs := mds.Roots()
	if len(rs) != 2 || rs[0].Subject.OrganizationalUnit[0] != "GlobalSign Root CA - R3" || rs[1].Subject.CommonName != "GlobalSign Root R46" {
		t.Fatalf("roots: %v, %v", rs[0].Subject, rs[1].Subject)
	}
	want, _ := base64.StdEncoding.DecodeString(metadata.ProductionMDSRoot)
	if !bytes.Equal(rs[1].Raw, want) {
		t.Fatal("embedded R46 is not go-webauthn's production MDS root")
	}
}
