package uikit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"syscall"

	"modernc.org/sqlite"

	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/registry/client"
)

// A person at the desk never reads a library's words: Go's network errors
// ("dial tcp 127.0.0.1:9: connect: connection refused", a request line
// with its URL), "context deadline exceeded", x509 and TLS text, SQLite's
// and database/sql's, D-Bus names. Plain keeps keydesk's own words for
// what was being done ("enrolment of key 31000001 stopped at stage
// queued") and says the library's part in a few plain ones ("the registry
// could not be reached (nothing answers at its address)"); the full error
// stays with the caller, which may log it. The errors are told apart with
// errors.Is and errors.As, never by their text.

// plain is what a class of library error means for a person.
type plain struct {
	// what happened, lowercase, no final period.
	what string
	// next is what to do; "" when the error's own hint says it.
	next string
	// anchor is where the library's text starts in the error's text.
	anchor string
}

// Plain is what happened, in a person's words: keydesk's own text for
// err, with any library error inside it said plainly.
func Plain(err error) string {
	if err == nil {
		return ""
	}
	var fe *settings.FieldError
	var fes settings.Errors
	switch {
	case errors.As(err, &fes):
		lines := make([]string, len(fes))
		for i, e := range fes {
			lines[i] = e.Label() + " (Settings): " + e.Plain()
		}
		return strings.Join(lines, "\n")
	case errors.As(err, &fe):
		return fe.Label() + " (Settings): " + fe.Plain()
	}
	text := err.Error()
	if p, ok := classify(err); ok {
		text = splice(text, p.anchor, p.what)
	}
	return scrub(text)
}

// Reason is the library part of err alone, in plain words ("the registry
// could not be reached (nothing answers at its address)"), without what
// keydesk was doing: for a status line. Plain(err) when err holds no
// library error.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	if p, ok := classify(err); ok {
		return p.what
	}
	return Plain(err)
}

// NextStep is what a person can do about err ("" when nothing is known):
// the desktop app's own words for it first (DeskHint), then the error's
// hint, the device layer's, and the one for its class of library error.
func NextStep(err error) string {
	if err == nil {
		return ""
	}
	var dh deskHinter
	var h hinter
	var nt *regconn.NoTokenError
	p, classified := classify(err)
	switch {
	case errors.As(err, &dh) && dh.DeskHint() != "":
		return dh.DeskHint()
	case errors.As(err, &nt):
		// Its Hint names the command line's login.
		return "Paste the token your registry admin gave you under Registry token on the Settings screen and press Check and store token."
	case errors.As(err, &h) && h.Hint() != "":
		return h.Hint()
	}
	if hint := deviceHint(err); hint != "" {
		return hint
	}
	if classified {
		return p.next
	}
	if errors.Is(err, ErrNoRegistry) {
		return "Set the registry's address and token in Settings, then try again."
	}
	return ""
}

// splice puts what in place of text from anchor on, keeping what keydesk
// said before it ("asking the registry whose token this is: …"). Text
// without the anchor says the library's part in its own words already
// (an error that keeps the library's behind Unwrap) and stays as it is.
func splice(text, anchor, what string) string {
	i := strings.Index(text, anchor)
	if i < 0 {
		return text
	}
	if i == 0 {
		return what
	}
	prefix := strings.TrimRight(text[:i], ": ")
	if prefix == "" {
		return what
	}
	return prefix + ": " + what
}

// rawMarks are pieces of library text that classify did not catch; what
// keydesk said before one is kept, the rest dropped.
var rawMarks = []string{"dial tcp", "dial udp", "context deadline exceeded", "context canceled", "x509:", "tls:", "sql:",
	"sqlite", "SQLITE_", "dbus", "DBus", "D-Bus", "org.freedesktop", "%!", "<nil>", "Get \"", "Post \"", "Put \"",
	"Patch \"", "Delete \"", "unexpected EOF"}

