//go:build !linux

package vpcd

import "net"

// quickAck does nothing where TCP_QUICKACK does not exist; delayed ACKs then
// cost about 40 ms per APDU.
func quickAck(conn net.Conn) {}
