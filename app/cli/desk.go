package cli

import (
	"errors"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/helpdeskid"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/registry/client"
)

// settings loads the desk's settings ($XDG_CONFIG_HOME/keydesk/settings.json,
// defaults when the file is missing). --practice turns practice mode on for
// this invocation too.
func (e *env) settings() (settings.Settings, string, error) {
	p, err := settings.DefaultPath()
	if err != nil {
		return settings.Settings{}, "", err
	}
	s, err := settings.Load(p)
	if err != nil {
		return settings.Settings{}, "", err
	}
	if e.practice {
		s.Practice = true
	}
	return s, p, nil
}

// registry connects to the desk's registry: the one in the settings with
// the keyring's token, or the embedded one. The caller closes it.
func (e *env) registry(s settings.Settings) (*regconn.Conn, error) {
	return regconn.Open(e.ctx, regconn.Options{Settings: s})
}

// openRegistry loads the desk's settings and connects to their registry;
// the caller closes the connection.
func (e *env) openRegistry() (*regconn.Conn, settings.Settings, error) {
	s, _, err := e.settings()
	if err != nil {
		return nil, s, err
	}
	conn, err := e.registry(s)
	return conn, s, err
}

// helpdesk is the desk's settings as enrolment, backups and the helpdesk's
// recoveries use them, and where its helpdesk identity comes from
// (app/helpdeskid, as in the desktop app): on a practice desk with no
// helpdesk recipient set, the practice identity in keydesk's data
// directory; otherwise the settings' recipients and the OS keyring.
func (e *env) helpdesk(s settings.Settings) (settings.Settings, *helpdeskid.Source, error) {
	return helpdeskid.Resolve(s, helpdeskid.Options{})
}

// identity reads the helpdesk identity from src, with the next step when
// the keyring holds none.
func identity(src *helpdeskid.Source) (string, error) {
	id, err := src.Identity()
	if errors.Is(err, secrets.ErrNotFound) && !src.Practice() {
		err = hinted{err, "Store the helpdesk's age identity on this desk first: keydesk recover identity (it reads the identity from the terminal or stdin)."}
	}
	return id, err
}

// hinter is an error that carries a plain-language next step.
type hinter interface{ Hint() string }

// registryExit maps registry and keyring errors to exit codes; ok is false
// when err is none of them.
func registryExit(err error) (code int, ok bool) {
	var ae *client.APIError
	var nt *regconn.NoTokenError
	var ue *secrets.UnavailableError
	var re *enrol.RegisteredError
	switch {
	case errors.As(err, &re):
		return ExitConflict, true
	case errors.Is(err, client.ErrUnreachable):
		return ExitRegistry, true
	case errors.Is(err, regconn.ErrTokenRefused), errors.As(err, &nt), errors.As(err, &ue):
		return ExitAuth, true
	case errors.As(err, &ae) && (ae.Status == 401 || ae.Status == 403):
		return ExitAuth, true
	case errors.As(err, &ae) && ae.Conflict():
		return ExitConflict, true
	}
	return 0, false
}
