package idp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// SettingsReader reads one configured provider's settings for its
// connector: it decodes them into the kind's own settings struct
// (ReadSettings), fetches the secrets they name (Secret), and words every
// error the same way, the connector kind and the provider's name first:
// `okta "corp": settings: rp_id is required`.
type SettingsReader struct {
	// Kind is the connector kind ("kratos"), Name the provider's
	// configured name.
	Kind, Name string
	// Strict refuses a settings member the kind's struct has no field for
	// (a misspelt setting) instead of ignoring it.
	Strict bool
}

// ReadSettings decodes raw (Config.Settings, a JSON object) into the
// kind's settings struct T. Empty settings give T's zero value. A
// malformed value is an error `<kind> "<name>": settings: <reason>`;
// checking the values is the connector's.
func ReadSettings[T any](r SettingsReader, raw json.RawMessage) (T, error) {
	var s T
	if len(raw) == 0 {
		return s, nil
	}
	var err error
	if r.Strict {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		err = dec.Decode(&s)
	} else {
		err = json.Unmarshal(raw, &s)
	}
	if err != nil {
		return s, r.Errorf("settings: %w", err)
	}
	return s, nil
}

// Errorf is an error of the provider's: `<kind> "<name>": ` and then
// format with a, as fmt.Errorf makes it (so %w wraps).
func (r SettingsReader) Errorf(format string, a ...any) error {
	return fmt.Errorf("%s %q: "+format, append([]any{r.Kind, r.Name}, a...)...)
}

// Secret reads the secret the settings name secretName from sec; what
// says what it is in the error, `<kind> "<name>": reading <what>
// "<secretName>": <reason>`. sec must not be nil: a connector decides
// itself what a missing secret store means for it.
func (r SettingsReader) Secret(sec Secrets, what, secretName string) (string, error) {
	v, err := sec.Secret(secretName)
	if err != nil {
		return "", r.Errorf("reading %s %q: %w", what, secretName, err)
	}
	return v, nil
}

// BaseURL parses a provider's base URL from its settings: an http or https
// URL with a host, its one trailing slash dropped, so that API paths are
// appended to it. Empty is the error "required"; the caller names the
// setting.
func BaseURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("required")
	}
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http(s) URL", s)
	}
	return u, nil
}
