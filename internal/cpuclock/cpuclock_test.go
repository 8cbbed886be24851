package cpuclock

import (
	"os/exec"
	"testing"
	"time"
)

// TestTreeCountsChildren: CPU burnt by a child process shows in Tree, not
// in Self.
func TestTreeCountsChildren(t *testing.T) {
	tree0, self0 := Tree(), Self()
	// A child that spins for about 300 ms of CPU.
	if err := exec.Command("sh", "-c", "i=0; end=$(($(date +%s%N)+300000000)); while [ $(date +%s%N) -lt $end ]; do i=$((i+1)); done").Run(); err != nil {
		t.Skipf("no shell to spin: %v", err)
	}
	tree, self := Tree()-tree0, Self()-self0
	if tree < 100*time.Millisecond {
		t.Fatalf("Tree grew by %v after a child spun ~300 ms", tree)
	}
	if self > tree {
		t.Fatalf("Self (%v) grew more than Tree (%v)", self, tree)
	}
}
