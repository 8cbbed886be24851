package pivkey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/pcsc"
)

// YubiKey PIV extension instructions (Yubico PIV extensions; FACTS.md).
const (
	insVerify      = 0x20
	insChangeRef   = 0x24
	insResetRetry  = 0x2C
	insGenAuth     = 0x87
	insGetData     = 0xCB
	insPutData     = 0xDB
	insGetMetadata = 0xF7
	insGetSerial   = 0xF8
	insGetVersion  = 0xFD
)

// Metadata is the answer to GET METADATA (INS 0xF7, firmware 5.3+) for one
// slot, PIN (0x80), PUK (0x81) or the management key (0x9B).
type Metadata struct {
	Algorithm   byte
	PINPolicy   byte
	TouchPolicy byte
	Origin      byte // 1 generated, 2 imported
	PublicKey   []byte
	Default     bool // PIN, PUK or management key still the factory value
	Total       int  // PIN/PUK: tries configured
	Remaining   int  // PIN/PUK: tries left
}

// getMetadata reads GET METADATA for slot. It returns device.ErrNotSupported
// before firmware 5.3 and (nil, nil) for an empty key slot.
func getMetadata(s *pcsc.Session, slot byte) (*Metadata, error) {
	resp, sw, err := s.Transmit(insGetMetadata, 0x00, slot, nil)
	if err != nil {
		return nil, err
	}
	switch sw {
	case pcsc.SWOK:
	case pcsc.SWRefNotFound, pcsc.SWFileNotFound:
		return nil, nil
	case pcsc.SWInsNotSupported, pcsc.SWFuncNotSupported:
		return nil, fmt.Errorf("get metadata: %w", device.ErrNotSupported)
	default:
		return nil, &pcsc.StatusError{Ins: insGetMetadata, SW: sw}
	}
	m, err := parseMetadata(resp)
	if err != nil {
		return nil, fmt.Errorf("parsing metadata of slot %02x: %w", slot, err)
	}
	return m, nil
}

// parseMetadata decodes GET METADATA's answer: TLVs 01 algorithm, 02 PIN and
// touch policy, 03 origin, 04 public key, 05 default value, 06 retries
// (YubiKey PIV extension INS 0xF7; tags as yubikit.piv reads them).
func parseMetadata(resp []byte) (*Metadata, error) {
	var m Metadata
	for len(resp) > 0 {
		tag, v, rest, err := readTLV(resp)
		if err != nil {
			return nil, err
		}
		switch tag {
		case 0x01:
			if len(v) > 0 {
				m.Algorithm = v[0]
			}
		case 0x02:
			if len(v) > 0 {
				m.PINPolicy = v[0]
			}
			if len(v) > 1 {
				m.TouchPolicy = v[1]
			}
		case 0x03:
			if len(v) > 0 {
				m.Origin = v[0]
			}
		case 0x04:
			m.PublicKey = v
		case 0x05:
			m.Default = len(v) > 0 && v[0] == 1
		case 0x06:
			if len(v) >= 2 {
				m.Total, m.Remaining = int(v[0]), int(v[1])
			}
		}
		resp = rest
	}
	return &m, nil
}

// getObject reads a data object (SP 800-73-4 §3.1.2 GET DATA). A missing
// object is (nil, nil).
func getObject(s *pcsc.Session, id uint32) ([]byte, error) {
	tag := []byte{0x5C, 0x03, byte(id >> 16), byte(id >> 8), byte(id)}
	resp, sw, err := s.Transmit(insGetData, 0x3F, 0xFF, tag)
	if err != nil {
		return nil, err
	}
	switch sw {
	case pcsc.SWOK:
	case pcsc.SWFileNotFound:
		return nil, nil
	case pcsc.SWSecurityStatus:
		return nil, fmt.Errorf("reading object %06X: %w", id, errPINNeeded)
	default:
		return nil, &pcsc.StatusError{Ins: insGetData, SW: sw}
	}
	v, err := unwrapObject(resp)
	if err != nil {
		return nil, fmt.Errorf("parsing object %06X: %w", id, err)
	}
	return v, nil
}

// unwrapObject returns the value of GET DATA's answer, a 53 TLV (SP 800-73-4
// §3.1.2).
func unwrapObject(resp []byte) ([]byte, error) {
	t, v, _, err := readTLV(resp)
	if err != nil {
		return nil, err
	}
	if t != 0x53 {
		return nil, fmt.Errorf("tag 0x%02x, want 0x53", t)
	}
	return v, nil
}

// putObject writes a data object (SP 800-73-4 §3.3.2 PUT DATA); it needs the
// management key authenticated in this session.
func putObject(s *pcsc.Session, id uint32, value []byte) error {
	data := append([]byte{0x5C, 0x03, byte(id >> 16), byte(id >> 8), byte(id)}, tlv(0x53, value)...)
	_, err := s.Command(insPutData, 0x3F, 0xFF, data)
	return err
}

var errPINNeeded = errors.New("pin verification needed")

// verifyPIN presents the PIV PIN (SP 800-73-4 §3.2.1), padded with 0xFF to 8
// bytes.
func verifyPIN(s *pcsc.Session, pin string) error {
	b, err := encodePIN(pin)
	if err != nil {
		return err
	}
	_, sw, err := s.Transmit(insVerify, 0x00, 0x80, b)
	clear(b)
	if err != nil {
		return err
	}
	return authStatus(sw, false)
}

