package pcsc

// #cgo pkg-config: libpcsclite
// #include <winscard.h>
import "C"

import (
	"unsafe"

	"github.com/ebfe/scard"
)

// cardLayout is github.com/ebfe/scard's Card as that package lays it out
// (its PC/SC card handle and the protocol Connect negotiated), which it
// does not export.
type cardLayout struct {
	handle         uintptr
	activeProtocol scard.Protocol
}

// layoutKnown says whether scard.Card still has cardLayout's size; should
// a release of the package change it, transmit falls back to its Transmit.
var layoutKnown = unsafe.Sizeof(scard.Card{}) == unsafe.Sizeof(cardLayout{})

// transmit sends one APDU on card (SCardTransmit, PC/SC part 5 §3.1.4) and
// returns the response, status word included. scard's Transmit makes a
// response buffer of MAX_BUFFER_SIZE_EXTENDED (64 KiB) for every APDU, so a
// key's PIN state read five times a second left 1–2 MB of garbage a
// second; this answers into buf, sized for the short APDUs keydesk sends
// (at most 256 bytes and the status word), and copies out only what came,
// falling back to scard's Transmit for a longer answer.
func transmit(card *scard.Card, apdu []byte, buf *[shortResponse]byte) ([]byte, error) {
	c := (*cardLayout)(unsafe.Pointer(card))
	if !layoutKnown || len(apdu) == 0 || (c.activeProtocol != scard.ProtocolT0 && c.activeProtocol != scard.ProtocolT1) {
		return card.Transmit(apdu)
	}
	var send, recv C.SCARD_IO_REQUEST
	send.dwProtocol = C.DWORD(c.activeProtocol)
	send.cbPciLength = C.sizeof_SCARD_IO_REQUEST
	n := C.DWORD(len(buf))
	r := scard.Error(C.SCardTransmit(C.SCARDHANDLE(c.handle), &send, (*C.BYTE)(unsafe.Pointer(&apdu[0])), C.DWORD(len(apdu)),
		&recv, (*C.BYTE)(unsafe.Pointer(&buf[0])), &n))
	switch {
	case r == scard.ErrInsufficientBuffer:
		return card.Transmit(apdu)
	case r != scard.ErrSuccess:
		return nil, r
	}
	return append([]byte(nil), buf[:n]...), nil
}
