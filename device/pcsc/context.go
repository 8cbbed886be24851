package pcsc

import (
	"sync"

	"github.com/ebfe/scard"
)

// shared is the one PC/SC context of a process that asked for it
// (ShareContext).
var shared struct {
	sync.Mutex
	on bool
	sc *scard.Context
}

// ShareContext makes the PC/SC contexts this process takes through
// EstablishContext and Dial one and the same, established on first use and
// never released. Each context is a connection to the PC/SC daemon, which
// (pcsc-lite) starts a thread for it: a command that lists the keys, reads
// one's serial and then opens its PIV application would pay for three.
// Only for a process that runs one short operation and exits (keydesk's
// status commands): a context dies with the daemon that gave it, and a
// long-running process must establish a new one after the daemon restarts
// (discover.Watch does).
func ShareContext() {
	shared.Lock()
	shared.on = true
	shared.Unlock()
}

// EstablishContext returns a PC/SC context and the function that releases
// it: a new context, or the shared one (ShareContext), whose release does
// nothing.
func EstablishContext() (*scard.Context, func(), error) {
	shared.Lock()
	defer shared.Unlock()
	if shared.on && shared.sc != nil {
		return shared.sc, func() {}, nil
	}
	sc, err := scard.EstablishContext()
	if err != nil {
		return nil, nil, MapError(err)
	}
	if shared.on {
		shared.sc = sc
		return sc, func() {}, nil
	}
	return sc, func() { sc.Release() }, nil
}
