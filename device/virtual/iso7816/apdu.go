// Package iso7816 is the card side of ISO/IEC 7816-4: command APDU parsing
// (short and extended cases, §5.1), command chaining (CLA bit 0x10, §5.1.1.1),
// long responses delivered through GET RESPONSE (SW 61XX, §5.3.4 / INS C0),
// and SELECT by application identifier (§11.2.2) dispatching to applets.
package iso7816

import (
	"errors"
	"fmt"
)

// Status words a YubiKey answers with (ISO/IEC 7816-4 §5.6, Tables 5-6).
const (
	SWOK                     uint16 = 0x9000
	SWBytesRemaining         uint16 = 0x6100 // low byte: how many (00 = 256 or more)
	SWVerifyFail             uint16 = 0x63C0 // low nibble: retries left
	SWMemoryFailure          uint16 = 0x6581
	SWWrongLength            uint16 = 0x6700
	SWLastCommandExpected    uint16 = 0x6883
	SWSecurityStatus         uint16 = 0x6982
	SWAuthBlocked            uint16 = 0x6983
	SWDataInvalid            uint16 = 0x6984
	SWConditionsNotSatisfied uint16 = 0x6985
	SWCommandNotAllowed      uint16 = 0x6986
	SWWrongData              uint16 = 0x6A80
	SWFuncNotSupported       uint16 = 0x6A81
	SWFileNotFound           uint16 = 0x6A82
	SWNotEnoughMemory        uint16 = 0x6A84
	SWIncorrectP1P2          uint16 = 0x6A86
	SWReferenceNotFound      uint16 = 0x6A88
	SWWrongP1P2              uint16 = 0x6B00
	SWInsNotSupported        uint16 = 0x6D00
	SWClaNotSupported        uint16 = 0x6E00
	SWUnknown                uint16 = 0x6F00
)

// ErrWrongLength: the APDU's length fields disagree with its size (SW 6700).
var ErrWrongLength = errors.New("apdu length fields do not match its size")

// Command is a parsed command APDU.
type Command struct {
	CLA, INS, P1, P2 byte
	Data             []byte
	// Ne is the maximum number of response bytes expected; 0 when absent.
	Ne       int
	Extended bool
}

// Chained reports whether more commands of a chain follow (CLA bit 5).
func (c Command) Chained() bool { return c.CLA&0x10 != 0 }

func (c Command) String() string {
	return fmt.Sprintf("CLA=%02X INS=%02X P1=%02X P2=%02X Lc=%d Ne=%d", c.CLA, c.INS, c.P1, c.P2, len(c.Data), c.Ne)
}

// ParseCommand decodes the four ISO 7816-4 cases, short and extended.
func ParseCommand(b []byte) (Command, error) {
	if len(b) < 4 {
		return Command{}, fmt.Errorf("%w: %d bytes, a header is 4", ErrWrongLength, len(b))
	}
	c := Command{CLA: b[0], INS: b[1], P1: b[2], P2: b[3]}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
		return c, nil
	case len(body) == 1: // case 2 short
		c.Ne = int(body[0])
		if c.Ne == 0 {
			c.Ne = 256
		}
		return c, nil
	case body[0] != 0: // case 3 or 4 short
		lc := int(body[0])
		switch len(body) {
		case 1 + lc:
			c.Data = body[1:]
		case 2 + lc:
			c.Data = body[1 : 1+lc]
			c.Ne = int(body[1+lc])
			if c.Ne == 0 {
				c.Ne = 256
			}
		default:
			return Command{}, fmt.Errorf("%w: Lc=%d with %d body bytes", ErrWrongLength, lc, len(body))
		}
		return c, nil
	}
	// Extended: body[0] == 0.
	c.Extended = true
	if len(body) == 3 { // case 2 extended
		c.Ne = int(body[1])<<8 | int(body[2])
		if c.Ne == 0 {
			c.Ne = 65536
		}
		return c, nil
	}
	if len(body) < 3 {
		return Command{}, fmt.Errorf("%w: truncated extended length", ErrWrongLength)
	}
	lc := int(body[1])<<8 | int(body[2])
	if lc == 0 {
		return Command{}, fmt.Errorf("%w: extended Lc of zero", ErrWrongLength)
	}
	rest := body[3:]
	switch len(rest) {
	case lc:
		c.Data = rest
	case lc + 2:
		c.Data = rest[:lc]
		c.Ne = int(rest[lc])<<8 | int(rest[lc+1])
		if c.Ne == 0 {
			c.Ne = 65536
		}
	default:
		return Command{}, fmt.Errorf("%w: extended Lc=%d with %d data bytes", ErrWrongLength, lc, len(rest))
	}
	return c, nil
}

// Response appends the status word to data.
func Response(data []byte, sw uint16) []byte {
	out := make([]byte, 0, len(data)+2)
	out = append(out, data...)
	return append(out, byte(sw>>8), byte(sw))
}
