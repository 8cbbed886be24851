// Package vpcd plugs a virtual card into pcscd through the vsmartcard
// project's vpcd reader driver. The card is a TCP client of the driver; each
// message is a two-byte big-endian length and a payload. A one-byte payload is
// a control message (0 power off, 1 power on, 2 reset, 4 get ATR, answered
// with the ATR); anything longer is a command APDU, answered with the
// response APDU.
//
// While connected, pcscd reports a card in the reader; closing the connection
// is how the card is "removed".
package vpcd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/keydesk/keydesk/device/virtual"
)

// Control messages (vsmartcard's vpcd.h).
const (
	ctrlOff   = 0
	ctrlOn    = 1
	ctrlReset = 2
	ctrlATR   = 4
)

// YubiKey5ATR is the answer-to-reset a YubiKey 5 gives over USB CCID.
var YubiKey5ATR = []byte{0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40}

// Card is what the reader talks to.
type Card interface {
	Transmit(ctx context.Context, apdu []byte) []byte
	// Reset drops session state (power off, on, or warm reset).
	Reset()
}

// Slot keeps a card attached to one vpcd reader for as long as its key is
// inserted, reconnecting after removal and power cycles.
type Slot struct {
	addr string
	card Card
	key  *virtual.Key
	atr  []byte

	mu        sync.Mutex
	conn      net.Conn
	endConn   context.CancelFunc // ends the connection's context: the key left
	connected chan struct{}      // closed when the next connection is made
	poweredOn chan struct{}      // closed when pcscd next powers the card up
	wake      chan struct{}
	done      chan struct{}
	err       error
}

// Attach starts serving card on the vpcd reader at addr ("127.0.0.1:35963")
// until ctx ends. It returns at once; use Connected to wait for pcscd.
func Attach(ctx context.Context, addr string, key *virtual.Key, card Card) *Slot {
	s := &Slot{addr: addr, card: card, key: key, atr: YubiKey5ATR,
		connected: make(chan struct{}), poweredOn: make(chan struct{}), wake: make(chan struct{}, 1), done: make(chan struct{})}
	cancel := key.Subscribe(func(e virtual.Event) {
		switch e {
		case virtual.Removed, virtual.PowerCycled:
			s.mu.Lock()
			if s.conn != nil {
				s.conn.Close()
				s.endConn()
			}
			s.mu.Unlock()
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	})
	go func() {
		defer close(s.done)
		defer cancel()
		s.run(ctx)
	}()
	return s
}

// Connected returns a channel closed once the card is connected to the reader:
// already closed while it is, else closed on the next connection (after a
// removal or power cycle).
func (s *Slot) Connected() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return closed
	}
	return s.connected
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// PoweredOn returns a channel closed the next time pcscd powers the card up,
// which it does once it has noticed the card: after that, PC/SC clients see
// it in the reader.
func (s *Slot) PoweredOn() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.poweredOn
}

// Done is closed when the slot has stopped.
func (s *Slot) Done() <-chan struct{} { return s.done }

func (s *Slot) run(ctx context.Context) {
	backoff := 5 * time.Millisecond
	for ctx.Err() == nil {
		if !s.key.Inserted() {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", s.addr)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			if backoff < 200*time.Millisecond {
				backoff *= 2
			}
			continue
		}
		backoff = 5 * time.Millisecond
		// A command in progress (waiting for a touch, say) ends with the
		// connection, as it would on a key pulled from its port.
		cctx, endConn := context.WithCancel(ctx)
		s.mu.Lock()
		s.conn, s.endConn = conn, endConn
		close(s.connected)
		s.connected = make(chan struct{})
		s.mu.Unlock()
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		s.serve(cctx, conn)
		endConn()
		stop()
		conn.Close()
		s.card.Reset()
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
		if s.key.Inserted() {
			// A power cycle: stay away long enough for pcscd to notice the
			// card left before it comes back.
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func (s *Slot) serve(ctx context.Context, conn net.Conn) {
	var hdr [2]byte
	buf := make([]byte, 0x10000)
	for {
		quickAck(conn)
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return
		}
		quickAck(conn)
		n := int(binary.BigEndian.Uint16(hdr[:]))
		msg := buf[:n]
		if _, err := io.ReadFull(conn, msg); err != nil {
			return
		}
		var reply []byte
		switch {
		case n == 1 && msg[0] == ctrlATR:
			reply = s.atr
		case n == 1 && (msg[0] == ctrlOff || msg[0] == ctrlOn || msg[0] == ctrlReset):
			s.card.Reset()
			if msg[0] == ctrlOn {
				s.mu.Lock()
				close(s.poweredOn)
				s.poweredOn = make(chan struct{})
				s.mu.Unlock()
			}
			continue
		case n == 1:
			continue // unknown control message: vpcd expects no answer
		default:
			reply = s.card.Transmit(ctx, append([]byte(nil), msg...))
		}
		if err := write(conn, reply); err != nil {
			return
		}
	}
}

func write(w io.Writer, payload []byte) error {
	if len(payload) > 0xFFFF {
		return errors.New("vpcd: payload too long")
	}
	out := make([]byte, 2+len(payload))
	binary.BigEndian.PutUint16(out, uint16(len(payload)))
	copy(out[2:], payload)
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("vpcd: writing to reader: %w", err)
	}
	return nil
}
