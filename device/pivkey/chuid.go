package pivkey

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/pcsc"
)

// Card identification data objects (NIST SP 800-73-4 Part 1 Table 3).
const (
	// objCHUID is the Card Holder Unique Identifier (§3.1.2), tag 0x5FC102.
	objCHUID = 0x5FC102
	// objCCC is the Card Capability Container (§3.1.1), tag 0x5FC107.
	objCCC = 0x5FC107
)

// Object names a card identification object for ReadCardIDs and
// WriteCardIDs.
type Object string

const (
	CHUID Object = "chuid"
	CCC   Object = "ccc"
)

func (o Object) tag() (uint32, error) {
	switch o {
	case CHUID:
		return objCHUID, nil
	case CCC:
		return objCCC, nil
	}
	return 0, fmt.Errorf("unknown object %q: want chuid or ccc", string(o))
}

// FASCN is a Federal Agency Smart Credential Number: nine decimal fields
// (TIG SCEPACS §6.6; SP 800-73-4 Part 1 §3.1.2 puts it in the CHUID).
type FASCN struct {
	AgencyCode              int // 4 digits
	SystemCode              int // 4 digits
	CredentialNumber        int // 6 digits
	CredentialSeries        int // 1 digit
	IndividualCredential    int // 1 digit
	PersonIdentifier        int // 10 digits
	OrganizationalCategory  int // 1 digit
	OrganizationalID        int // 4 digits
	PersonOrgAssociationCat int // 1 digit
}

// NonFederalFASCN is the FASC-N of a card not issued by a federal agency:
// agency, system and credential numbers all nines (SP 800-73-4 Part 1
// §3.1.2 and the CIO Council's PIV-I guidance). ykman writes this one.
var NonFederalFASCN = FASCN{9999, 9999, 999999, 0, 1, 0, 3, 0, 1}

// FASC-N characters are 4-bit BCD, least significant bit first, plus an odd
// parity bit: 5 bits each (TIG SCEPACS §6.6).
const (
	fascnSS = 0b11010 // start sentinel
	fascnFS = 0b10110 // field separator
	fascnES = 0b11111 // end sentinel
)

// Bytes encodes f as the 25-byte FASC-N of the CHUID: start sentinel, the
// fields with separators, end sentinel and a longitudinal redundancy check,
// 40 characters of 5 bits.
func (f FASCN) Bytes() []byte {
	var chars []byte
	digits := func(v, n int) {
		ds := make([]byte, n)
		for i := n - 1; i >= 0; i-- {
			ds[i] = byte(v % 10)
			v /= 10
		}
		for _, d := range ds {
			c := (d&1)<<4 | (d&2)<<2 | (d & 4) | (d&8)>>2 // reversed: b0 b1 b2 b3
			ones := d&1 + d>>1&1 + d>>2&1 + d>>3&1
			chars = append(chars, c|(ones+1)%2)
		}
	}
	chars = append(chars, fascnSS)
	digits(f.AgencyCode, 4)
	chars = append(chars, fascnFS)
	digits(f.SystemCode, 4)
	chars = append(chars, fascnFS)
	digits(f.CredentialNumber, 6)
	chars = append(chars, fascnFS)
	digits(f.CredentialSeries, 1)
	chars = append(chars, fascnFS)
	digits(f.IndividualCredential, 1)
	chars = append(chars, fascnFS)
	digits(f.PersonIdentifier, 10)
	digits(f.OrganizationalCategory, 1)
	digits(f.OrganizationalID, 4)
	digits(f.PersonOrgAssociationCat, 1)
	chars = append(chars, fascnES)
	var lrc byte
	for _, c := range chars {
		lrc ^= c
	}
	chars = append(chars, lrc)
	out := make([]byte, 25)
	for i, c := range chars {
		for b := 0; b < 5; b++ {
			if c&(0x10>>b) != 0 {
				bit := i*5 + b
				out[bit/8] |= 0x80 >> (bit % 8)
			}
		}
	}
	return out
}

