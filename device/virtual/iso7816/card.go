package iso7816

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"sync"
	"time"
)

// Applet is one application on the card.
type Applet interface {
	// AID is the application identifier SELECT names it by.
	AID() []byte
	// Select is called when the applet becomes current; it returns the
	// response data (FCI or application property template).
	Select() ([]byte, uint16)
	// Process handles one complete (de-chained) command while selected.
	Process(ctx context.Context, cmd Command) ([]byte, uint16)
	// Deselect clears session state (verified PIN, authenticated
	// management key) when another applet is selected or power drops.
	Deselect()
}

// Redactor is implemented by applets whose commands carry secrets; the trace
// records the redacted form.
type Redactor interface {
	Redact(cmd Command) bool
}

// Exchange is one traced APDU round trip.
type Exchange struct {
	At       time.Time
	Command  string // hex, secrets redacted
	Response string // hex, secrets redacted
}

func (e Exchange) String() string { return "> " + e.Command + "\n< " + e.Response }

const traceDepth = 64

// Card routes APDUs to its applets the way a YubiKey's CCID interface does.
// It is safe for concurrent use; commands are processed one at a time.
type Card struct {
	mu       sync.Mutex
	applets  []Applet
	enabled  func(Applet) bool
	selected Applet
	// command chaining state
	chainHdr  [4]byte
	chainData []byte
	chaining  bool
	// GET RESPONSE state
	pending []byte
	trace   []Exchange
}

// NewCard returns a card with the applets; enabled, when not nil, says
// whether an applet may be selected now (the management applet's
// enabled-applications setting).
func NewCard(enabled func(Applet) bool, applets ...Applet) *Card {
	return &Card{applets: applets, enabled: enabled}
}

// Reset drops session state, as a power cycle or card reset does.
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.selected != nil {
		c.selected.Deselect()
	}
	c.selected = nil
	c.chaining, c.chainData, c.pending = false, nil, nil
}

// Trace returns the most recent exchanges, oldest first.
func (c *Card) Trace() []Exchange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Exchange(nil), c.trace...)
}

// TraceString formats the trace for a failing test's message.
func (c *Card) TraceString() string {
	var b bytes.Buffer
	for _, e := range c.Trace() {
		fmt.Fprintln(&b, e.String())
	}
	return b.String()
}

// Transmit processes one command APDU and returns the response APDU.
func (c *Card) Transmit(ctx context.Context, apdu []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp, redact := c.transmit(ctx, apdu)
	cmdHex := hex.EncodeToString(apdu)
	respHex := hex.EncodeToString(resp)
	if redact {
		if len(apdu) > 5 {
			cmdHex = hex.EncodeToString(apdu[:5]) + "<redacted>"
		}
		if len(resp) > 2 {
			respHex = "<redacted>" + hex.EncodeToString(resp[len(resp)-2:])
		}
	}
	c.trace = append(c.trace, Exchange{At: time.Now(), Command: cmdHex, Response: respHex})
	if len(c.trace) > traceDepth {
		c.trace = c.trace[len(c.trace)-traceDepth:]
	}
	return resp
}

func (c *Card) transmit(ctx context.Context, apdu []byte) ([]byte, bool) {
	cmd, err := ParseCommand(apdu)
	if err != nil {
		c.chaining = false
		return Response(nil, SWWrongLength), false
	}
	if cmd.CLA&^0x10 != 0x00 && cmd.CLA != 0x80 {
		return Response(nil, SWClaNotSupported), false
	}

	// GET RESPONSE continues a long answer (ISO 7816-4 §7.6.1).
	if cmd.INS == 0xC0 && !cmd.Chained() {
		if c.pending == nil {
			return Response(nil, SWConditionsNotSatisfied), false
		}
		return c.deliver(c.pending, SWOK, cmd), false
	}
	c.pending = nil

	// Command chaining (§5.1.1.1): gather the data, answer 9000, act on the last.
	hdr := [4]byte{cmd.CLA &^ 0x10, cmd.INS, cmd.P1, cmd.P2}
	if c.chaining && hdr != c.chainHdr {
		c.chaining, c.chainData = false, nil
		return Response(nil, SWLastCommandExpected), false
	}
	if cmd.Chained() {
		if !c.chaining {
			c.chaining, c.chainHdr, c.chainData = true, hdr, nil
		}
		if len(c.chainData)+len(cmd.Data) > 64*1024 {
			c.chaining, c.chainData = false, nil
			return Response(nil, SWWrongLength), false
		}
		c.chainData = append(c.chainData, cmd.Data...)
		return Response(nil, SWOK), false
	}
	if c.chaining {
		cmd.Data = append(c.chainData, cmd.Data...)
		c.chaining, c.chainData = false, nil
	}
	cmd.CLA &^= 0x10

	if cmd.INS == 0xA4 && cmd.P1 == 0x04 {
		return c.selectAID(cmd), false
	}
	if c.selected == nil {
		return Response(nil, SWInsNotSupported), false
	}
	redact := false
	if r, ok := c.selected.(Redactor); ok {
		redact = r.Redact(cmd)
	}
	data, sw := c.selected.Process(ctx, cmd)
	return c.deliver(data, sw, cmd), redact
}

// deliver returns up to Ne bytes (256 for a short APDU that did not say),
// leaving the rest for GET RESPONSE with SW 61XX.
func (c *Card) deliver(data []byte, sw uint16, cmd Command) []byte {
	limit := cmd.Ne
	if limit == 0 || (!cmd.Extended && limit > 256) {
		limit = 256
	}
	if len(data) <= limit {
		c.pending = nil
		return Response(data, sw)
	}
	c.pending = data[limit:]
	remaining := len(c.pending)
	if remaining > 255 {
		remaining = 0
	}
	return Response(data[:limit], SWBytesRemaining|uint16(remaining))
}

func (c *Card) selectAID(cmd Command) []byte {
	if len(cmd.Data) == 0 {
		return Response(nil, SWWrongData)
	}
	for _, a := range c.applets {
		aid := a.AID()
		// Partial selection by a prefix of the AID (§11.2.2.3).
		if len(cmd.Data) <= len(aid) && bytes.Equal(aid[:len(cmd.Data)], cmd.Data) {
			if c.enabled != nil && !c.enabled(a) {
				break
			}
			if c.selected != nil && c.selected != a {
				c.selected.Deselect()
			}
			c.selected = a
			data, sw := a.Select()
			return c.deliver(data, sw, cmd)
		}
	}
	return Response(nil, SWFileNotFound)
}
