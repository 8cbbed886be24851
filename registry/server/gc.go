package server

import (
	"os"
	"runtime/debug"
)

// GCPercent is the garbage collector's target a registry server runs with
// when the GOGC environment variable does not choose one: the heap may grow
// to five times what is live before a collection. A registry's live heap is
// small (caches of tokens and prepared statements, a few MiB) while every
// request allocates (JSON, HTTP headers, database rows), so Go's default of
// 100 collects many times a second under load: on the verification benchmark
// (docs/registry.md) collection took a fifth of the server's CPU, and 400
// raised verifications per second by about a fifth for a peak heap still in
// the tens of MiB.
const GCPercent = 400

// TuneGC applies GCPercent unless GOGC is set in the environment, and
// returns a function that restores the previous target.
func TuneGC() (restore func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	old := debug.SetGCPercent(GCPercent)
	return func() { debug.SetGCPercent(old) }
}