// String is the FASC-N's digits as ykman shows them.
func (f FASCN) String() string {
	return fmt.Sprintf("%04d-%04d-%06d-%d-%d-%010d%d%04d%d", f.AgencyCode, f.SystemCode, f.CredentialNumber,
		f.CredentialSeries, f.IndividualCredential, f.PersonIdentifier, f.OrganizationalCategory, f.OrganizationalID, f.PersonOrgAssociationCat)
}

// CardID is a decoded CHUID (SP 800-73-4 Part 1 §3.1.2, Table 9): the
// FASC-N (tag 30), the GUID (34), the expiration date (35, YYYYMMDD) and the
// issuer's asymmetric signature (3E, empty when unsigned).
type CardID struct {
	FASCN      []byte
	GUID       []byte
	Expiration string
	Signed     bool
}

// GUIDString formats the GUID as RFC 4122 text.
func (c *CardID) GUIDString() string {
	if len(c.GUID) != 16 {
		return hex.EncodeToString(c.GUID)
	}
	g := hex.EncodeToString(c.GUID)
	return g[0:8] + "-" + g[8:12] + "-" + g[12:16] + "-" + g[16:20] + "-" + g[20:]
}

// NewCHUID returns an unsigned CHUID as ykman generates one: the
// non-federal FASC-N, a random RFC 4122 version 4 GUID (which OpenSC and
// the Windows minidriver take as the card's serial number), expiry
// 2030-01-01, an empty signature and an empty error detection code.
func NewCHUID(r io.Reader) ([]byte, error) {
	guid := make([]byte, 16)
	if _, err := io.ReadFull(r, guid); err != nil {
		return nil, fmt.Errorf("generating the chuid guid: %w", err)
	}
	guid[6] = guid[6]&0x0F | 0x40 // version 4
	guid[8] = guid[8]&0x3F | 0x80 // RFC 4122 variant
	var b []byte
	b = append(b, tlv(0x30, NonFederalFASCN.Bytes())...)
	b = append(b, tlv(0x34, guid)...)
	b = append(b, tlv(0x35, []byte("20300101"))...)
	b = append(b, tlv(0x3E, nil)...)
	b = append(b, tlv(0xFE, nil)...)
	return b, nil
}

// NewCCC returns a Card Capability Container as ykman generates one (SP
// 800-73-4 Part 1 §3.1.1, Table 8): a card identifier made of the GSC-RID
// A0 00 00 01 16, manufacturer FF, card type 02 and 14 random bytes, then
// container version 21, grammar version 21, PKCS#15 version 00, data model
// 10 and the other fields empty.
func NewCCC(r io.Reader) ([]byte, error) {
	id := []byte{0xA0, 0x00, 0x00, 0x01, 0x16, 0xFF, 0x02}
	random := make([]byte, 14)
	if _, err := io.ReadFull(r, random); err != nil {
		return nil, fmt.Errorf("generating the ccc card identifier: %w", err)
	}
	var b []byte
	b = append(b, tlv(0xF0, append(id, random...))...)
	b = append(b, tlv(0xF1, []byte{0x21})...)
	b = append(b, tlv(0xF2, []byte{0x21})...)
	b = append(b, tlv(0xF3, nil)...)
	b = append(b, tlv(0xF4, []byte{0x00})...)
	b = append(b, tlv(0xF5, []byte{0x10})...)
	for _, t := range []byte{0xF6, 0xF7, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE} {
		b = append(b, tlv(t, nil)...)
	}
	return b, nil
}

// ParseCHUID decodes a CHUID's value (the content of its 53 wrapper).
func ParseCHUID(b []byte) (*CardID, error) {
	var c CardID
	var sawSig bool
	for len(b) > 0 {
		t, v, rest, err := readTLV(b)
		if err != nil {
			return nil, fmt.Errorf("parsing chuid: %w", err)
		}
		switch t {
		case 0x30:
			c.FASCN = v
		case 0x34:
			c.GUID = v
		case 0x35:
			c.Expiration = string(v)
		case 0x3E:
			sawSig, c.Signed = true, len(v) > 0
		}
		b = rest
	}
	if c.FASCN == nil || !sawSig {
		return nil, errors.New("parsing chuid: no fasc-n or no signature field")
	}
	return &c, nil
}

