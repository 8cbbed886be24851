package uikit_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
	"github.com/keydesk/keydesk/registry/client"
)

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// ask sends one request through the registry client to base and returns
// its error.
func ask(t *testing.T, ctx context.Context, base string) error {
	t.Helper()
	c, err := client.New(base, "kdr_plain-plain-plain-plain-plain", client.Options{OutboxPath: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.WhoAmI(ctx)
	if err == nil {
		t.Fatalf("%s answered", base)
	}
	return fmt.Errorf("asking the registry whose token this is: %w", err)
}

// TestMessageNeverShowsLibraryText: real faults — a registry port nothing
// listens on, one that never answers, one that hangs up, a certificate
// nobody trusts, HTTPS to a plain HTTP server, a settings folder that is a
// file, an outbox that cannot be opened, a keyring with no session bus —
// read as what happened and what to do, with keydesk's own words kept and
// none of the library's.
func TestMessageNeverShowsLibraryText(t *testing.T) {
	ctx := context.Background()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	tlsSrv := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	plainSrv := httptest.NewServer(http.NotFoundHandler())
	defer plainSrv.Close()
	hangup, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hangup.Close()
	go func() {
		for {
			c, err := hangup.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	type fault struct {
		name string
		err  func() error
		says []string // all of them, in Message
	}
	faults := []fault{
		{"closed port", func() error { return ask(t, ctx, "http://"+closedPort(t)) },
			[]string{"asking the registry whose token this is: the registry could not be reached (nothing answers at its address)", "Settings"}},
		{"no answer in time", func() error {
			c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			return ask(t, c, hang.URL)
		}, []string{"could not be reached (it did not answer in time)", "try again"}},
		{"hung up", func() error { return ask(t, ctx, "http://"+hangup.Addr().String()) },
			// A reset or EOF says that the connection was cut off; when the
			// close wins the race with the request, Go's HTTP client says
			// so in an untyped error, and only the plain words are left.
			[]string{"could not be reached"}},
		{"untrusted certificate", func() error { return ask(t, ctx, tlsSrv.URL) },
			[]string{"certificate is not one this desk trusts", "Registry CA"}},
		{"https to plain http", func() error { return ask(t, ctx, strings.Replace(plainSrv.URL, "http:", "https:", 1)) },
			// Go's HTTP client says it in an untyped error.
			[]string{"the registry could not be reached", "Settings"}},
		{"settings folder is a file", func() error {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "keydesk"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return settings.Save(filepath.Join(dir, "keydesk", "settings.json"), settings.Default())
		}, []string{"a file stands where a folder belongs", "Move that file"}},
		{"outbox cannot be opened", func() error {
			_, err := client.New("http://"+closedPort(t), "kdr_plain-plain-plain-plain-plain", client.Options{OutboxPath: t.TempDir()})
			if err == nil {
				t.Fatal("an outbox opened on a folder")
			}
			return err
		}, []string{"could not be"}},
		{"deadline", func() error {
			c, cancel := context.WithTimeout(ctx, time.Millisecond)
			defer cancel()
			<-c.Done()
			return fmt.Errorf("reading the key: %w", c.Err())
		}, []string{"reading the key: it took too long and was stopped", "Try again"}},
		{"no session bus", func() error {
			t.Setenv("DBUS_SESSION_BUS_ADDRESS", "disabled:")
			_, err := secrets.New("keydesk-plain-test").Get(secrets.RegistryTokenAccount("https://registry.example.org"))
			if err == nil {
				t.Fatal("a keyring answered with no session bus")
			}
			return err
		}, []string{"keyring", "gnome-keyring"}},
	}
	for _, f := range faults {
		err := f.err()
		msg := uikit.Message(err)
		if r := uitest.Raw(msg); r != "" {
			t.Errorf("%s: %q shows %q (the error: %v)", f.name, msg, r, err)
		}
		for _, s := range f.says {
			if !strings.Contains(msg, s) {
				t.Errorf("%s: %q does not say %q (the error: %v)", f.name, msg, s, err)
			}
		}
		if r := uitest.Raw(uikit.Reason(err)); r != "" {
			t.Errorf("%s: the reason %q shows %q", f.name, uikit.Reason(err), r)
		}
	}
}

// ownWords is an error that says its cause in its own words and keeps the
// library's behind Unwrap (as secrets.UnavailableError does).
type ownWords struct{ err error }

func (e ownWords) Error() string { return "the audit log is open to admins only" }
func (e ownWords) Unwrap() error { return e.err }

// TestPlainKeepsKeydeskWords: an error with no library text inside reads
// as it is, and so does one that keeps the library's behind Unwrap; one
// whose library text nobody classified keeps keydesk's words before it and
// drops the rest.
func TestPlainKeepsKeydeskWords(t *testing.T) {
	refused := ownWords{fmt.Errorf("reading the audit log: %w", &client.APIError{Status: 403, Code: "forbidden", Message: "admin only"})}
	if got := uikit.Plain(refused); got != "the audit log is open to admins only" {
		t.Errorf("Plain = %q", got)
	}
	if got := uikit.Plain(fmt.Errorf("changing the PIN: %w", fmt.Errorf("the key said no"))); got != "changing the PIN: the key said no" {
		t.Errorf("Plain = %q", got)
	}
	got := uikit.Plain(fmt.Errorf("reading the roster: %w", fmt.Errorf("org.freedesktop.DBus.Error.ServiceUnknown: gone")))
	if uitest.Raw(got) != "" || !strings.HasPrefix(got, "reading the roster: ") {
		t.Errorf("Plain = %q", got)
	}
}
