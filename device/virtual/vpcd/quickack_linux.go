package vpcd

import (
	"net"
	"syscall"
)

// quickAck asks the kernel to acknowledge the next segment at once. vpcd
// sends a message's length and its body in two writes; without this, Nagle's
// algorithm on vpcd's side waits for our delayed ACK (about 40 ms) before
// sending the body, once per APDU. TCP_QUICKACK does not stick, so it is set
// again before every read.
func quickAck(conn net.Conn) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
