package settingsui_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/settingsui"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/app/ui/uitest"
)

func TestMain(m *testing.M) { uitest.Main(m, 1) }

const wait = 30 * time.Second

func open(t *testing.T) (*uikit.Env, *settingsui.View, *int) {
	t.Helper()
	env := uitest.Env(t, uikit.Admin, "", uitest.Fleet.Admin)
	reconnects := 0
	env.Reconnect = func() { reconnects++ }
	v := settingsui.New(env)
	v.Path = filepath.Join(t.TempDir(), "settings.json")
	v.Keyring = secrets.New(fmt.Sprintf("keydesk-settingsui-test-%d", time.Now().UnixNano()))
	env.Window.SetContent(v.Root)
	return env, v, &reconnects
}

func set(e interface{ SetText(string) }, s string) { e.SetText(s) }

// TestFieldErrors: each unusable value is named under its own field and
// nothing is saved.
func TestFieldErrors(t *testing.T) {
	env, v, reconnects := open(t)
	set(v.RegistryURL, "http://registry.example.org")
	set(v.RPID, "Not A Domain")
	set(v.MinPINLength, "2")
	set(v.CertDays, "many")
	test.Tap(v.Save)
	for _, f := range []string{"registry_url", "rp_id", "min_pin_length", "cert_validity_days"} {
		if l := v.Errs[f]; !l.Visible() || l.Text == "" {
			t.Errorf("no error shown under %s", f)
		}
	}
	if l := v.Errs["cred_protect"]; l.Visible() {
		t.Errorf("an error under a good field: %q", l.Text)
	}
	if !strings.Contains(v.Errs["registry_url"].Text, "https") {
		t.Errorf("registry_url error %q does not say what to use", v.Errs["registry_url"].Text)
	}
	if _, err := os.Stat(v.Path); err == nil || *reconnects != 0 {
		t.Fatal("settings with errors were saved")
	}
	uitest.MatchImage(t, "settings.png", env.Window.Canvas().Capture())
}

// TestSaveReconnects: good values are saved and the shell reconnects.
func TestSaveReconnects(t *testing.T) {
	_, v, reconnects := open(t)
	set(v.RPID, "example.org")
	set(v.MinPINLength, "6")
	v.CredProtect.SetSelected("3")
	test.Tap(v.Save)
	if *reconnects != 1 {
		t.Fatalf("saved: %q; reconnects %d", v.Result.Text, *reconnects)
	}
	s, err := settings.Load(v.Path)
	if err != nil {
		t.Fatal(err)
	}
	if s.RPID != "example.org" || s.MinPINLength != 6 || s.CredProtect != 3 || !s.Practice {
		t.Fatalf("saved settings %+v", s)
	}
	for f, l := range v.Errs {
		if l.Visible() {
			t.Errorf("error left under %s: %q", f, l.Text)
		}
	}
}

// TestToken: a token the registry refuses is not stored; a good one is,
// in the keyring; an unreachable registry is named.
func TestToken(t *testing.T) {
	_, v, _ := open(t)
	url := uitest.Fleet.Registry.URL
	set(v.RegistryURL, url)
	set(v.Token, "kdr_this-is-not-a-token-the-registry-knows")
	test.Tap(v.StoreToken)
	uitest.WaitFor(t, wait, "the refusal", func() bool { return strings.Contains(v.Result.Text, "not stored") })
	if !strings.Contains(v.Result.Text, "refused") {
		t.Fatalf("refusal reads %q", v.Result.Text)
	}
	if _, err := v.Keyring.Get(secrets.RegistryTokenAccount(url)); err == nil {
		t.Fatal("a refused token was stored")
	}

	set(v.Token, uitest.Fleet.HelpdeskToken)
	test.Tap(v.StoreToken)
	uitest.WaitFor(t, wait, "the token stored", func() bool { return strings.Contains(v.Result.Text, "Token stored") })
	got, err := v.Keyring.Get(secrets.RegistryTokenAccount(url))
	if err != nil || got != uitest.Fleet.HelpdeskToken {
		t.Fatalf("keyring holds %v, %v", got != "", err)
	}
	v.Keyring.Delete(secrets.RegistryTokenAccount(url))
	if v.Token.Text != "" {
		t.Fatal("the token stays in the field after it was stored")
	}

	set(v.RegistryURL, "http://127.0.0.1:9")
	set(v.Token, uitest.Fleet.HelpdeskToken)
	test.Tap(v.StoreToken)
	uitest.WaitFor(t, wait, "the registry named unreachable", func() bool { return strings.Contains(v.Result.Text, "not stored") })
	if !strings.Contains(v.Result.Text, "reach") {
		t.Fatalf("unreachable registry reads %q", v.Result.Text)
	}
}

// TestProvidersKept: the screen lists the configured identity providers,
// and saving the other fields keeps them (they are edited in the file).
func TestProvidersKept(t *testing.T) {
	env := uitest.Env(t, uikit.Admin, "", uitest.Fleet.Admin)
	base := env.Settings()
	base.Providers = []idp.Config{{Kind: "entra", Name: "corp", Settings: []byte(`{"tenant":"contoso"}`)}, {Kind: "kratos", Name: "staff"}}
	env.Settings = func() settings.Settings { return base }
	env.Reconnect = func() {}
	v := settingsui.New(env)
	v.Path = filepath.Join(t.TempDir(), "settings.json")
	env.Window.SetContent(v.Root)
	if want := "corp (entra): every enrolled key is registered here too\nstaff (kratos): every enrolled key is registered here too"; v.Providers.Text != want {
		t.Fatalf("providers shown: %q", v.Providers.Text)
	}
	set(v.RPID, "example.org")
	test.Tap(v.Save)
	s, err := settings.Load(v.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Providers) != 2 || s.Providers[0].Name != "corp" || !strings.Contains(string(s.Providers[0].Settings), `"contoso"`) || s.RPID != "example.org" {
		t.Fatalf("saved: %+v", s.Providers)
	}
	if settingsui.ProvidersText(nil) == "" {
		t.Fatal("no words for no providers")
	}
}
