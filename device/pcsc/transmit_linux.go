package pcsc

// #cgo pkg-config: libpcsclite
// #include <winscard.h>
import "C"

import (
	"sync"
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

// responseBuffer is as long as the longest response PC/SC can give
// (pcsc-lite's MAX_BUFFER_SIZE_EXTENDED), the buffer scard's Transmit makes.
type responseBuffer [C.MAX_BUFFER_SIZE_EXTENDED]byte

// responses are the buffers transmit answers into, reused from one APDU,
// and one session, to the next.
var responses = sync.Pool{New: func() any { return new(responseBuffer) }}

// transmit sends one APDU on card (SCardTransmit, PC/SC part 5 §3.1.4) and
// returns the response, status word included. scard's Transmit makes a
// new 64 KiB response buffer for every APDU, so a key's PIN state read
// five APDUs at a time every half second left 1–2 MB of garbage a second;
// this answers into a buffer of the same size taken from a pool, and
// copies out only what came.
func transmit(card *scard.Card, apdu []byte) ([]byte, error) {
	c := (*cardLayout)(unsafe.Pointer(card))
	if !layoutKnown || len(apdu) == 0 || (c.activeProtocol != scard.ProtocolT0 && c.activeProtocol != scard.ProtocolT1) {
		return card.Transmit(apdu)
	}
	buf := responses.Get().(*responseBuffer)
	defer responses.Put(buf)
	var send, recv C.SCARD_IO_REQUEST
	send.dwProtocol = C.DWORD(c.activeProtocol)
	send.cbPciLength = C.sizeof_SCARD_IO_REQUEST
	n := C.DWORD(len(buf))
	r := scard.Error(C.SCardTransmit(C.SCARDHANDLE(c.handle), &send, (*C.BYTE)(unsafe.Pointer(&apdu[0])), C.DWORD(len(apdu)),
		&recv, (*C.BYTE)(unsafe.Pointer(&buf[0])), &n))
	if r != scard.ErrSuccess {
		return nil, r
	}
	return append([]byte(nil), buf[:n]...), nil
}
