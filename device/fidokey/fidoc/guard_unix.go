//go:build unix

package fidoc

/*
#include <signal.h>
#include <pthread.h>

// kd_block_async blocks every asynchronous signal on the calling thread and
// saves the old mask; fault signals stay deliverable.
static void kd_block_async(sigset_t *old) {
	sigset_t s;
	sigfillset(&s);
	sigdelset(&s, SIGSEGV);
	sigdelset(&s, SIGBUS);
	sigdelset(&s, SIGFPE);
	sigdelset(&s, SIGILL);
	sigdelset(&s, SIGTRAP);
	sigdelset(&s, SIGSYS);
	sigdelset(&s, SIGABRT);
	pthread_sigmask(SIG_BLOCK, &s, old);
}

static void kd_restore(const sigset_t *old) {
	pthread_sigmask(SIG_SETMASK, old, NULL);
}
*/
import "C"

import "runtime"

// Guard runs f on a locked OS thread with asynchronous signals blocked.
//
// libfido2 1.12 waits for a device with ppoll(2) and treats EINTR as a
// receive failure (FIDO_ERR_RX). In a Go program the runtime signals its
// threads (SIGURG for goroutine preemption, SIGPROF, SIGCHLD), so an
// unguarded libfido2 call fails now and then under load; measured here: one
// failed getInfo in about 3000 through go-libfido2. Signals that arrive
// meanwhile stay pending and are delivered when f returns.
func Guard(f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old C.sigset_t
	C.kd_block_async(&old)
	defer C.kd_restore(&old)
	f()
}
