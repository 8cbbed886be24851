// Package mds reads a FIDO Metadata Service v3 BLOB (FIDO Metadata Service
// v3.0 §3.1): a JWS whose payload lists authenticator models by AAGUID with
// their metadata statements and certification status. The organisation
// downloads the BLOB (https://mds3.fidoalliance.org/); the registry loads it
// with `keydesk-registry mds update --file BLOB` after checking, as §3.1.7
// requires, that the x5c chain in its header reaches the FIDO Alliance's
// root, that its signature verifies with the first certificate of that
// chain, and that its nextUpdate has not passed. What it keeps of each
// FIDO2 entry is an Entry: the model's name, its certification status and
// its attestation roots.
//
// The JWS and chain checks are go-webauthn's metadata decoder's, run once
// for each embedded root (Roots).
package mds

import (
	"crypto/sha256"
	"crypto/x509"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/google/uuid"
)

//go:embed roots/*.pem
var rootFiles embed.FS

// ErrUntrusted: the BLOB is not a JWS whose x5c chain reaches a trusted
// root and whose signature verifies with that chain (§3.1.7 steps 3-4).
var ErrUntrusted = errors.New("mds blob does not verify to the FIDO Alliance root")

// ErrExpired: the BLOB's nextUpdate has passed; the organisation should
// download the current one (§3.1.7 step 5, §3.1.6 nextUpdate).
var ErrExpired = errors.New("mds blob is past its nextUpdate")

// ErrOlder: the BLOB's serial number is lower than the one the registry
// already holds (§3.1.7 step 6: serial numbers only increase).
var ErrOlder = errors.New("mds blob is older than the one loaded")

// Entry is what the registry keeps of one FIDO2 authenticator model.
type Entry struct {
	// AAGUID in its canonical text form (RFC 9562 §4).
	AAGUID string `json:"aaguid"`
	// Description is the model's name, as its metadata statement gives it.
	Description string `json:"description"`
	// Status is the newest status report's status (e.g. FIDO_CERTIFIED_L1,
	// NOT_FIDO_CERTIFIED, REVOKED; FIDO Metadata Service v3.0 §3.1.4).
	Status string `json:"status"`
	// StatusDate is that report's effective date (YYYY-MM-DD), if given.
	StatusDate string `json:"status_date,omitempty"`
	// Certification is the highest FIDO certification level any report
	// names (FIDO_CERTIFIED, FIDO_CERTIFIED_L1 … L3+), empty when none.
	Certification string `json:"certification,omitempty"`
	// AttestationRoots are the statement's attestationRootCertificates
	// (DER), trust anchors for this model's attestation.
	AttestationRoots [][]byte `json:"attestation_roots,omitempty"`
}

// Undesired reports whether the entry's newest status is one a relying
// party should not accept attestation from: a compromised attestation or
// user key, a user verification bypass, a revoked or retired model
// (FIDO Metadata Service v3.0 §3.1.4; go-webauthn's default list).
func (e Entry) Undesired() bool {
	return metadata.IsUndesiredAuthenticatorStatus(metadata.AuthenticatorStatus(e.Status))
}

// Set is a verified BLOB's FIDO2 entries.
type Set struct {
	// Number is the BLOB's serial number (payload "no").
	Number int `json:"no"`
	// NextUpdate is the date by which a newer BLOB is published.
	NextUpdate time.Time `json:"next_update"`
	// SHA256 is the hex SHA-256 of the BLOB as loaded.
	SHA256 string `json:"sha256"`
	// Entries are sorted by AAGUID.
	Entries []Entry `json:"entries"`

	index map[string]int
}

// Options tune Verify.
type Options struct {
	// Roots are the trust anchors the BLOB's x5c must reach; Roots() when
	// empty. Tests pass their own.
	Roots []*x509.Certificate
	// Now is the time nextUpdate is checked against (default time.Now).
	Now time.Time
}

