package keysui

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
)

// SlotRow is one PIV slot in the PIV section: its key (algorithm, PIN and
// touch policy), its certificate (subject, issuer, expiry) and the
// actions on it, on the row they act on.
type SlotRow struct {
	Slot  byte
	Title *widget.Label
	Key   *widget.Label
	Cert  *widget.Label

	Generate, Request, SelfSign, Import, Export, Delete *widget.Button
	box                                                 *fyne.Container
}

// PasskeyRow is one discoverable FIDO2 credential: relying party, user,
// credProtect, and Delete on its row.
type PasskeyRow struct {
	Label  *widget.Label
	Delete *widget.Button
}

// sections are the detail's parts other than the actions' own buttons.
type sections struct {
	// Overview.
	OvModel, OvSerial, OvFirmware, OvOwner *widget.Label
	OvChips                                *fyne.Container
	OvGlyph                                *Glyph
	ovTop, ovBox                           *fyne.Container
	// PIV.
	PIVState, PIVWhy *widget.Label
	Slots            []*SlotRow
	// FIDO2.
	FIDOState, FIDOWhy *widget.Label
	Passkeys           []*PasskeyRow
	passkeyBox         *fyne.Container
	// Registry.
	RegOwner, RegStatus, RegGenuine, RegCoverage, RegCreds *widget.Label
}

