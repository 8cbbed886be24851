// Package tlv encodes and decodes the BER-TLV data objects PIV and the
// YubiKey applets exchange (ISO/IEC 7816-4 §5.2; NIST SP 800-73-4 Part 1
// Appendix A: tags of one to three bytes, definite lengths up to 0xFFFF).
package tlv

import (
	"errors"
	"fmt"
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed ber-tlv")

// TLV is one data object. Tag holds the tag bytes as an integer (0x5C,
// 0x5FC105, 0x7F49).
type TLV struct {
	Tag   uint32
	Value []byte
}

// AppendTag appends tag's bytes (1 to 3, most significant first).
func AppendTag(b []byte, tag uint32) []byte {
	switch {
	case tag > 0xFFFF:
		return append(b, byte(tag>>16), byte(tag>>8), byte(tag))
	case tag > 0xFF:
		return append(b, byte(tag>>8), byte(tag))
	default:
		return append(b, byte(tag))
	}
}

// AppendLength appends a definite BER length.
func AppendLength(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n <= 0xFF:
		return append(b, 0x81, byte(n))
	case n <= 0xFFFF:
		return append(b, 0x82, byte(n>>8), byte(n))
	default:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

// Append appends one encoded object.
func Append(b []byte, tag uint32, value []byte) []byte {
	b = AppendTag(b, tag)
	b = AppendLength(b, len(value))
	return append(b, value...)
}

// Encode encodes one object.
func Encode(tag uint32, value []byte) []byte { return Append(nil, tag, value) }

// EncodeAll encodes objects one after another.
func EncodeAll(objs ...TLV) []byte {
	var b []byte
	for _, o := range objs {
		b = Append(b, o.Tag, o.Value)
	}
	return b
}

// Next decodes the first object in b and returns the rest.
func Next(b []byte) (TLV, []byte, error) {
	if len(b) == 0 {
		return TLV{}, nil, fmt.Errorf("%w: empty input", ErrMalformed)
	}
	// Tag: ISO 7816-4 §5.2.2.1 — low five bits all set means more bytes
	// follow; a following byte with bit 8 set means yet another.
	i := 1
	tag := uint32(b[0])
	if b[0]&0x1F == 0x1F {
		for {
			if i >= len(b) || i > 2 {
				return TLV{}, nil, fmt.Errorf("%w: tag too long or truncated", ErrMalformed)
			}
			tag = tag<<8 | uint32(b[i])
			i++
			if b[i-1]&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return TLV{}, nil, fmt.Errorf("%w: missing length after tag %x", ErrMalformed, tag)
	}
	n := int(b[i])
	i++
	if n&0x80 != 0 {
		k := n & 0x7F
		if k == 0 || k > 3 {
			return TLV{}, nil, fmt.Errorf("%w: unsupported length form 0x%02x", ErrMalformed, n|0x80)
		}
		if i+k > len(b) {
			return TLV{}, nil, fmt.Errorf("%w: truncated length", ErrMalformed)
		}
		n = 0
		for j := 0; j < k; j++ {
			n = n<<8 | int(b[i+j])
		}
		i += k
	}
	if n > len(b)-i {
		return TLV{}, nil, fmt.Errorf("%w: tag %x wants %d bytes, %d remain", ErrMalformed, tag, n, len(b)-i)
	}
	return TLV{Tag: tag, Value: b[i : i+n : i+n]}, b[i+n:], nil
}

// Parse decodes every object in b.
func Parse(b []byte) ([]TLV, error) {
	var out []TLV
	for len(b) > 0 {
		o, rest, err := Next(b)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
		b = rest
	}
	return out, nil
}

// Find returns the value of the first object with tag in b, searching only the
// top level.
func Find(b []byte, tag uint32) ([]byte, bool) {
	objs, err := Parse(b)
	if err != nil {
		return nil, false
	}
	for _, o := range objs {
		if o.Tag == tag {
			return o.Value, true
		}
	}
	return nil, false
}

// Map parses b into tag → value, rejecting input that doesn't parse. When a
// tag repeats, the first wins.
func Map(b []byte) (map[uint32][]byte, error) {
	objs, err := Parse(b)
	if err != nil {
		return nil, err
	}
	m := make(map[uint32][]byte, len(objs))
	for _, o := range objs {
		if _, ok := m[o.Tag]; !ok {
			m[o.Tag] = o.Value
		}
	}
	return m, nil
}
