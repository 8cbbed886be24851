//go:build !linux

package pcsc

import "github.com/ebfe/scard"

// transmit sends one APDU on card and returns the response, status word
// included (see transmit_linux.go).
func transmit(card *scard.Card, apdu []byte) ([]byte, error) {
	return card.Transmit(apdu)
}
