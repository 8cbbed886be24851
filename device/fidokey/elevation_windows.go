package fidokey

import "golang.org/x/sys/windows"

// needsElevation reports whether a FIDO key that could not be opened was
// refused for lack of elevation: on Windows 10 1903 and later only a process
// running as administrator may open a FIDO HID device (the others go through
// webauthn.dll). Opening fails in libfido2 without a reason (CreateFile's
// ERROR_ACCESS_DENIED is not passed on), so the process's own token decides.
func needsElevation() bool {
	return !windows.GetCurrentProcessToken().IsElevated()
}