func heading(s string) *widget.Label {
	return widget.NewLabelWithStyle(s, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
}

func wrapped(s string) *widget.Label {
	l := widget.NewLabel(s)
	l.Wrapping = fyne.TextWrapWord
	return l
}

func reasons() *widget.Label {
	l := wrapped("")
	l.Importance = widget.WarningImportance
	l.Hide()
	return l
}

// form lays out label/value pairs.
func form(pairs ...fyne.CanvasObject) *fyne.Container {
	return container.New(layout.NewFormLayout(), pairs...)
}

// buildSections makes the Overview, PIV, FIDO2 and Registry tabs.
func (d *Detail) buildSections() (overview, piv, fido, reg fyne.CanvasObject) {
	s := &d.sections
	s.OvModel, s.OvSerial, s.OvFirmware, s.OvOwner = widget.NewLabel(""), widget.NewLabel(""), widget.NewLabel(""), widget.NewLabel("")
	s.OvChips = container.New(&uikit.Flow{Rows: 1})
	s.OvGlyph = NewGlyph(formC)
	s.OvGlyph.Scale = 2.5
	s.OvGlyph.Hide()
	facts := form(heading("Model"), s.OvModel, heading("Serial"), s.OvSerial, heading("Firmware"), s.OvFirmware, heading("Owner"), s.OvOwner)
	s.ovTop = container.NewBorder(nil, nil, container.NewPadded(s.OvGlyph), nil, facts)
	s.ovBox = container.NewVBox(s.ovTop, s.OvChips, d.Info)
	overview = container.NewScroll(s.ovBox)

	s.PIVState, s.PIVWhy = wrapped(""), reasons()
	slots := container.NewVBox()
	for i, cs := range certSlots {
		r := &SlotRow{Slot: cs.slot, Title: heading(fmt.Sprintf("Slot %02x · %s", cs.slot, cs.name)), Key: wrapped(""), Cert: wrapped("")}
		on := func(f func()) func() {
			return func() { d.PIVSlot.SetSelectedIndex(i); f() }
		}
		b := func(label string, danger bool, f func()) *widget.Button {
			btn := widget.NewButton(label, on(f))
			if danger {
				btn.Importance = widget.DangerImportance
			}
			d.buttons = append(d.buttons, btn)
			return btn
		}
		r.Generate = b("Generate…", false, d.pivGenerate)
		r.Request = b("CSR…", false, d.pivRequest)
		r.SelfSign = b("Self-sign…", false, d.pivSelfSign)
		r.Import = b("Import…", false, d.pivImport)
		r.Export = b("Export…", false, d.pivExport)
		r.Delete = b("Delete…", false, d.pivDeleteCert)
		r.box = container.NewVBox(r.Title, r.Key, r.Cert,
			container.NewGridWithColumns(3, r.Request, r.SelfSign, r.Import),
			container.NewGridWithColumns(3, r.Export, r.Generate, r.Delete), widget.NewSeparator())
		s.Slots = append(s.Slots, r)
		slots.Add(r.box)
	}
	piv = container.NewScroll(container.NewVBox(
		heading("PIN and PUK"), s.PIVState,
		container.NewGridWithColumns(3, d.PIVChangePIN, d.PIVChangePUK, d.PIVUnblock),
		s.PIVWhy,
		heading("Slots"), slots,
		heading("Management"),
		container.NewGridWithColumns(2, d.PIVRotate, d.PIVAttest),
		container.NewGridWithColumns(2, d.PIVRetries, d.PIVReset),
	))

	s.FIDOState, s.FIDOWhy = wrapped(""), reasons()
	s.passkeyBox = container.NewVBox()
	fido = container.NewScroll(container.NewVBox(
		heading("PIN"), s.FIDOState,
		container.NewGridWithColumns(2, d.FIDOSetPIN, d.FIDOChangePIN),
		container.NewGridWithColumns(2, d.FIDOMinLength, d.FIDOForceChange),
		s.FIDOWhy,
		heading("Passkeys (discoverable credentials)"),
		d.FIDOCredentials, s.passkeyBox,
		heading("Reset"), d.FIDOReset,
	))

	s.RegOwner, s.RegStatus, s.RegGenuine, s.RegCoverage, s.RegCreds = wrapped(""), wrapped(""), wrapped(""), wrapped(""), wrapped("")
	reg = container.NewScroll(form(heading("Owner"), s.RegOwner, heading("Status"), s.RegStatus,
		heading("Attestation"), s.RegGenuine, heading("Coverage"), s.RegCoverage, heading("Credentials"), s.RegCreds))
	return overview, piv, fido, reg
}

// showGlyph shows or hides the Overview's drawing of the key and lays
// the Overview out again around it.
func (s *sections) showGlyph(on bool) {
	if on == s.OvGlyph.Visible() {
		return
	}
	if on {
		s.OvGlyph.Show()
	} else {
		s.OvGlyph.Hide()
	}
	s.ovTop.Refresh()
	s.ovBox.Refresh()
}

// fill shows key k's state in the sections.
func (d *Detail) fill(k device.Key, h *Health) {
	s := &d.sections
	model := k.Model
	if model == "" {
		model = "Security key"
	}
	s.OvModel.SetText(model)
	s.OvGlyph.SetForm(k.FormFactor)
	s.showGlyph(true)
	if k.SerialUnknown {
		s.OvSerial.SetText("unknown")
	} else {
		s.OvSerial.SetText(fmt.Sprint(k.Serial))
	}
	s.OvFirmware.SetText(k.Firmware.String())
	s.OvOwner.SetText(OwnerLine(h))
	s.OvChips.RemoveAll()
	for _, c := range Chips(k, h, d.env.Practice()) {
		s.OvChips.Add(uikit.NewChip(c.Text, c.Kind))
	}
	var r *Health
	if h != nil {
		r = h
	}
	var pivSt *device.PIVStatus
	var fidoSt *device.FIDOStatus
	pivErr, fidoErr := "", ""
	if r != nil && r.Report != nil {
		pivSt, fidoSt, pivErr, fidoErr = r.Report.PIV, r.Report.FIDO, r.Report.PIVError, r.Report.FIDOError
	}
	switch {
	case pivSt != nil:
		s.PIVState.SetText(pivText(pivSt))
	case pivErr != "":
		s.PIVState.SetText("keydesk could not read PIV on this key. Insert it again; if that does not help, check that PIV is on under Interfaces.")
	default:
		s.PIVState.SetText("Reading…")
	}
	for _, row := range s.Slots {
		row.Key.SetText("No key")
		row.Cert.SetText("No certificate")
		if pivSt == nil {
			row.Key.SetText("")
			row.Cert.SetText("")
			continue
		}
		for _, ss := range pivSt.Slots {
			if ss.Slot != row.Slot {
				continue
			}
			if !ss.Empty {
				t := "Key: " + ss.Algorithm
				if ss.PINPolicy != "" {
					t += fmt.Sprintf(", PIN %s, touch %s", ss.PINPolicy, ss.TouchPolicy)
				}
				if o := fmt.Sprint(ss.Origin); o != "" && o != "0" {
					t += ", " + o
				}
				row.Key.SetText(t)
			}
			switch {
			case ss.Certificate != nil:
				row.Cert.SetText(certText(ss.Certificate))
			case ss.CertificateError != "":
				row.Cert.SetText("Certificate stored but unreadable")
			}
		}
	}
	switch {
	case fidoSt == nil && fidoErr != "":
		s.FIDOState.SetText("keydesk could not read FIDO2 on this key. Insert it again; if that does not help, check that FIDO2 is on under Interfaces.")
	case fidoSt == nil:
		s.FIDOState.SetText("No FIDO2 interface reached.")
	case !fidoSt.PINSet:
		s.FIDOState.SetText(fmt.Sprintf("No PIN set. Room for %s more.", uikit.Count(fidoSt.RemainingResident, "passkey", "passkeys")))
	case fidoSt.PINRetries == 0:
		s.FIDOState.SetText("PIN BLOCKED: only a FIDO2 reset makes the key usable again, and it deletes every passkey.")
	default:
		s.FIDOState.SetText(fmt.Sprintf("PIN set, %s left; minimum PIN length %d. Room for %s more.", uikit.Count(fidoSt.PINRetries, "try", "tries"), fidoSt.MinPINLength, uikit.Count(fidoSt.RemainingResident, "passkey", "passkeys")))
	}
	switch {
	case h == nil:
		for _, l := range []*widget.Label{s.RegOwner, s.RegStatus, s.RegGenuine, s.RegCoverage, s.RegCreds} {
			l.SetText("Checking…")
		}
	case h.Reg != nil:
		s.RegOwner.SetText(fmt.Sprintf("%s, %s key", h.Owner, h.Reg.Role))
		s.RegStatus.SetText(string(h.Reg.Status))
		s.RegGenuine.SetText(genuine(h.Reg))
		switch {
		case h.Coverage == nil:
			s.RegCoverage.SetText("unknown")
		case h.Coverage.Covered:
			s.RegCoverage.SetText("covered: a primary and a backup key are active")
		default:
			s.RegCoverage.SetText("NOT covered: missing " + strings.Join(h.Coverage.Missing, ", "))
		}
		var creds []string
		for _, p := range h.Reg.PIV {
			creds = append(creds, "PIV slot "+p.Slot)
		}
		for _, f := range h.Reg.FIDO2 {
			creds = append(creds, "FIDO2 for "+f.RPID)
		}
		if len(creds) == 0 {
			creds = []string{"none"}
		}
		s.RegCreds.SetText(strings.Join(creds, "\n"))
	default:
		s.RegOwner.SetText(OwnerLine(h))
		for _, l := range []*widget.Label{s.RegStatus, s.RegGenuine, s.RegCoverage, s.RegCreds} {
			l.SetText("—")
		}
	}
}

func pivText(p *device.PIVStatus) string {
	var b strings.Builder
	switch {
	case p.PINRetries == 0:
		b.WriteString("PIN BLOCKED")
	case p.PINRetries < 0:
		b.WriteString("PIN tries unknown")
	default:
		fmt.Fprintf(&b, "PIN %s left", uikit.Count(p.PINRetries, "try", "tries"))
	}
	if p.PINDefault {
		b.WriteString(" (factory default)")
	}
	switch {
	case p.PUKRetries == 0:
		b.WriteString(", PUK BLOCKED")
	case p.PUKRetries > 0:
		fmt.Fprintf(&b, ", PUK %s left", uikit.Count(p.PUKRetries, "try", "tries"))
	}
	if p.PUKDefault {
		b.WriteString(" (factory default)")
	}
	fmt.Fprintf(&b, "\nManagement key %s", p.MgmtKeyAlgorithm)
	if p.MgmtKeyDefault {
		b.WriteString(" (factory default)")
	}
	if p.MgmtKeyProtected {
		b.WriteString(" (protected by the PIN)")
	}
	return b.String()
}

func certText(c *x509.Certificate) string {
	until := c.NotAfter.Format("2006-01-02")
	if time.Now().After(c.NotAfter) {
		until += " (EXPIRED)"
	}
	return fmt.Sprintf("Certificate: %s\nIssued by %s, valid until %s", c.Subject, c.Issuer, until)
}

// reason disables b when why is not empty and collects why.
func reason(b *widget.Button, why string, out *[]string) {
	if why == "" {
		return
	}
	b.Disable()
	*out = append(*out, b.Text+": "+why)
}

// applyReasons disables the buttons that cannot help with the key as it is
// and says why beside them.
func (d *Detail) applyReasons(h *Health) {
	s := &d.sections
	var piv, fido []string
	if h != nil && h.Report != nil {
		if p := h.Report.PIV; p != nil {
			if p.PINRetries == 0 {
				reason(d.PIVChangePIN, "the PIN is blocked; unblock it first.", &piv)
			}
			escrowed := h.Reg != nil && !p.PUKDefault
			switch {
			case p.PUKRetries == 0:
				reason(d.PIVUnblock, "the PUK is blocked too; only a reset of PIV helps now.", &piv)
				reason(d.PIVChangePUK, "the PUK is blocked.", &piv)
			case escrowed:
				reason(d.PIVUnblock, "keydesk set this registered key's PUK at enrolment and sealed it for the helpdesk; unblock the PIN on the Helpdesk screen.", &piv)
				reason(d.PIVChangePUK, "the PUK is sealed for the helpdesk; a new one would not be.", &piv)
			case p.PINRetries != 0:
				reason(d.PIVUnblock, "the PIN is not blocked.", &piv)
			}
			if p.PINRetries != 0 || p.PUKRetries != 0 {
				reason(d.PIVReset, "a reset is for a key whose PIN and PUK are both blocked; this key's PIN or PUK still works.", &piv)
			}
			for _, row := range s.Slots {
				var ss *device.SlotStatus
				for i := range p.Slots {
					if p.Slots[i].Slot == row.Slot {
						ss = &p.Slots[i]
					}
				}
				if ss == nil || ss.Empty {
					row.Request.Disable()
					row.SelfSign.Disable()
				}
				if ss == nil || ss.Certificate == nil {
					row.Export.Disable()
					row.Delete.Disable()
				}
			}
		}
		if f := h.Report.FIDO; f != nil {
			if f.PINSet {
				reason(d.FIDOSetPIN, "a PIN is set; use Change PIN.", &fido)
				if f.PINRetries == 0 {
					reason(d.FIDOChangePIN, "the PIN is blocked; only a reset helps.", &fido)
				}
			} else {
				reason(d.FIDOChangePIN, "no PIN is set yet; use Set PIN.", &fido)
				reason(d.FIDOMinLength, "set a PIN first.", &fido)
				reason(d.FIDOForceChange, "set a PIN first.", &fido)
			}
		}
	}
	show := func(l *widget.Label, lines []string) {
		l.SetText(strings.Join(lines, "\n"))
		if len(lines) > 0 {
			l.Show()
		} else {
			l.Hide()
		}
	}
	show(s.PIVWhy, piv)
	show(s.FIDOWhy, fido)
}

// showPasskeys makes one row per credential, Delete on the row.
func (d *Detail) showPasskeys(creds []fidokey.Credential) {
	s := &d.sections
	s.Passkeys = nil
	s.passkeyBox.RemoveAll()
	for i, c := range creds {
		row := &PasskeyRow{Label: widget.NewLabel(fmt.Sprintf("%s · %s · credProtect %d", c.RPID, c.UserName, c.CredProtect))}
		row.Label.Truncation = fyne.TextTruncateEllipsis
		row.Delete = widget.NewButton("Delete…", func() { d.credSel = i; d.fidoDelete() })
		s.Passkeys = append(s.Passkeys, row)
		s.passkeyBox.Add(container.NewBorder(nil, nil, nil, row.Delete, row.Label))
	}
	if len(creds) == 0 {
		s.passkeyBox.Add(widget.NewLabel("No passkeys on this key."))
	}
}

// slotStatus is what the model last read of slot on the shown key.
func (d *Detail) slotStatus(slot byte) *device.SlotStatus {
	h := d.view.health[d.key.Serial]
	if h == nil || h.Report == nil || h.Report.PIV == nil {
		return nil
	}
	for i := range h.Report.PIV.Slots {
		if h.Report.PIV.Slots[i].Slot == slot {
			return &h.Report.PIV.Slots[i]
		}
	}
	return nil
}

// pivExport saves the chosen slot's certificate as PEM.
func (d *Detail) pivExport() {
	if !d.has {
		return
	}
	slot := d.slot()
	ss := d.slotStatus(slot)
	if ss == nil || ss.Certificate == nil {
		d.say(d.key.Serial, fmt.Sprintf("Slot %02x of key %d holds no certificate to export.", slot, d.key.Serial))
		return
	}
	cert := ss.Certificate
	serial := d.key.Serial
	d.askParams(fmt.Sprintf("Export the certificate of slot %02x", slot), "Export",
		[]field{{Label: "Save as (PEM)", Value: defaultFile(fmt.Sprintf("key-%d-slot-%02x.pem", serial, slot)), File: saveFile}},
		func(v []string) error { return writablePath(v[0]) },
		func(v []string) {
			data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
			if err := os.WriteFile(v[0], data, 0o644); err != nil {
				d.say(serial, "The certificate was not saved: "+uikit.Message(err))
				return
			}
			d.say(serial, fmt.Sprintf("The certificate of slot %02x of key %d is saved in %s.", slot, serial, v[0]))
		})
}

// pivDeleteCert deletes the chosen slot's certificate, confirmed by the
// key's serial; the slot's key stays.
func (d *Detail) pivDeleteCert() {
	if !d.has {
		return
	}
	slot := d.slot()
	uikit.ConfirmSerial(d.env.Window, d.key.Serial, fmt.Sprintf("Delete the certificate of slot %02x on key %d", slot, d.key.Serial),
		fmt.Sprintf("The certificate in slot %02x (%s) of key %d is deleted; the slot's key stays. Programs that find the key by its certificate stop finding it.", slot, slotName(slot), d.key.Serial), func() {
			d.run(fmt.Sprintf("Deleting the certificate of slot %02x", slot), func(ctx context.Context, k device.Key) (string, error) {
				card, err := d.env.Keys.PIV(k)
				if err != nil {
					return "", err
				}
				if err := card.DeleteCertificate(ctx, d.callbacks(k), slot); err != nil {
					return "", err
				}
				return fmt.Sprintf("The certificate of slot %02x of key %d is deleted.", slot, k.Serial), nil
			})
		})
}
