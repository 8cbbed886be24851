package cpuclock

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// spin is the CPU time the child burns; it counts its own CPU time, not
// the wall clock, so a loaded machine only makes it take longer.
const spin = 300 * time.Millisecond

// TestMain runs the child of TestTreeCountsChildren when asked to.
func TestMain(m *testing.M) {
	if os.Getenv("CPUCLOCK_SPIN") == "1" {
		for Self() < spin {
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestTreeCountsChildren: CPU burnt by a child process shows in Tree, not
// in Self.
func TestTreeCountsChildren(t *testing.T) {
	tree0, self0 := Tree(), Self()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CPUCLOCK_SPIN=1")
	if err := cmd.Run(); err != nil {
		t.Fatalf("running the spinning child: %v", err)
	}
	tree, self := Tree()-tree0, Self()-self0
	// /proc counts in clock ticks (10 ms), rounding both the child's time
	// and this process's own down, while Self counts nanoseconds: allow
	// three ticks.
	if tree-self < spin-30*time.Millisecond {
		t.Fatalf("Tree grew by %v (Self by %v) after a child spun %v of CPU", tree, self, spin)
	}
	if self > tree {
		t.Fatalf("Self (%v) grew more than Tree (%v)", self, tree)
	}
}