// scrub drops the library text that reaches it after all (an error type
// nobody classified): keydesk's own words before it stay.
func scrub(text string) string {
	cut := -1
	for _, m := range rawMarks {
		if i := strings.Index(text, m); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut < 0 {
		return text
	}
	prefix := strings.TrimRight(text[:cut], ": ")
	if prefix == "" {
		return "something went wrong that keydesk cannot describe"
	}
	return prefix + ": something went wrong that keydesk cannot describe"
}

const (
	nextRegistry = "Check the network and that the registry is running (its address is in Settings), then try again."
	nextAddress  = "Check the registry's address in Settings, then try again."
	nextToken    = "Store a valid token under Registry token on the Settings screen, then try again."
	nextTrust    = "Check the registry's address in Settings. If it is right, set the certificate of the CA that signed " +
		"the registry's under Registry CA in Settings, or ask the registry's operator."
	nextAgain = "Try again. If it keeps happening, restart keydesk."
	nextLocal = "Check that the disk holding keydesk's data folder has free space and can be written, then restart keydesk."
)

// classify finds the library error in err and says it plainly; ok is
// false when err holds none keydesk knows.
func classify(err error) (plain, bool) {
	regAnchor := func(lib error) string {
		if strings.Contains(err.Error(), client.ErrUnreachable.Error()) {
			return client.ErrUnreachable.Error()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Error()
		}
		if lib != nil {
			return lib.Error()
		}
		return client.ErrUnreachable.Error()
	}
	var ae *client.APIError
	var fe *fs.PathError
	var se *sqlite.Error
	var ue *url.Error
	var oe *net.OpError
	if msg, ok := client.Storage(err); ok {
		var une *client.UnavailableError
		errors.As(err, &une)
		return plain{what: msg, next: "The registry answered but its storage took nothing; ask its operator to fix it, then try again.", anchor: une.Error()}, true
	}
	if what, anchor, ok := trust(err); ok {
		if strings.Contains(err.Error(), client.ErrUnreachable.Error()) {
			anchor = client.ErrUnreachable.Error()
		}
		return plain{what: what, next: nextTrust, anchor: anchor}, true
	}
	switch {
	case errors.Is(err, regconn.ErrTokenRefused):
		return plain{what: "the registry refused this token (revoked or mistyped)", next: nextToken, anchor: regconn.ErrTokenRefused.Error()}, true
	case errors.As(err, &ae) && ae.Status == 401:
		return plain{what: "the registry refused this desk's token (revoked or mistyped)", next: nextToken, anchor: ae.Error()}, true
	case errors.As(err, &ae) && ae.Status == 403:
		return plain{what: "the registry does not let this desk's token do that", next: "Ask a registry admin for a token with the role this needs.", anchor: ae.Error()}, true
	case errors.Is(err, client.ErrBadResponse):
		return plain{what: "something other than the registry answered at its address", next: nextAddress, anchor: regAnchor(client.ErrBadResponse)}, true
	case errors.Is(err, client.ErrUnreachable):
		what := "the registry could not be reached"
		if r := reason(err); r != "" {
			what += " (" + r + ")"
		}
		return plain{what: what, next: nextRegistry, anchor: regAnchor(nil)}, true
	case errors.As(err, &ue):
		what := "the service at " + host(ue.URL) + " could not be reached"
		if r := reason(err); r != "" {
			what += " (" + r + ")"
		}
		return plain{what: what, next: "Check the network and the service's address in Settings, then try again.", anchor: ue.Error()}, true
	case errors.As(err, &oe):
		what := "the network connection failed"
		if r := reason(err); r != "" {
			what += " (" + r + ")"
		}
		return plain{what: what, next: "Check the network, then try again.", anchor: oe.Error()}, true
	case errors.As(err, &se), errors.Is(err, sql.ErrConnDone), errors.Is(err, sql.ErrTxDone):
		anchor := "sql:"
		if se != nil {
			anchor = se.Error()
		}
		what := "this desk's local database could not be used"
		if errors.Is(err, syscall.ENOSPC) || (se != nil && se.Code()&0xff == 13) { // SQLITE_FULL
			what = "this desk's local database could not be written: the disk is full"
		}
		return plain{what: what, next: nextLocal, anchor: anchor}, true
	case errors.As(err, &fe):
		what, next := pathWords(fe)
		return plain{what: what, next: next, anchor: fe.Error()}, true
	case errors.Is(err, context.DeadlineExceeded):
		return plain{what: "it took too long and was stopped", next: nextAgain, anchor: context.DeadlineExceeded.Error()}, true
	case errors.Is(err, context.Canceled):
		return plain{what: "it was stopped before it finished", next: "", anchor: context.Canceled.Error()}, true
	case errors.Is(err, io.ErrUnexpectedEOF):
		return plain{what: "the answer stopped part way", next: nextAgain, anchor: io.ErrUnexpectedEOF.Error()}, true
	case errors.Is(err, io.EOF):
		return plain{what: "the answer stopped part way", next: nextAgain, anchor: io.EOF.Error()}, true
	}
	return plain{}, false
}

// trust says why a TLS connection was refused: the registry's
// certificate, or an address that does not speak TLS.
func trust(err error) (what, anchor string, ok bool) {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &he):
		return "the registry's certificate is for another name than its address", he.Error(), true
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return "the registry's certificate has expired or is not valid yet", ci.Error(), true
	case errors.As(err, &ua), errors.As(err, &ci), errors.As(err, &cv):
		anchor := "x509:"
		if strings.Contains(err.Error(), "tls:") {
			anchor = "tls:"
		}
		return "the registry's certificate is not one this desk trusts", anchor, true
	case errors.As(err, &rh):
		return "the registry's address does not answer over HTTPS", rh.Error(), true
	}
	return "", "", false
}

// reason is why a connection failed, in a few words; "" when unknown.
func reason(err error) string {
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &dns):
		return "its name was not found"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing answers at its address"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "the network does not reach it"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "it did not answer in time"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection was cut off"
	}
	// The client's own "registry unreachable: status 502".
	if _, after, ok := strings.Cut(err.Error(), client.ErrUnreachable.Error()+": status "); ok {
		code, _, _ := strings.Cut(after, " ")
		if code == "429" {
			return "it is too busy just now"
		}
		return "it answered with a fault of its own, status " + code
	}
	return ""
}

// pathWords says what went wrong with a file or folder, and what to do.
func pathWords(fe *fs.PathError) (what, next string) {
	p := fe.Path
	switch {
	case errors.Is(fe.Err, syscall.ENOSPC):
		return p + " could not be written: the disk is full", "Free some space on that disk, then try again."
	case errors.Is(fe.Err, syscall.EROFS):
		return p + " is on a disk that cannot be written", "Choose a place that can be written, then try again."
	case errors.Is(fe.Err, fs.ErrPermission):
		return "keydesk may not use " + p, "Check that you own it and may write there, then try again."
	case errors.Is(fe.Err, syscall.ENOTDIR):
		return p + " could not be used: a file stands where a folder belongs", "Move that file out of the way, then try again."
	case errors.Is(fe.Err, syscall.EISDIR):
		return p + " is a folder, not a file", "Choose a file, then try again."
	case errors.Is(fe.Err, fs.ErrNotExist):
		return p + " does not exist", "Check the name, then try again."
	}
	return p + " could not be used", nextAgain
}

// host is the host of a URL ("registry.example.org"), or the URL when it
// names none.
func host(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Host
	}
	return raw
}
