//go:build !linux || !cgo

package residency

func trimHeap() {}
