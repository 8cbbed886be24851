// Package settingsui is the Settings screen of keydesk's desktop app: the
// registry's URL, the registry token and the helpdesk identity (kept in the
// OS keyring, never in the settings file), the attestation trust roots, the
// enrolment policy (PIN length, credProtect, rp id, discoverable) and
// practice mode. A value that cannot be used is named under its own field
// (app/settings.FieldError).
package settingsui

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"filippo.io/age"
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/registry/client"
)

// Screen is the Settings screen; every role sees it (an engineer stores
// their own registry token here).
func Screen() uikit.Screen {
	return uikit.Screen{ID: "settings", Title: "Settings", Icon: theme.SettingsIcon(), Make: func(env *uikit.Env) fyne.CanvasObject { return New(env).Root }}
}

// View is the Settings screen. Its widgets are fields for tests.
type View struct {
	env *uikit.Env
	// Keyring holds the token and the identity; secrets.Default() when New
	// makes the view. Path is the settings file; settings.DefaultPath().
	Keyring *secrets.Keyring
	Path    string

	RegistryURL, RegistryCA, RPID, RPName, MinPINLength, CSRDir, CertDays *uikit.Entry
	Recipients, TrustRoots                                                *uikit.Entry
	CredProtect, CertMode                                                 *widget.Select
	Discoverable, ForcePIN, Practice                                      *widget.Check

	Token, Identity           *uikit.Entry
	StoreToken, StoreIdentity *widget.Button
	// TokenNote and IdentityNote say why StoreToken and StoreIdentity are
	// disabled; hidden while they are enabled.
	TokenNote, IdentityNote *widget.Label
	checking                bool // a token is being checked
	NewIdentity             *widget.Button
	Save                    *widget.Button
	// SaveNote says why Save is disabled (nothing has changed since the
	// settings were read or saved); hidden while Save is enabled.
	SaveNote *widget.Label
	Result   *widget.Label
	// SessionPractice is set when the desk runs in practice mode although
	// the settings file does not ask for it (KEYDESK_PRACTICE at start):
	// the Practice box then shows the file's choice, and Save keeps it.
	SessionPractice bool
	// PracticeNote says so under the Practice box, and that a practice
	// desk seals to its own identity while no recipient is set.
	PracticeNote *widget.Label
	// Providers lists the identity providers every enrolled key is also
	// registered with (settings.json's "providers"; their secrets are in
	// the OS keyring). The screen shows them; saving keeps them.
	Providers *widget.Label
	providers []idp.Config

	// Errs holds the error line under each field, by its JSON name.
	Errs map[string]*widget.Label
	Root fyne.CanvasObject
	form *widget.Form
	// saved is what the fields read as when the settings were last read or
	// saved; Save is enabled only when the fields read otherwise.
	saved settings.Settings
	// saves counts Saves, so that only the last one's outcome is shown.
	saves int
}

