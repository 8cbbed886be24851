//go:build linux && cgo

package residency

// #include <malloc.h>
import "C"

// trimHeap returns the C heap's free memory at its top and in its free
// chunks to the kernel (glibc's malloc_trim(3)): the GL driver frees the
// textures of text no longer shown, and glibc keeps such memory for
// reuse unless asked.
func trimHeap() { C.malloc_trim(0) }
