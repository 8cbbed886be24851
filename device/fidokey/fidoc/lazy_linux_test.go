package fidoc

import "testing"

// TestLoad: the libfido2 this machine has opens, and a second Load is the
// same answer.
func TestLoad(t *testing.T) {
	for range 2 {
		if err := Load(); err != nil {
			t.Fatal(err)
		}
	}
	if m := Missing(); len(m) != 0 {
		t.Errorf("libfido2 1.12 lacks %v", m)
	}
}
