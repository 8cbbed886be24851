// Package pcsc is keydesk's short-lived, exclusive PC/SC connection to a
// YubiKey's CCID interface: APDU exchange with command chaining and GET
// RESPONSE (ISO 7816-4 §5), and the mapping of PC/SC errors that mean the
// key was pulled to device.ErrKeyRemoved.
package pcsc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ebfe/scard"

	"github.com/keydesk/keydesk/device"
)

// AIDs (NIST SP 800-73-4 §2.2; Yubico's management applet).
var (
	AIDPIV  = []byte{0xA0, 0x00, 0x00, 0x03, 0x08}
	AIDMgmt = []byte{0xA0, 0x00, 0x00, 0x05, 0x27, 0x47, 0x11, 0x17}
)

// Status words (ISO 7816-4 §5.1.3) keydesk acts on.
const (
	SWOK               = 0x9000
	SWSecurityStatus   = 0x6982
	SWAuthBlocked      = 0x6983
	SWConditionsNotMet = 0x6985
	SWFileNotFound     = 0x6A82
	SWRefNotFound      = 0x6A88
	SWInsNotSupported  = 0x6D00
	SWFuncNotSupported = 0x6A81
)

// StatusError is a status word the card answered with that keydesk has no
// more specific error for.
type StatusError struct {
	Ins byte
	SW  uint16
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("card answered instruction 0x%02x with status %04x", e.Ins, e.SW)
}

// Session is one exclusive PC/SC connection to a card, held only for the
// duration of one keydesk operation.
type Session struct {
	release func() // the context's (EstablishContext)
	card    *scard.Card
	// RoundTrips counts APDUs exchanged, including GET RESPONSE.
	RoundTrips int
}

// Dial connects exclusively to the card in reader and begins a transaction.
// The context bounds only the wait for the daemon; PC/SC calls themselves
// are short.
func Dial(ctx context.Context, reader string) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sc, release, err := EstablishContext()
	if err != nil {
		return nil, fmt.Errorf("reaching %s: %w", serviceName, err)
	}
	var card *scard.Card
	err = RetryShared(ctx, func() error {
		var err error
		card, err = sc.Connect(reader, scard.ShareExclusive, scard.ProtocolT1)
		return err
	})
	if err != nil {
		release()
		return nil, fmt.Errorf("connecting to %q: %w", reader, MapError(err))
	}
	if err := card.BeginTransaction(); err != nil {
		card.Disconnect(scard.LeaveCard)
		release()
		return nil, fmt.Errorf("connecting to %q: %w", reader, MapError(err))
	}
	return &Session{release: release, card: card}, nil
}

// Close ends the transaction and releases the card. Security state the
// session earned (a verified PIN, an authenticated management key) ends with
// the next SELECT.
func (s *Session) Close() error {
	if s == nil || s.card == nil {
		return nil
	}
	s.card.EndTransaction(scard.LeaveCard)
	err := s.card.Disconnect(scard.LeaveCard)
	s.release()
	s.card = nil
	return err
}

// MapError turns PC/SC errors that mean the key went away into
// device.ErrKeyRemoved.
func MapError(err error) error {
	switch {
	case errors.Is(err, scard.ErrRemovedCard), errors.Is(err, scard.ErrNoSmartcard),
		errors.Is(err, scard.ErrReaderUnavailable), errors.Is(err, scard.ErrUnknownReader),
		errors.Is(err, scard.ErrResetCard), errors.Is(err, scard.ErrUnpoweredCard),
		errors.Is(err, scard.ErrNoReadersAvailable):
		return fmt.Errorf("%w: %v", device.ErrKeyRemoved, err)
	case errors.Is(err, scard.ErrSharingViolation):
		return fmt.Errorf("another program holds the key (%v); close it and retry", err)
	case errors.Is(err, scard.ErrNoService), errors.Is(err, scard.ErrServiceStopped):
		return noService{err}
	}
	return err
}

// noService is the PC/SC resource manager not answering, said with the
// system's name for it and none of the library's words; it matches
// device.ErrNoCardService and unwraps to the library's error.
type noService struct{ err error }

