package pivkey

import (
	"bytes"
	"errors"
	"fmt"
)

// Objects ykman uses to keep a PIN-protected management key (YubiKey PIV
// extensions; ykman's piv "protected" mode).
const (
	objPIVMAN  = 0x5FFF00 // TLV 80 { 81: flags, 82: salt, 83: PIN timestamp }
	objPrinted = 0x5FC109 // TLV 88 { 89: management key }, read needs the PIN

	pivmanPUKBlocked = 0x01 // deprecated PIN-derived mode
	pivmanMgmStored  = 0x02 // management key stored in PRINTED
)

// pivman is the decoded PIVMAN data object. Unknown inner tags are kept so a
// rewrite does not lose them.
type pivman struct {
	Flags    byte
	HasFlags bool
	rest     []byte // other inner TLVs, verbatim
}

// tlv encodes one BER-TLV with a one-byte tag (ISO 7816-4 §5.2).
func tlv(tag byte, v []byte) []byte {
	var b bytes.Buffer
	b.WriteByte(tag)
	switch n := len(v); {
	case n < 0x80:
		b.WriteByte(byte(n))
	case n <= 0xFF:
		b.Write([]byte{0x81, byte(n)})
	default:
		b.Write([]byte{0x82, byte(n >> 8), byte(n)})
	}
	b.Write(v)
	return b.Bytes()
}

// readTLV splits one BER-TLV with a one-byte tag off the front of b.
func readTLV(b []byte) (tag byte, v, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, errors.New("tlv truncated")
	}
	tag, n, off := b[0], int(b[1]), 2
	switch b[1] {
	case 0x81:
		if len(b) < 3 {
			return 0, nil, nil, errors.New("tlv length truncated")
		}
		n, off = int(b[2]), 3
	case 0x82:
		if len(b) < 4 {
			return 0, nil, nil, errors.New("tlv length truncated")
		}
		n, off = int(b[2])<<8|int(b[3]), 4
	default:
		if b[1] >= 0x80 {
			return 0, nil, nil, fmt.Errorf("tlv length form 0x%02x unsupported", b[1])
		}
	}
	if len(b)-off < n {
		return 0, nil, nil, errors.New("tlv value truncated")
	}
	return tag, b[off : off+n], b[off+n:], nil
}

func parsePIVMAN(data []byte) (pivman, error) {
	var p pivman
	if len(data) == 0 {
		return p, nil
	}
	tag, inner, _, err := readTLV(data)
	if err != nil {
		return p, fmt.Errorf("parsing pivman object: %w", err)
	}
	if tag != 0x80 {
		return p, fmt.Errorf("parsing pivman object: tag 0x%02x, want 0x80", tag)
	}
	for len(inner) > 0 {
		t, v, rest, err := readTLV(inner)
		if err != nil {
			return p, fmt.Errorf("parsing pivman object: %w", err)
		}
		if t == 0x81 && len(v) == 1 {
			p.Flags, p.HasFlags = v[0], true
		} else {
			p.rest = append(p.rest, inner[:len(inner)-len(rest)]...)
		}
		inner = rest
	}
	return p, nil
}

func (p pivman) encode() []byte {
	var inner []byte
	if p.HasFlags || p.Flags != 0 {
		inner = tlv(0x81, []byte{p.Flags})
	}
	return tlv(0x80, append(inner, p.rest...))
}

// encodePrinted wraps a management key as ykman stores it in PRINTED.
func encodePrinted(key []byte) []byte { return tlv(0x88, tlv(0x89, key)) }

// parsePrinted returns the management key stored in PRINTED.
func parsePrinted(data []byte) ([]byte, error) {
	tag, inner, _, err := readTLV(data)
	if err != nil {
		return nil, fmt.Errorf("parsing printed object: %w", err)
	}
	if tag != 0x88 {
		return nil, fmt.Errorf("parsing printed object: tag 0x%02x, want 0x88", tag)
	}
	for len(inner) > 0 {
		t, v, rest, err := readTLV(inner)
		if err != nil {
			return nil, fmt.Errorf("parsing printed object: %w", err)
		}
		if t == 0x89 {
			return v, nil
		}
		inner = rest
	}
	return nil, errors.New("printed object holds no management key")
}
