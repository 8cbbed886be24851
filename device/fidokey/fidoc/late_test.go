package fidoc

import (
	"errors"
	"runtime"
	"testing"
)

// TestNothingMissingWhereLinked: off Windows keydesk links libfido2 1.12 or
// newer, so every late function is there and check never reports one
// missing for a real result.
func TestNothingMissingWhereLinked(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("on Windows the answer depends on the fido2.dll beside the program")
	}
	if m := Missing(); len(m) != 0 {
		t.Fatalf("missing from the linked libfido2: %v", m)
	}
	if err := check(rawRX()); errors.Is(err, ErrMissing) || !errors.Is(err, ErrRX) {
		t.Fatalf("check(FIDO_ERR_RX) = %v", err)
	}
	if err := check(rawMissing()); !errors.Is(err, ErrMissing) {
		t.Fatalf("check(KD_ERR_MISSING) = %v, want ErrMissing", err)
	}
}
