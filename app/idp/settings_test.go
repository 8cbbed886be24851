package idp_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/app/idp"
)

type demoSettings struct {
	OrgURL      string `json:"org_url"`
	TokenSecret string `json:"token_secret,omitempty"`
}

func TestReadSettings(t *testing.T) {
	lenient := idp.SettingsReader{Kind: "demo", Name: "corp"}
	strict := idp.SettingsReader{Kind: "demo", Name: "corp", Strict: true}

	for _, r := range []idp.SettingsReader{lenient, strict} {
		s, err := idp.ReadSettings[demoSettings](r, nil)
		if err != nil || s != (demoSettings{}) {
			t.Errorf("strict %v, no settings: %+v, %v", r.Strict, s, err)
		}
		s, err = idp.ReadSettings[demoSettings](r, json.RawMessage(`{"org_url":"https://corp.example","token_secret":"okta/corp"}`))
		if err != nil || s != (demoSettings{OrgURL: "https://corp.example", TokenSecret: "okta/corp"}) {
			t.Errorf("strict %v: %+v, %v", r.Strict, s, err)
		}
		_, err = idp.ReadSettings[demoSettings](r, json.RawMessage(`{"org_url": 7}`))
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) || !strings.HasPrefix(err.Error(), `demo "corp": settings: `) {
			t.Errorf("strict %v, a number for a URL: %v", r.Strict, err)
		}
	}

	// A misspelt member: ignored, or refused when strict.
	misspelt := json.RawMessage(`{"org_ur":"https://corp.example"}`)
	if s, err := idp.ReadSettings[demoSettings](lenient, misspelt); err != nil || s != (demoSettings{}) {
		t.Errorf("lenient, misspelt member: %+v, %v", s, err)
	}
	_, err := idp.ReadSettings[demoSettings](strict, misspelt)
	if want := `demo "corp": settings: json: unknown field "org_ur"`; err == nil || err.Error() != want {
		t.Errorf("strict, misspelt member: %v, want %s", err, want)
	}

	// Lenient reading is json.Unmarshal's: trailing data is refused.
	_, err = idp.ReadSettings[demoSettings](lenient, json.RawMessage(`{} {}`))
	var syntaxErr *json.SyntaxError
	if !errors.As(err, &syntaxErr) {
		t.Errorf("lenient, trailing data: %v", err)
	}
}

type secretStore map[string]string

var errNoSecret = errors.New("no such secret")

func (s secretStore) Secret(name string) (string, error) {
	v, ok := s[name]
	if !ok {
		return "", errNoSecret
	}
	return v, nil
}

func TestSettingsReaderErrorsAndSecrets(t *testing.T) {
	r := idp.SettingsReader{Kind: "demo", Name: "corp"}
	if err := r.Errorf("settings: rp_id is required"); err.Error() != `demo "corp": settings: rp_id is required` {
		t.Errorf("Errorf: %q", err)
	}
	inner := errors.New("the cause")
	if err := r.Errorf("settings: admin_url: %w", inner); !errors.Is(err, inner) || err.Error() != `demo "corp": settings: admin_url: the cause` {
		t.Errorf("Errorf with %%w: %q", err)
	}

	sec := secretStore{"demo/corp": "s3cret-token"}
	if v, err := r.Secret(sec, "token secret", "demo/corp"); err != nil || v != "s3cret-token" {
		t.Errorf("Secret: %q, %v", v, err)
	}
	_, err := r.Secret(sec, "token secret", "demo/other")
	if want := `demo "corp": reading token secret "demo/other": no such secret`; !errors.Is(err, errNoSecret) || err.Error() != want {
		t.Errorf("a missing secret: %v, want %s", err, want)
	}
}

func TestBaseURL(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
	}{
		{in: "https://kratos.example/admin/", want: "https://kratos.example/admin"},
		{in: "http://127.0.0.1:4434", want: "http://127.0.0.1:4434"},
		{in: "https://corp.okta.com/", want: "https://corp.okta.com"},
		{in: "", err: "required"},
		{in: "ftp://kratos.example", err: `"ftp://kratos.example" is not an http(s) URL`},
		{in: "https:///", err: `"https:///" is not an http(s) URL`},
		{in: "kratos.example", err: `"kratos.example" is not an http(s) URL`},
		{in: "http://[::1", err: `parse "http://[::1": missing ']' in host`},
	} {
		u, err := idp.BaseURL(c.in)
		switch {
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("BaseURL(%q): %v, %v; want the error %q", c.in, u, err, c.err)
		case c.err == "" && (err != nil || u.String() != c.want):
			t.Errorf("BaseURL(%q): %v, %v; want %s", c.in, u, err, c.want)
		}
	}
}