// New builds the Settings screen from the settings file (env.Settings when
// it cannot be read), noting what this session adds to it.
func New(env *uikit.Env) *View {
	v := &View{env: env, Keyring: secrets.Default(), Errs: map[string]*widget.Label{}}
	v.Path, _ = settings.DefaultPath()
	// The fields show the settings file, not the desk's settings of the
	// moment: those add what this session chose for itself (practice mode
	// from how the app was started, a practice desk's own helpdesk
	// recipient), which Save must not write into the file.
	live := settings.Default()
	if env.Settings != nil {
		live = env.Settings()
	}
	s, err := settings.Load(v.Path)
	if v.Path == "" || err != nil {
		s = live
	}
	var session []string
	if live.Practice && !s.Practice {
		v.SessionPractice = true
		session = append(session, "This session runs in practice mode because the app was started in practice mode (KEYDESK_PRACTICE); saving does not make that a setting. Tick the box only to start in practice mode every time.")
	}
	if len(s.HelpdeskRecipients) == 0 && len(live.HelpdeskRecipients) > 0 {
		session = append(session, "Practice escrows are sealed to this desk's own practice identity until helpdesk recipients are set here.")
	}
	entry := func(text, hint string) *uikit.Entry {
		e := uikit.NewEntry()
		e.SetText(text)
		e.SetPlaceHolder(hint)
		return e
	}
	v.RegistryURL = entry(s.RegistryURL, "empty: the embedded registry on this desk")
	v.RegistryCA = entry(s.RegistryCA, "PEM file to trust for the registry's TLS (optional)")
	v.RPID = entry(s.RPID, "e.g. example.org, the organisation's domain")
	v.RPName = entry(s.RPName, "shown next to the credential")
	v.MinPINLength = entry(strconv.Itoa(s.MinPINLength), "4 to 63")
	v.CSRDir = entry(s.CSRDir, "where certificate requests are written (CSR mode)")
	v.CertDays = entry(strconv.Itoa(s.CertValidityDays), "1 to 3650")
	v.Recipients = uikit.NewMultiLineEntry()
	v.Recipients.SetText(strings.Join(s.HelpdeskRecipients, "\n"))
	v.Recipients.SetPlaceHolder("age1… (one per line)")
	v.Recipients.SetMinRowsVisible(2)
	v.TrustRoots = uikit.NewMultiLineEntry()
	v.TrustRoots.SetText(strings.Join(s.TrustRoots, "\n"))
	v.TrustRoots.SetPlaceHolder("PEM files of extra attestation roots (one path per line)")
	v.TrustRoots.SetMinRowsVisible(2)
	v.CredProtect = widget.NewSelect([]string{"2", "3"}, nil)
	v.CredProtect.SetSelected(strconv.Itoa(s.CredProtect))
	v.CertMode = widget.NewSelect([]string{settings.CertSelfSigned, settings.CertCSR}, nil)
	v.CertMode.SetSelected(s.PIVCertMode)
	v.Discoverable = widget.NewCheck("discoverable credential (sign in without a user name)", nil)
	v.Discoverable.SetChecked(s.Discoverable)
	v.ForcePIN = widget.NewCheck("the user changes the FIDO2 PIN at first use", nil)
	v.ForcePIN.SetChecked(s.ForcePINChange)
	v.Practice = widget.NewCheck("practice mode: virtual keys, their attestation root trusted (never on a production desk)", nil)
	v.Practice.SetChecked(s.Practice)
	v.PracticeNote = widget.NewLabel("")
	v.PracticeNote.Wrapping = fyne.TextWrapWord
	v.PracticeNote.Hide()
	if len(session) > 0 {
		v.PracticeNote.SetText(strings.Join(session, " "))
		v.PracticeNote.Show()
	}

	v.Token = uikit.NewPasswordEntry()
	v.Token.SetPlaceHolder("kdr_… from your registry admin")
	v.StoreToken = widget.NewButton("Check and store token", v.storeToken)
	v.Identity = uikit.NewPasswordEntry()
	v.Identity.SetPlaceHolder("AGE-SECRET-KEY-1…")
	v.StoreIdentity = widget.NewButton("Store identity", v.storeIdentity)
	v.NewIdentity = widget.NewButton("New identity", v.newIdentity)
	note := func() *widget.Label {
		l := widget.NewLabel("")
		l.Importance = widget.LowImportance
		l.Wrapping = fyne.TextWrapWord
		l.Hide()
		return l
	}
	v.TokenNote, v.IdentityNote = note(), note()
	v.Token.OnChanged = func(string) { v.enableStores() }
	v.Identity.OnChanged = func(string) { v.enableStores() }
	v.Save = widget.NewButtonWithIcon("Save settings", theme.DocumentSaveIcon(), v.save)
	v.Save.Importance = widget.HighImportance
	v.SaveNote = widget.NewLabel("Nothing to save: no setting has changed.")
	v.SaveNote.Importance = widget.LowImportance
	v.Result = widget.NewLabel("")
	v.Result.Wrapping = fyne.TextWrapWord
	v.providers = s.Providers
	v.Providers = widget.NewLabel(ProvidersText(s.Providers))
	v.Providers.Wrapping = fyne.TextWrapWord

	field := func(name string, obj fyne.CanvasObject) fyne.CanvasObject {
		l := widget.NewLabel("")
		l.Importance = widget.DangerImportance
		l.Wrapping = fyne.TextWrapWord
		l.Hide()
		v.Errs[name] = l
		return container.NewVBox(obj, l)
	}
	v.form = widget.NewForm(
		widget.NewFormItem("Registry URL", field("registry_url", v.RegistryURL)),
		widget.NewFormItem("Registry CA", field("registry_ca", v.RegistryCA)),
		widget.NewFormItem("Registry token", container.NewVBox(container.NewBorder(nil, nil, nil, v.StoreToken, v.Token), v.TokenNote)),
		widget.NewFormItem("Helpdesk identity", container.NewVBox(container.NewBorder(nil, nil, nil, container.NewHBox(v.StoreIdentity, v.NewIdentity), v.Identity), v.IdentityNote)),
		widget.NewFormItem("Helpdesk recipients", field("helpdesk_recipients", v.Recipients)),
		widget.NewFormItem("Trust roots", field("trust_roots", v.TrustRoots)),
		widget.NewFormItem("RP id", field("rp_id", v.RPID)),
		widget.NewFormItem("RP name", field("rp_name", v.RPName)),
		widget.NewFormItem("Minimum PIN length", field("min_pin_length", v.MinPINLength)),
		widget.NewFormItem("credProtect", field("cred_protect", v.CredProtect)),
		widget.NewFormItem("", v.Discoverable),
		widget.NewFormItem("", v.ForcePIN),
		widget.NewFormItem("PIV certificate", field("piv_cert_mode", v.CertMode)),
		widget.NewFormItem("CSR directory", field("csr_dir", v.CSRDir)),
		widget.NewFormItem("Certificate days", field("cert_validity_days", v.CertDays)),
		widget.NewFormItem("", container.NewVBox(field("practice", v.Practice), v.PracticeNote)),
		widget.NewFormItem("Identity providers", field("providers", v.Providers)),
	)
	v.saved, _ = v.Read()
	for _, e := range []*uikit.Entry{v.RegistryURL, v.RegistryCA, v.RPID, v.RPName, v.MinPINLength, v.CSRDir, v.CertDays, v.Recipients, v.TrustRoots} {
		e.OnChanged = func(string) { v.changed() }
	}
	for _, c := range []*widget.Check{v.Discoverable, v.ForcePIN, v.Practice} {
		c.OnChanged = func(bool) { v.changed() }
	}
	for _, c := range []*widget.Select{v.CredProtect, v.CertMode} {
		c.OnChanged = func(string) { v.changed() }
	}
	v.changed()
	top := widget.NewLabelWithStyle("Settings", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	head := container.NewVBox(container.NewBorder(nil, nil, top, container.NewHBox(v.SaveNote, v.Save)), v.Result, widget.NewSeparator())
	v.Root = container.NewBorder(head, nil, nil, nil, container.NewVScroll(v.form))
	return v
}

// changed enables Save when the fields read otherwise than the settings
// last read or saved, and says why it is disabled when they do not.
func (v *View) changed() {
	v.enableStores()
	s, es := v.Read()
	if len(es) == 0 && reflect.DeepEqual(s, v.saved) {
		v.Save.Disable()
		v.SaveNote.Show()
		return
	}
	v.Save.Enable()
	v.SaveNote.Hide()
}

// enableStores enables "Check and store token" and "Store identity" only
// when they can help, and says why not beside them.
func (v *View) enableStores() {
	if v.StoreToken == nil || v.RegistryURL == nil {
		return
	}
	say := func(b *widget.Button, l *widget.Label, why string) {
		l.SetText(why)
		if why == "" {
			b.Enable()
			l.Hide()
			return
		}
		b.Disable()
		l.Show()
	}
	switch {
	case v.checking:
		say(v.StoreToken, v.TokenNote, "Checking the token with the registry…")
	case strings.TrimSpace(v.RegistryURL.Text) == "":
		say(v.StoreToken, v.TokenNote, "The embedded registry needs no token; a token is for the registry named in Registry URL.")
	case strings.TrimSpace(v.Token.Text) == "":
		say(v.StoreToken, v.TokenNote, "Paste the token your registry admin gave you to check and store it.")
	default:
		say(v.StoreToken, v.TokenNote, "")
	}
	if strings.TrimSpace(v.Identity.Text) == "" {
		say(v.StoreIdentity, v.IdentityNote, "Paste a helpdesk identity (AGE-SECRET-KEY-1…) to store it, or make a new one.")
	} else {
		say(v.StoreIdentity, v.IdentityNote, "")
	}
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// Read builds settings from the fields; a number that is not one is a
// FieldError of its own.
func (v *View) Read() (settings.Settings, settings.Errors) {
	s := settings.Default()
	var es settings.Errors
	num := func(field, text string) int {
		n, err := strconv.Atoi(strings.TrimSpace(text))
		if err != nil {
			es = append(es, &settings.FieldError{Field: field, Msg: fmt.Sprintf("%q is not a number", text)})
		}
		return n
	}
	s.RegistryURL = strings.TrimSpace(v.RegistryURL.Text)
	s.RegistryCA = strings.TrimSpace(v.RegistryCA.Text)
	s.RPID = strings.TrimSpace(v.RPID.Text)
	s.RPName = strings.TrimSpace(v.RPName.Text)
	s.MinPINLength = num("min_pin_length", v.MinPINLength.Text)
	s.CredProtect, _ = strconv.Atoi(v.CredProtect.Selected)
	s.Discoverable = v.Discoverable.Checked
	s.ForcePINChange = v.ForcePIN.Checked
	s.HelpdeskRecipients = lines(v.Recipients.Text)
	s.TrustRoots = lines(v.TrustRoots.Text)
	s.Practice = v.Practice.Checked
	s.PIVCertMode = v.CertMode.Selected
	s.CSRDir = strings.TrimSpace(v.CSRDir.Text)
	s.CertValidityDays = num("cert_validity_days", v.CertDays.Text)
	s.Providers = v.providers
	return s, es
}

// ProvidersText is the Settings screen's list of identity providers: one
// "name (kind)" a line, or how to add one.
func ProvidersText(ps []idp.Config) string {
	if len(ps) == 0 {
		return "none: keys are registered in the registry only (add providers to settings.json, docs/identity-providers.md)"
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.Name+" ("+p.Kind+"): every enrolled key is registered here too")
	}
	return strings.Join(out, "\n")
}

// showErrors puts each error under its field; it returns how many there
// were.
func (v *View) showErrors(es settings.Errors) int {
	for _, l := range v.Errs {
		l.SetText("")
		l.Hide()
	}
	for _, e := range es {
		l := v.Errs[e.Field]
		if l == nil {
			continue
		}
		if l.Text != "" {
			l.SetText(l.Text + "; " + e.Plain())
		} else {
			l.SetText(e.Plain())
		}
		l.Show()
	}
	// Each field's row grows or shrinks with its error line.
	for _, it := range v.form.Items {
		if c, ok := it.Widget.(*fyne.Container); ok {
			c.Refresh()
		}
	}
	v.form.Refresh()
	v.Root.Refresh()
	return len(es)
}

// save validates the fields and writes the settings file; the shell then
// reconnects to the registry they name.
func (v *View) save() {
	s, es := v.Read()
	if err := s.Validate(); err != nil {
		var ve settings.Errors
		if !errors.As(err, &ve) {
			v.Result.SetText(uikit.Message(err))
			return
		}
		// A field that did not read as a number is already named.
		named := map[string]bool{}
		for _, e := range es {
			named[e.Field] = true
		}
		for _, e := range ve {
			if !named[e.Field] {
				es = append(es, e)
			}
		}
	}
	if n := v.showErrors(es); n > 0 {
		v.Result.SetText(fmt.Sprintf("%s fixing; nothing was saved.", uikit.Count(n, "setting needs", "settings need")))
		return
	}
	if err := settings.Save(v.Path, s); err != nil {
		v.Result.SetText("Saving failed: " + uikit.Message(err))
		return
	}
	v.saved = s
	v.changed()
	v.Result.SetText("Saved to " + v.Path + ". Reconnecting to the registry…")
	if v.env.Reconnect != nil {
		v.env.Reconnect()
	}
	// The registry the settings name answers (or says why not) once the
	// shell has reconnected; the line ends in that outcome.
	where := "the embedded registry on this desk"
	if !s.Embedded() {
		where = "the registry at " + s.RegistryURL
	}
	v.saves++
	n := v.saves
	v.env.Go(func(ctx context.Context) error {
		_, err := v.env.Registry(ctx)
		return err
	}, func(err error) {
		if n != v.saves {
			return // a later Save reports its own outcome
		}
		switch {
		case errors.Is(err, client.ErrUnreachable):
			v.Result.SetText("Saved to " + v.Path + ", but " + where + " is not connected: it could not be reached. Check the network and the address, and that the registry is running.")
			return
		case err != nil:
			v.Result.SetText("Saved to " + v.Path + ", but " + where + " is not connected: " + strings.ReplaceAll(uikit.Message(err), "\n\n", " "))
			return
		}
		v.Result.SetText("Saved to " + v.Path + ". Connected to " + where + ".")
	})
}

// storeToken checks the token against the registry at the URL in the field
// and keeps it in the keyring.
func (v *View) storeToken() {
	url := strings.TrimSpace(v.RegistryURL.Text)
	if url == "" {
		v.showErrors(settings.Errors{{Field: "registry_url", Msg: "give the registry's URL first; the embedded registry needs no token"}})
		return
	}
	tok, ca := v.Token.Text, strings.TrimSpace(v.RegistryCA.Text)
	kr := v.Keyring
	v.checking = true
	v.enableStores()
	v.Result.SetText("Checking the token with " + url + "…")
	v.env.Go(func(ctx context.Context) error {
		return regconn.Login(ctx, kr, url, ca, tok)
	}, func(err error) {
		v.checking = false
		v.enableStores()
		if err != nil {
			v.Result.SetText("The token was not stored: " + uikit.Message(err))
			return
		}
		v.Token.SetText("")
		v.Result.SetText("Token stored in the system keyring for " + url + ". Save the settings to use this registry.")
	})
}

func (v *View) storeIdentity() {
	id := strings.TrimSpace(v.Identity.Text)
	if _, err := age.ParseX25519Identity(id); err != nil {
		v.Result.SetText("That is not an age identity (AGE-SECRET-KEY-1…); nothing was stored.")
		return
	}
	if err := v.Keyring.Put(secrets.HelpdeskIdentityAccount(), id); err != nil {
		v.Result.SetText("The identity was not stored: " + uikit.Message(err))
		return
	}
	v.Identity.SetText("")
	v.Result.SetText("Helpdesk identity stored in the system keyring.")
}

// newIdentity makes a helpdesk identity, keeps it in the keyring and adds
// its recipient to the recipients field (saved with the settings).
func (v *View) newIdentity() {
	id, rcpt, err := escrow.NewIdentity()
	if err != nil {
		v.Result.SetText(uikit.Message(err))
		return
	}
	if err := v.Keyring.Put(secrets.HelpdeskIdentityAccount(), id); err != nil {
		v.Result.SetText("The identity was not stored: " + uikit.Message(err))
		return
	}
	txt := strings.TrimSpace(v.Recipients.Text)
	if txt != "" {
		txt += "\n"
	}
	v.Recipients.SetText(txt + rcpt)
	v.Result.SetText("New helpdesk identity stored in the system keyring; its recipient " + rcpt + " was added. Save the settings.")
}
