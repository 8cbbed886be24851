package device

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrorsAndHints(t *testing.T) {
	v := func(a, b, c uint8) Version { return Version{a, b, c} }
	if err := RequireVersion("x", v(5, 7, 0), v(5, 3, 0)); err != nil {
		t.Fatalf("5.7.0 >= 5.3.0: %v", err)
	}
	err := fmt.Errorf("reading metadata: %w", RequireVersion("metadata", v(5, 2, 7), v(5, 3, 0)))
	var ve *VersionError
	if !errors.As(err, &ve) || !errors.Is(err, ErrNotSupported) || ve.Need != v(5, 3, 0) {
		t.Fatalf("version error not typed: %v", err)
	}
	cases := []error{
		&WrongPINError{Retries: 2}, &WrongPINError{PUK: true, Retries: 1},
		ErrPINBlocked, ErrPUKBlocked, ErrTouchTimeout, ErrKeyRemoved, ErrAppDisabled,
		err, &SerialMismatchError{Want: 1, Got: 2}, ErrNotSupported,
		ErrFIDO2PINBlocked, ErrPINAuthBlocked, ErrPINNotSet, ErrPINPolicy, ErrResetWindow, ErrNoCredentials,
		ErrNeedsElevation,
	}
	if !errors.Is(fmt.Errorf("x: %w", ErrFIDO2PINBlocked), ErrPINBlocked) {
		t.Error("a blocked FIDO2 PIN does not match ErrPINBlocked")
	}
	seen := map[string]bool{}
	for _, c := range cases {
		h := Hint(fmt.Errorf("op: %w", c))
		if h == "" || seen[h] {
			t.Errorf("hint for %v: %q (empty or duplicate)", c, h)
		}
		seen[h] = true
	}
	if Hint(errors.New("other")) != "" {
		t.Error("unrelated error got a hint")
	}
}

func TestLibraryLacksIsNotSupported(t *testing.T) {
	err := fmt.Errorf("setting the minimum pin length: %w", ErrLibraryLacks)
	if !errors.Is(err, ErrLibraryLacks) || !errors.Is(err, ErrNotSupported) {
		t.Fatalf("%v: want ErrLibraryLacks and ErrNotSupported", err)
	}
	if errors.Is(fmt.Errorf("x: %w", ErrNotSupported), ErrLibraryLacks) {
		t.Fatal("a key's own not-supported reads as the library's")
	}
}

func TestPlatformFIDOPath(t *testing.T) {
	for path, want := range map[string]bool{
		"windows://hello":                 true,
		"/dev/hidraw3":                    false,
		`\\?\hid#vid_1050&pid_0407&mi_01`: false,
		"ioreg://4294969457":              false,
	} {
		if got := IsPlatformFIDOPath(path); got != want {
			t.Errorf("IsPlatformFIDOPath(%q) = %v, want %v", path, got, want)
		}
	}
}