// CardIDs is what a key holds in its card identification objects; a nil
// field means the object is absent.
type CardIDs struct {
	CHUID    []byte
	CCC      []byte
	Parsed   *CardID // nil when CHUID is absent or unparsable
	ParseErr error
}

// ReadCardIDs reads the CHUID and the CCC (GET DATA, SP 800-73-4 Part 1
// §3.1.1 and §3.1.2; readable without the PIN).
func (c *Card) ReadCardIDs(ctx context.Context) (*CardIDs, error) {
	s, _, _, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return c.readCardIDs(s)
}

func (c *Card) readCardIDs(s *pcsc.Session) (*CardIDs, error) {
	var ids CardIDs
	var err error
	if ids.CHUID, err = getObject(s, objCHUID); err != nil {
		return nil, fmt.Errorf("reading the chuid: %w", c.classify(err))
	}
	if ids.CCC, err = getObject(s, objCCC); err != nil {
		return nil, fmt.Errorf("reading the ccc: %w", c.classify(err))
	}
	if ids.CHUID != nil {
		ids.Parsed, ids.ParseErr = ParseCHUID(ids.CHUID)
	}
	return &ids, nil
}

// WriteCardIDs writes a new CHUID and CCC, as ykman's "piv objects
// generate" does; objects names which (both when empty). It replaces
// what the key holds, so a key's PKCS#11 serial and its Windows smart-card
// identity change: callers confirm first. It needs the management key.
func (c *Card) WriteCardIDs(ctx context.Context, cb device.Callbacks, objects ...Object) error {
	if len(objects) == 0 {
		objects = []Object{CHUID, CCC}
	}
	for _, o := range objects {
		if _, err := o.tag(); err != nil {
			return err
		}
	}
	s, fw, _, err := c.session(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, _, _, err := c.mgmt(ctx, s, fw, cb); err != nil {
		return err
	}
	for _, o := range objects {
		if err := c.writeCardID(s, o); err != nil {
			return err
		}
	}
	return nil
}

func (c *Card) writeCardID(s *pcsc.Session, o Object) error {
	tag, err := o.tag()
	if err != nil {
		return err
	}
	var v []byte
	if o == CHUID {
		v, err = NewCHUID(rand.Reader)
	} else {
		v, err = NewCCC(rand.Reader)
	}
	if err != nil {
		return err
	}
	if err := putObject(s, tag, v); err != nil {
		return fmt.Errorf("writing the %s: %w", o, c.classify(err))
	}
	return nil
}

// ensureCardIDs writes a CHUID and a CCC where the key has none, in a
// session where the management key is authenticated. An existing object,
// signed or not, is left as it is.
func (c *Card) ensureCardIDs(s *pcsc.Session) error {
	ids, err := c.readCardIDs(s)
	if err != nil {
		return err
	}
	if ids.CHUID == nil {
		if err := c.writeCardID(s, CHUID); err != nil {
			return err
		}
	}
	if ids.CCC == nil {
		if err := c.writeCardID(s, CCC); err != nil {
			return err
		}
	}
	return nil
}

// EnsureCardIDs gives the key a CHUID and a CCC if it lacks them, leaving
// existing ones untouched. PKCS#11 software (OpenSC) takes the CHUID's GUID
// as the token's serial number, so without it every key shows the same
// serial; the Windows smart-card minidriver needs both. Storing a
// certificate (SelfSign, ImportCertificate) does this already; enrolment
// calls it when it stores none (CSR mode). It needs the management key.
func (c *Card) EnsureCardIDs(ctx context.Context, cb device.Callbacks) error {
	s, fw, _, err := c.session(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	if _, _, _, err := c.mgmt(ctx, s, fw, cb); err != nil {
		return err
	}
	return c.ensureCardIDs(s)
}
