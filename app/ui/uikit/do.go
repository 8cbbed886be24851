package uikit

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"

	"fyne.io/fyne/v2"
)

// Do runs fn on the UI goroutine, as fyne.Do, holding the UI lock. A
// running app has one UI goroutine and the lock is never contended; Fyne's
// test driver runs fyne.Do's function at once on the calling goroutine,
// so there the lock keeps background work (the key-state model, a device
// call ending) and a test's checks (uitest.Eventually takes it too) from
// touching widgets at the same moment. The lock is re-entrant on one
// goroutine: a function run by Do may call Do.
func Do(fn func()) {
	fyne.Do(func() {
		unlock := LockUI()
		defer unlock()
		fn()
	})
}

// DoAndWait is Do that returns once fn has run, as fyne.DoAndWait.
func DoAndWait(fn func()) {
	fyne.DoAndWait(func() {
		unlock := LockUI()
		defer unlock()
		fn()
	})
}

// LockUI takes the UI lock (see Do) and returns its release.
func LockUI() (unlock func()) {
	id := goroutine()
	ui.mu.Lock()
	for ui.count > 0 && ui.owner != id {
		ui.cond.Wait()
	}
	ui.owner = id
	ui.count++
	ui.mu.Unlock()
	return func() {
		ui.mu.Lock()
		ui.count--
		if ui.count == 0 {
			ui.owner = 0
			ui.cond.Broadcast()
		}
		ui.mu.Unlock()
	}
}

// Release gives up the UI lock entirely if the calling goroutine holds it,
// however many times it was taken, and returns what takes it back as many
// times. A goroutine that holds the lock while it waits for background
// work (a headless test does) releases it for the wait.
func Release() (retake func()) {
	id := goroutine()
	ui.mu.Lock()
	defer ui.mu.Unlock()
	if ui.count == 0 || ui.owner != id {
		return func() {}
	}
	n := ui.count
	ui.count, ui.owner = 0, 0
	ui.cond.Broadcast()
	return func() {
		ui.mu.Lock()
		defer ui.mu.Unlock()
		for ui.count > 0 && ui.owner != id {
			ui.cond.Wait()
		}
		ui.owner = id
		ui.count += n
	}
}

var ui = func() *uiLock {
	l := &uiLock{}
	l.cond = sync.NewCond(&l.mu)
	return l
}()

type uiLock struct {
	mu    sync.Mutex
	cond  *sync.Cond
	owner uint64
	count int
}

// goroutine is the calling goroutine's id, from its stack header
// ("goroutine 42 [running]:").
func goroutine() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	n, _ := strconv.ParseUint(string(b), 10, 64)
	return n
}
