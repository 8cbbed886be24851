package settingsui_test

import (
	"fmt"
	"os"
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
	return openWith(t, uitest.Env(t, uikit.Admin, "", uitest.Fleet.Admin))
}

// openWith opens the screen on env with a settings file of its own (none
// yet) in a fresh config directory.
func openWith(t *testing.T, env *uikit.Env) (*uikit.Env, *settingsui.View, *int) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	reconnects := 0
	env.Reconnect = func() { reconnects++ }
	v := settingsui.New(env)
	if want, _ := settings.DefaultPath(); v.Path != want {
		t.Fatalf("the screen saves to %s, not %s", v.Path, want)
	}
	v.Keyring = secrets.New(fmt.Sprintf("keydesk-settingsui-test-%d", time.Now().UnixNano()))
	env.Window.SetContent(v.Root)
	return env, v, &reconnects
}

func set(e interface{ SetText(string) }, s string) { e.SetText(s) }

// TestSaveEndsInOutcome: after Save the result line ends in what the
// registry answered, connected or why not, never in "Reconnecting".
func TestSaveEndsInOutcome(t *testing.T) {
	_, v, reconnects := open(t)
	set(v.RPName, "Example Org")
	test.Tap(v.Save)
	uitest.WaitFor(t, wait, "the outcome", func() bool { return !strings.Contains(v.Result.Text, "Reconnecting") })
	if *reconnects != 1 || !strings.Contains(v.Result.Text, "Connected to the embedded registry") {
		t.Fatalf("after Save (reconnects %d): %q", *reconnects, v.Result.Text)
	}

	env, v, _ := openWith(t, uitest.Env(t, uikit.Admin, "", nil)) // the registry is down
	set(v.RegistryURL, "https://registry.example.org")
	test.Tap(v.Save)
	uitest.WaitFor(t, wait, "the outcome", func() bool { return !strings.Contains(v.Result.Text, "Reconnecting") })
	if c := uitest.CLICommand(uitest.WindowText(env.Window)); c != "" {
		t.Errorf("the screen names the command line %q", c)
	}
	for _, want := range []string{"Saved", "registry.example.org is not connected", "could not be reached", "Check the network"} {
		if !strings.Contains(v.Result.Text, want) {
			t.Errorf("after Save with the registry down, %q does not say %q", v.Result.Text, want)
		}
	}
}

// TestSaveOnlyWhenChanged: Save is disabled, with the reason beside it,
// until a field reads otherwise than the settings last saved, and again
// once they are saved or the change is undone.
func TestSaveOnlyWhenChanged(t *testing.T) {
	_, v, _ := open(t)
	disabled := func(want bool, when string) {
		t.Helper()
		if v.Save.Disabled() != want || v.SaveNote.Visible() != want {
			t.Fatalf("%s: Save disabled %v, reason shown %v (%q)", when, v.Save.Disabled(), v.SaveNote.Visible(), v.SaveNote.Text)
		}
	}
	disabled(true, "as opened")
	if !strings.Contains(v.SaveNote.Text, "changed") {
		t.Errorf("the reason reads %q", v.SaveNote.Text)
	}
	old := v.RPName.Text
	test.Type(v.RPName, "x")
	disabled(false, "after typing")
	set(v.RPName, old)
	disabled(true, "after undoing the change")
	test.Tap(v.ForcePIN)
	disabled(false, "after ticking a box")
	test.Tap(v.Save)
	disabled(true, "after saving")
	if _, err := os.Stat(v.Path); err != nil {
		t.Fatal(err)
	}
}