func (e noService) Error() string        { return serviceName + " is not running or does not answer" }
func (e noService) Unwrap() error        { return e.err }
func (e noService) Is(target error) bool { return target == device.ErrNoCardService }

// Transmit sends one command (ISO 7816-4 §5.1), chaining data longer than
// 255 bytes (CLA bit 0x10) and collecting 61xx continuations with GET
// RESPONSE. It returns the response data and the final status word.
func (s *Session) Transmit(ins, p1, p2 byte, data []byte) ([]byte, uint16, error) {
	for len(data) > 255 {
		apdu := append([]byte{0x10, ins, p1, p2, 255}, data[:255]...)
		_, sw, err := s.raw(apdu)
		if err != nil {
			return nil, 0, err
		}
		if sw != SWOK {
			return nil, sw, nil
		}
		data = data[255:]
	}
	apdu := []byte{0x00, ins, p1, p2}
	if len(data) > 0 {
		apdu = append(append(apdu, byte(len(data))), data...)
	}
	apdu = append(apdu, 0x00)
	resp, sw, err := s.raw(apdu)
	if err != nil {
		return nil, 0, err
	}
	for sw>>8 == 0x61 {
		more, sw2, err := s.raw([]byte{0x00, 0xC0, 0x00, 0x00, byte(sw)})
		if err != nil {
			return nil, 0, err
		}
		resp, sw = append(resp, more...), sw2
	}
	return resp, sw, nil
}

func (s *Session) raw(apdu []byte) ([]byte, uint16, error) {
	s.RoundTrips++
	out, err := transmit(s.card, apdu)
	if err != nil {
		return nil, 0, MapError(err)
	}
	if len(out) < 2 {
		return nil, 0, fmt.Errorf("card answered instruction 0x%02x with %d bytes", apdu[1], len(out))
	}
	n := len(out) - 2
	return out[:n], uint16(out[n])<<8 | uint16(out[n+1]), nil
}

// Command is Transmit with any status but 9000 turned into an error.
func (s *Session) Command(ins, p1, p2 byte, data []byte) ([]byte, error) {
	resp, sw, err := s.Transmit(ins, p1, p2, data)
	if err != nil {
		return nil, err
	}
	if sw != SWOK {
		return nil, &StatusError{Ins: ins, SW: sw}
	}
	return resp, nil
}

// Select selects an application by AID (ISO 7816-4 §11.2.2) and returns its
// response.
func (s *Session) Select(aid []byte) ([]byte, error) {
	resp, sw, err := s.Transmit(0xA4, 0x04, 0x00, aid)
	if err != nil {
		return nil, err
	}
	switch sw {
	case SWOK:
		return resp, nil
	case SWFileNotFound:
		return nil, fmt.Errorf("application %X: %w", aid, device.ErrAppDisabled)
	}
	return nil, &StatusError{Ins: 0xA4, SW: sw}
}

// SharedWait is how long RetryShared waits for another connection to a
// key to end: keydesk's own connections last one operation (tens of
// milliseconds), so a key still held after this is held by another
// program.
const SharedWait = 3 * time.Second

// RetryShared runs connect again while it fails with a sharing violation
// (SCARD_E_SHARING_VIOLATION, PC/SC part 5 §3.1.3: another context holds
// the card exclusively), for at most SharedWait or until ctx ends. Two of
// keydesk's own screens asking one key at once then take turns instead of
// failing.
func RetryShared(ctx context.Context, connect func() error) error {
	deadline := time.Now().Add(SharedWait)
	for {
		err := connect()
		if err == nil || !sharing(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sharing reports a sharing violation from ebfe/scard or from piv-go, whose
// PC/SC binding returns its own error type carrying the same code.
func sharing(err error) bool {
	return errors.Is(err, scard.ErrSharingViolation) ||
		strings.Contains(err.Error(), "other connections outstanding") ||
		strings.Contains(strings.ToLower(err.Error()), "sharing violation")
}

// ServiceName is what this system calls its PC/SC resource manager, for
// messages: "the smart card service (pcscd)" on Linux, "the Smart Card
// service" on Windows.
func ServiceName() string { return serviceName }
