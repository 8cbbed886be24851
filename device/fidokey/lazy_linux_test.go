package fidokey

import (
	"debug/elf"
	"os"
	"strings"
	"testing"
)

// TestLibfido2NotNeededAtStart: a program that links fidokey (and through
// it fidoc and go-libfido2) does not list libfido2 among the libraries the
// dynamic loader maps at start; it is opened on first use (fidoc.Load).
// Every libfido2 function called directly must have its forwarder in
// fidoc/lazy_linux.h (go generate in fidoc) or libfido2 is back here.
func TestLibfido2NotNeededAtStart(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) == 0 {
		t.Fatal("no needed libraries at all: not a dynamically linked cgo program?")
	}
	for _, l := range libs {
		if strings.HasPrefix(l, "libfido2") || strings.HasPrefix(l, "libcrypto") {
			t.Errorf("%s lists %s as needed at start; regenerate fidoc/lazy_linux.h (go generate ./device/fidokey/fidoc)", exe, l)
		}
	}
	syms, err := f.ImportedSymbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if strings.HasPrefix(s.Name, "fido_") {
			t.Errorf("%s is resolved by the dynamic loader at start, not through fidoc's forwarders", s.Name)
		}
	}
}