// TestPracticeFromSession: practice mode that came from how the app was
// started (the settings file does not ask for it) is not written into the
// file; practice mode the file asks for stays in it.
func TestPracticeFromSession(t *testing.T) {
	env, v, _ := open(t)
	if !env.Settings().Practice || !v.SessionPractice || v.Practice.Checked || !v.PracticeNote.Visible() {
		t.Fatalf("session practice %v, box %v, note %v", v.SessionPractice, v.Practice.Checked, v.PracticeNote.Visible())
	}
	set(v.RPName, "Example Org")
	test.Tap(v.Save)
	b, err := os.ReadFile(v.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"practice": false`) {
		t.Fatalf("the session's practice mode was saved:\n%s", b)
	}

	// The file asks for practice mode: the box shows it, Save keeps it.
	s := settings.Default()
	s.Practice = true
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	p, _ := settings.DefaultPath()
	if err := settings.Save(p, s); err != nil {
		t.Fatal(err)
	}
	v = settingsui.New(env)
	if v.SessionPractice || !v.Practice.Checked || v.PracticeNote.Visible() {
		t.Fatalf("file practice: session %v, box %v, note %v", v.SessionPractice, v.Practice.Checked, v.PracticeNote.Visible())
	}
	set(v.RPName, "Example Org")
	test.Tap(v.Save)
	if got, err := settings.Load(p); err != nil || !got.Practice {
		t.Fatalf("practice mode chosen in the file was dropped: %+v, %v", got, err)
	}
}

// TestPlainProblems: problems under the fields name settings by their
// labels, with no settings-file names and no library text.
func TestPlainProblems(t *testing.T) {
	_, v, _ := open(t)
	set(v.RegistryURL, "")
	set(v.RegistryCA, "/etc/ssl/registry.pem")
	set(v.RegistryURL, "https://exa mple.org")
	set(v.Recipients, "age1notarecipient")
	set(v.MinPINLength, "99")
	v.CertMode.SetSelected(settings.CertCSR)
	set(v.CSRDir, "")
	test.Tap(v.Save)
	var all []string
	for f, l := range v.Errs {
		if l.Visible() {
			all = append(all, f+": "+l.Text)
		}
	}
	text := strings.Join(all, "\n")
	for _, f := range []string{"registry_url", "helpdesk_recipients", "min_pin_length", "csr_dir"} {
		if !v.Errs[f].Visible() {
			t.Errorf("no problem shown under %s:\n%s", f, text)
		}
	}
	for _, raw := range []string{"_", "parse ", "malformed", "invalid type", "§", "CTAP"} {
		for _, l := range all {
			if _, msg, _ := strings.Cut(l, ": "); strings.Contains(msg, raw) {
				t.Errorf("%q is not plain words (%q)", l, raw)
			}
		}
	}
	if !strings.Contains(v.Errs["csr_dir"].Text, "PIV certificate") {
		t.Errorf("the CSR directory's problem does not name the PIV certificate setting: %q", v.Errs["csr_dir"].Text)
	}
}

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
	test.Tap(v.Practice)
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

// TestStoreButtonsOnlyWhenTheyCanHelp: "Check and store token" needs a
// registry URL and a token, "Store identity" an identity; while they
// cannot help they are disabled and the reason is beside them.
func TestStoreButtonsOnlyWhenTheyCanHelp(t *testing.T) {
	_, v, _ := open(t)
	state := func(b interface{ Disabled() bool }, note interface{ Visible() bool }, want bool, when string) {
		t.Helper()
		if b.Disabled() != want || note.Visible() != want {
			t.Fatalf("%s: disabled %v, reason shown %v (token note %q, identity note %q)", when, b.Disabled(), note.Visible(), v.TokenNote.Text, v.IdentityNote.Text)
		}
	}
	state(v.StoreToken, v.TokenNote, true, "embedded registry")
	if !strings.Contains(v.TokenNote.Text, "embedded registry needs no token") {
		t.Errorf("token note %q", v.TokenNote.Text)
	}
	test.Type(v.RegistryURL, "https://registry.example.org")
	state(v.StoreToken, v.TokenNote, true, "no token typed")
	if !strings.Contains(v.TokenNote.Text, "Paste the token") {
		t.Errorf("token note %q", v.TokenNote.Text)
	}
	test.Type(v.Token, "kdr_x")
	state(v.StoreToken, v.TokenNote, false, "URL and token")

	state(v.StoreIdentity, v.IdentityNote, true, "no identity typed")
	test.Type(v.Identity, "AGE-SECRET-KEY-1")
	state(v.StoreIdentity, v.IdentityNote, false, "identity typed")
	if v.NewIdentity.Disabled() {
		t.Error("New identity is disabled")
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
	// The screen shows the settings file.
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	p, _ := settings.DefaultPath()
	if err := settings.Save(p, base); err != nil {
		t.Fatal(err)
	}
	v := settingsui.New(env)
	if v.Path != p {
		t.Fatalf("screen edits %s, want %s", v.Path, p)
	}
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
