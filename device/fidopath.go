package device

import "strings"

// IsPlatformFIDOPath reports whether a libfido2 device path is the
// system's platform authenticator rather than a security key. On Windows
// libfido2 (1.6 and later, winhello.c) lists "windows://hello": the
// system's WebAuthn API (webauthn.dll), standing for Windows Hello and for
// every key behind it. It has no serial and takes no admin commands, so
// keydesk does not list it as a key.
func IsPlatformFIDOPath(path string) bool { return strings.HasPrefix(path, "windows://") }
