// Package buildinfo carries the version and commit stamped in at build time
// (see the Makefile's LDFLAGS).
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// Version and Commit are set with -ldflags "-X ...". Unstamped builds fall
// back to what the Go toolchain recorded.
var (
	Version = ""
	Commit  = ""
)

// String is the one-line form every keydesk binary prints for --version.
func String(program string) string {
	v, c := Version, Commit
	if v == "" || c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			if v == "" {
				v = bi.Main.Version
			}
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && c == "" && len(s.Value) >= 7 {
					c = s.Value[:7]
				}
			}
		}
	}
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("%s %s (commit %s)", program, v, c)
}