// pinRetries asks how many PIN tries are left without spending one (VERIFY
// with no data, SP 800-73-4 §3.2.1).
func pinRetries(s *pcsc.Session) (int, error) {
	_, sw, err := s.Transmit(insVerify, 0x00, 0x80, nil)
	if err != nil {
		return 0, err
	}
	switch {
	case sw == pcsc.SWOK:
		return -1, nil // already verified in this session; count unknown
	case sw&0xFFF0 == 0x63C0:
		return int(sw & 0x0F), nil
	case sw == pcsc.SWAuthBlocked:
		return 0, nil
	}
	return 0, &pcsc.StatusError{Ins: insVerify, SW: sw}
}

func authStatus(sw uint16, puk bool) error {
	switch {
	case sw == pcsc.SWOK:
		return nil
	case sw&0xFFF0 == 0x63C0 && sw&0x0F > 0:
		return &device.WrongPINError{PUK: puk, Retries: int(sw & 0x0F)}
	case sw&0xFFF0 == 0x63C0, sw == pcsc.SWAuthBlocked:
		if puk {
			return device.ErrPUKBlocked
		}
		return device.ErrPINBlocked
	}
	return &pcsc.StatusError{Ins: insVerify, SW: sw}
}

// encodePIN pads a 6–8 character PIN or PUK to 8 bytes with 0xFF (SP
// 800-73-4 §2.4.3).
func encodePIN(pin string) ([]byte, error) {
	if len(pin) < 6 || len(pin) > 8 {
		return nil, ErrPINFormat
	}
	b := make([]byte, 8)
	for i := range b {
		b[i] = 0xFF
	}
	copy(b, pin)
	return b, nil
}

// ErrPINFormat: a PIV PIN or PUK must be 6 to 8 characters.
var ErrPINFormat = errors.New("a PIV PIN or PUK must be 6 to 8 characters")

// authenticate performs management-key mutual authentication (SP 800-73-4
// §3.2.4 GENERAL AUTHENTICATE, key reference 9B) with a 3DES or AES key.
func authenticate(s *pcsc.Session, alg device.MgmtKeyAlgorithm, key []byte) error {
	block, err := mgmtCipher(alg, key)
	if err != nil {
		return err
	}
	n := block.BlockSize()
	resp, sw, err := s.Transmit(insGenAuth, byte(alg), 0x9B, []byte{0x7C, 0x02, 0x80, 0x00})
	if err != nil {
		return err
	}
	if sw != pcsc.SWOK {
		return &pcsc.StatusError{Ins: insGenAuth, SW: sw}
	}
	witness, err := dynAuth(resp, 0x80)
	if err != nil || len(witness) != n {
		return fmt.Errorf("management key witness malformed: %v", err)
	}
	plain := make([]byte, n)
	block.Decrypt(plain, witness)
	challenge := make([]byte, n)
	if _, err := rand.Read(challenge); err != nil {
		return err
	}
	inner := append(tlv(0x80, plain), tlv(0x81, challenge)...)
	resp, sw, err = s.Transmit(insGenAuth, byte(alg), 0x9B, tlv(0x7C, inner))
	if err != nil {
		return err
	}
	if sw == pcsc.SWSecurityStatus || sw == pcsc.SWAuthBlocked {
		return ErrWrongManagementKey
	}
	if sw != pcsc.SWOK {
		return &pcsc.StatusError{Ins: insGenAuth, SW: sw}
	}
	got, err := dynAuth(resp, 0x82)
	if err != nil {
		return fmt.Errorf("management key response malformed: %w", err)
	}
	want := make([]byte, n)
	block.Encrypt(want, challenge)
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return errors.New("the key's answer to the management key challenge is wrong; it may not be genuine")
	}
	return nil
}

// ErrWrongManagementKey: the card refused the management key.
var ErrWrongManagementKey = errors.New("wrong PIV management key")

func dynAuth(resp []byte, want byte) ([]byte, error) {
	t, inner, _, err := readTLV(resp)
	if err != nil || t != 0x7C {
		return nil, fmt.Errorf("dynamic authentication template: tag %02x: %v", t, err)
	}
	for len(inner) > 0 {
		t, v, rest, err := readTLV(inner)
		if err != nil {
			return nil, err
		}
		if t == want {
			return v, nil
		}
		inner = rest
	}
	return nil, fmt.Errorf("no tag %02x in dynamic authentication template", want)
}

func mgmtCipher(alg device.MgmtKeyAlgorithm, key []byte) (cipher.Block, error) {
	switch alg {
	case device.Mgmt3DES:
		if len(key) != 24 {
			return nil, fmt.Errorf("a 3DES management key is 24 bytes, not %d", len(key))
		}
		return des.NewTripleDESCipher(key)
	case device.MgmtAES128, device.MgmtAES192, device.MgmtAES256:
		if len(key) != mgmtKeyLen(alg) {
			return nil, fmt.Errorf("an %s management key is %d bytes, not %d", alg, mgmtKeyLen(alg), len(key))
		}
		return aes.NewCipher(key)
	}
	return nil, fmt.Errorf("management key algorithm %#02x unknown", byte(alg))
}

func mgmtKeyLen(alg device.MgmtKeyAlgorithm) int {
	switch alg {
	case device.MgmtAES128:
		return 16
	case device.MgmtAES256:
		return 32
	}
	return 24
}
