package registry

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// NormalizeExternalID returns an external id in Unicode Normalization Form
// C (UAX #15), so that the two encodings of "café" (precomposed U+00E9, or
// "e" and combining U+0301) name one user. An id that is not UTF-8 or
// holds a control (general category Cc: NUL, newlines, escapes) or format
// character (Cf: zero-width spaces and joiners, bidirectional overrides
// such as U+202E, the byte-order mark) is refused with InvalidError code
// invalid_external_id: such characters make two ids that look the same
// on screen name different users. Every path that stores or looks up an
// external id (create, enrolment, import, lookups) goes through this.
func NormalizeExternalID(id string) (string, error) {
	if !utf8.ValidString(id) {
		return "", Invalid("invalid_external_id", "external_id is not valid UTF-8")
	}
	for i, r := range id {
		if unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) {
			return "", Invalid("invalid_external_id", "external_id holds the invisible character %U at byte %d: control and format characters are not allowed", r, i)
		}
	}
	return norm.NFC.String(id), nil
}

// SameExternalID reports whether a and b name the same user: equal once
// both are normalised.
func SameExternalID(a, b string) bool {
	return norm.NFC.String(a) == norm.NFC.String(b)
}