// Verify checks a BLOB and returns its FIDO2 entries. Errors wrap
// ErrUntrusted or ErrExpired, or say what in the payload does not parse.
func Verify(blob []byte, opt Options) (*Set, error) {
	roots := opt.Roots
	if len(roots) == 0 {
		roots = Roots()
	}
	blob = []byte(strings.TrimSpace(string(blob)))
	var payload *metadata.PayloadJSON
	var dec *metadata.Decoder
	var errs []error
	for _, r := range roots {
		d, err := metadata.NewDecoder(metadata.WithRootCertificate(base64.StdEncoding.EncodeToString(r.Raw)), metadata.WithIgnoreEntryParsingErrors())
		if err != nil {
			return nil, err
		}
		p, err := d.DecodeBytes(blob)
		if err == nil {
			payload, dec = p, d
			break
		}
		errs = append(errs, fmt.Errorf("%s: %w", r.Subject.CommonName, err))
	}
	if payload == nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrusted, errors.Join(errs...))
	}
	md, err := dec.Parse(payload)
	if err != nil {
		return nil, fmt.Errorf("mds payload: %w", err)
	}
	// nextUpdate is a date: the BLOB serves through the end of that day.
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	if !opt.Now.Before(md.Parsed.NextUpdate.AddDate(0, 0, 1)) {
		return nil, fmt.Errorf("%w: nextUpdate %s, now %s", ErrExpired, md.Parsed.NextUpdate.Format(time.DateOnly), opt.Now.UTC().Format(time.DateOnly))
	}
	sum := sha256.Sum256(blob)
	s := &Set{Number: md.Parsed.Number, NextUpdate: md.Parsed.NextUpdate, SHA256: hex.EncodeToString(sum[:]), Entries: []Entry{}}
	for _, e := range md.Parsed.Entries {
		if e.AaGUID == uuid.Nil {
			continue // UAF (AAID) and U2F (key identifier) entries
		}
		s.Entries = append(s.Entries, entryOf(e))
	}
	sort.Slice(s.Entries, func(i, j int) bool { return s.Entries[i].AAGUID < s.Entries[j].AAGUID })
	s.reindex()
	return s, nil
}

func entryOf(e metadata.Entry) Entry {
	out := Entry{AAGUID: e.AaGUID.String(), Description: e.MetadataStatement.Description}
	var newest *metadata.StatusReport
	for i := range e.StatusReports {
		r := &e.StatusReports[i]
		if newest == nil || atLeastAsNew(r, newest) {
			newest = r
		}
		if lvl := string(r.Status); strings.HasPrefix(lvl, "FIDO_CERTIFIED") && lvl > out.Certification {
			out.Certification = lvl // FIDO_CERTIFIED < _L1 < _L1plus < _L2 … sort as text
		}
	}
	if newest != nil {
		out.Status = string(newest.Status)
		if newest.EffectiveDate != nil {
			out.StatusDate = newest.EffectiveDate.Format(time.DateOnly)
		}
	}
	for _, c := range e.MetadataStatement.AttestationRootCertificates {
		out.AttestationRoots = append(out.AttestationRoots, c.Raw)
	}
	return out
}

// atLeastAsNew orders status reports by effective date; undated ones come
// first, and among equals the later one in the list wins.
func atLeastAsNew(a, b *metadata.StatusReport) bool {
	switch {
	case a.EffectiveDate == nil:
		return b.EffectiveDate == nil
	case b.EffectiveDate == nil:
		return true
	}
	return !a.EffectiveDate.Before(*b.EffectiveDate)
}

func (s *Set) reindex() {
	s.index = make(map[string]int, len(s.Entries))
	for i, e := range s.Entries {
		s.index[e.AAGUID] = i
	}
}

// Lookup finds the entry for a 16-byte AAGUID as authenticator data
// carries it (WebAuthn L2 §6.5.1). A nil Set has no entries.
func (s *Set) Lookup(aaguid []byte) (Entry, bool) {
	if s == nil || len(aaguid) != 16 {
		return Entry{}, false
	}
	if s.index == nil {
		s.reindex()
	}
	u, _ := uuid.FromBytes(aaguid)
	i, ok := s.index[u.String()]
	if !ok {
		return Entry{}, false
	}
	return s.Entries[i], true
}

// AttestationRoots returns every entry's attestation roots that parse.
func (s *Set) AttestationRoots() []*x509.Certificate {
	if s == nil {
		return nil
	}
	var out []*x509.Certificate
	for _, e := range s.Entries {
		for _, der := range e.AttestationRoots {
			if c, err := x509.ParseCertificate(der); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// Roots returns the embedded trust anchors for the BLOB: "GlobalSign Root
// CA - R3", the root FIDO Metadata Service v3.0 names, and "GlobalSign Root
// R46", which the FIDO Alliance names now (the BLOB's x5c carries R46
// cross-signed by R3, so it reaches either). The PEM files in roots/ say
// where they were copied from.
func Roots() []*x509.Certificate {
	var out []*x509.Certificate
	for _, name := range []string{"roots/globalsign-root-ca-r3.pem", "roots/globalsign-root-r46.pem"} {
		b, err := rootFiles.ReadFile(name)
		if err != nil {
			panic("mds: embedded " + name + ": " + err.Error())
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			panic("mds: no certificate in embedded " + name)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			panic("mds: embedded " + name + ": " + err.Error())
		}
		out = append(out, c)
	}
	return out
}
