package keysui

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/fidokey"
	"github.com/keydesk/keydesk/device/pivkey"
	"github.com/keydesk/keydesk/device/virtual/pivapplet"
)

// Detail is one key's pane: identity, state, and the PIV and FIDO2
// actions. While an action runs the buttons are disabled and Cancel ends
// it; the moment the key wants a touch, Touch says so.
type Detail struct {
	env  *uikit.Env
	view *View
	key  device.Key
	has  bool

	Heading *widget.Label
	Badge   *widget.Label
	Info    *widget.Label
	Touch   *widget.Label
	Result  *widget.Label
	// about is the serial of the key Result speaks of (0: none): a
	// message about one key never stays on screen under another.
	about uint32
	// aboutVer is the key-state version Result is true of (0: not tied
	// to one): a change of the key's state makes the message stale.
	aboutVer uint64
	Busy     *widget.ProgressBarInfinite
	Cancel   *widget.Button
	Tabs     *container.AppTabs

	// PIV actions.
	PIVChangePIN, PIVChangePUK, PIVUnblock, PIVRetries, PIVRotate, PIVGenerate, PIVAttest, PIVReset *widget.Button
	// PIV certificates, for the slot chosen in PIVSlot.
	PIVSlot                            *widget.Select
	PIVRequest, PIVSelfSign, PIVImport *widget.Button
	// FIDO2 actions.
	FIDOSetPIN, FIDOChangePIN, FIDOCredentials, FIDODelete, FIDOReset *widget.Button
	FIDOMinLength, FIDOForceChange                                    *widget.Button
	// Ifaces is the Interfaces tab.
	Ifaces *Interfaces
	// Credentials lists the FIDO2 credentials read last; Delete acts on
	// the selected one.
	Credentials *widget.List
	creds       []fidokey.Credential
	credSel     int

	// Form is the PIN dialog open now (tests type into it).
	Form *uikit.SecretForm
	// Params is the last dialog asking for plain values (tries, subject,
	// file).
	Params *ParamForm

	Root    fyne.CanvasObject
	head    *fyne.Container
	buttons []*widget.Button
	cancel  context.CancelFunc
}

func newDetail(env *uikit.Env, v *View) *Detail {
	d := &Detail{env: env, view: v, credSel: -1}
	d.Heading = widget.NewLabelWithStyle("Choose a key", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	d.Badge = widget.NewLabelWithStyle("VIRTUAL", fyne.TextAlignTrailing, fyne.TextStyle{Bold: true})
	d.Badge.Importance = widget.WarningImportance
	d.Badge.Hide()
	d.Info = widget.NewLabel("Select a key on the left to see its state and what you can do with it.")
	d.Info.Wrapping = fyne.TextWrapWord
	d.Touch = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	d.Touch.Importance = widget.HighImportance
	d.Touch.Hide()
	d.Result = widget.NewLabel("")
	d.Result.Wrapping = fyne.TextWrapWord
	d.Busy = widget.NewProgressBarInfinite()
	d.Busy.Stop()
	d.Busy.Hide()
	d.Cancel = widget.NewButton("Cancel", func() {
		if d.cancel != nil {
			d.cancel()
		}
	})
	d.Cancel.Hide()

	b := func(label string, danger bool, f func()) *widget.Button {
		btn := widget.NewButton(label, f)
		if danger {
			btn.Importance = widget.DangerImportance
		}
		d.buttons = append(d.buttons, btn)
		return btn
	}
	d.PIVChangePIN = b("Change PIN", false, d.pivChange(false))
	d.PIVChangePUK = b("Change PUK", false, d.pivChange(true))
	d.PIVUnblock = b("Unblock PIN with PUK", false, d.pivUnblock)
	d.PIVRetries = b("Set retries…", true, d.pivRetries)
	d.PIVRotate = b("Rotate management key", false, d.pivRotate)
	d.PIVGenerate = b("Generate key in 9a…", true, d.pivGenerate)
	d.PIVAttest = b("Attest slot 9a", false, d.pivAttest)
	d.PIVReset = b("Reset PIV…", true, d.pivReset)
	d.PIVRequest = b("Certificate request…", false, d.pivRequest)
	d.PIVSelfSign = b("Self-signed certificate…", true, d.pivSelfSign)
	d.PIVImport = b("Import certificate…", true, d.pivImport)
	d.PIVSlot = widget.NewSelect(slotNames(), nil)
	d.PIVSlot.SetSelectedIndex(0)
	d.FIDOSetPIN = b("Set PIN", false, d.fidoSetPIN)
	d.FIDOChangePIN = b("Change PIN", false, d.fidoChangePIN)
	d.FIDOCredentials = b("List credentials", false, d.fidoCredentials)
	d.FIDODelete = b("Delete credential…", true, d.fidoDelete)
	d.FIDOReset = b("Reset FIDO2…", true, d.fidoReset)
	d.FIDOMinLength = b("Raise minimum PIN length", false, d.fidoMinLength)
	d.FIDOForceChange = b("Force PIN change", false, d.fidoForceChange)

	d.Credentials = widget.NewList(func() int { return len(d.creds) },
		func() fyne.CanvasObject { return widget.NewLabel("rp · user · credProtect") },
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(d.creds) {
				return
			}
			c := d.creds[i]
			o.(*widget.Label).SetText(fmt.Sprintf("%s · %s · credProtect %d", c.RPID, c.UserName, c.CredProtect))
		})
	d.Credentials.OnSelected = func(i widget.ListItemID) { d.credSel = i }

	piv := container.NewVBox(
		widget.NewLabel("PIN and PUK"),
		container.NewGridWithColumns(3, d.PIVChangePIN, d.PIVChangePUK, d.PIVUnblock),
		widget.NewLabel("Keys and management"),
		container.NewGridWithColumns(3, d.PIVRotate, d.PIVAttest, d.PIVGenerate),
		widget.NewLabel("Certificates"),
		container.NewGridWithColumns(4, d.PIVSlot, d.PIVRequest, d.PIVSelfSign, d.PIVImport),
		widget.NewLabel("Destructive"),
		container.NewGridWithColumns(3, d.PIVRetries, d.PIVReset),
	)
	fido := container.NewBorder(container.NewVBox(
		container.NewGridWithColumns(3, d.FIDOSetPIN, d.FIDOChangePIN, d.FIDOCredentials),
		container.NewGridWithColumns(3, d.FIDOMinLength, d.FIDOForceChange, d.FIDODelete),
		container.NewGridWithColumns(3, d.FIDOReset),
	), nil, nil, nil, d.Credentials)
	d.Ifaces = d.newInterfaces()
	d.Tabs = container.NewAppTabs(container.NewTabItem("PIV", piv), container.NewTabItem("FIDO2", fido), container.NewTabItem("Interfaces", d.Ifaces.root))
	d.head = container.NewBorder(nil, nil, nil, d.Badge, d.Heading)
	top := container.NewVBox(d.head, d.Info, d.Touch, container.NewBorder(nil, nil, nil, d.Cancel, d.Busy), d.Result)
	d.Root = container.NewBorder(top, nil, nil, nil, d.Tabs)
	d.enable(false)
	return d
}

func (d *Detail) enable(on bool) {
	for _, b := range d.buttons {
		if on {
			b.Enable()
		} else {
			b.Disable()
		}
	}
	if on {
		d.PIVSlot.Enable()
	} else {
		d.PIVSlot.Disable()
	}
	d.Ifaces.enable(on && d.has, d.key)
}

// Clear empties the pane.
func (d *Detail) Clear(msg string) {
	// Result stays: it may be about the key that just left (an action it
	// cut short), and goes when another key is shown.
	d.has = false
	d.Heading.SetText("Choose a key")
	d.Info.SetText(msg)
	d.Badge.Hide()
	d.head.Refresh()
	d.creds = nil
	d.Credentials.Refresh()
	d.Ifaces.loaded.ok = false
	d.enable(false)
}

// Show shows key k with what is known of it.
func (d *Detail) Show(k device.Key, h *Health) {
	if d.about != 0 && d.about != k.Serial {
		d.say(d.key.Serial, "")
		d.about = 0
	}
	if d.about == k.Serial && d.cancel == nil && d.aboutVer != 0 && h != nil && h.Version > d.aboutVer {
		// The key changed since (here, in another program, through the
		// registry): the message may no longer be true.
		d.Result.SetText("")
		d.about, d.aboutVer = 0, 0
	}
	d.key, d.has = k, true
	d.Heading.SetText(Title(k))
	if k.Virtual || d.env.Practice() {
		d.Badge.Show()
	} else {
		d.Badge.Hide()
	}
	d.head.Refresh()
	d.Info.SetText(describe(k, h))
	d.Ifaces.load(k)
	if d.cancel == nil {
		d.enable(true)
	}
}

// say sets the message about the key with serial, unless another key is
// shown now (the message would be about a key not on screen).
func (d *Detail) say(serial uint32, text string) {
	if d.has && d.key.Serial != serial {
		return
	}
	d.about, d.aboutVer = serial, 0
	if h := d.view.health[serial]; h != nil {
		d.aboutVer = h.Version
	}
	d.Result.SetText(text)
}

// sayAt is say for a message true of the key's state version ver: it goes
// when the key's state moves on.
func (d *Detail) sayAt(serial uint32, ver uint64, text string) {
	if d.has && d.key.Serial != serial {
		return
	}
	d.say(serial, text)
	if h := d.view.health[serial]; ver != 0 && h != nil && h.Version > ver {
		d.Result.SetText("") // already stale
		d.about = 0
		return
	}
	d.aboutVer = ver
}

func describe(k device.Key, h *Health) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Applications enabled over USB: %s\n", k.EnabledUSB)
	fmt.Fprintf(&b, "%s\n", HealthLine(k, h))
	if h != nil && h.Report != nil {
		if p := h.Report.PIV; p != nil {
			fmt.Fprintf(&b, "PIV: PIN %d tries left, PUK %d tries left, management key %s", p.PINRetries, p.PUKRetries, p.MgmtKeyAlgorithm)
			if p.MgmtKeyDefault {
				b.WriteString(" (factory default)")
			}
			if p.MgmtKeyProtected {
				b.WriteString(" (protected by the PIN)")
			}
			var used []string
			for _, s := range p.Slots {
				u := fmt.Sprintf("%02x %s", s.Slot, s.Algorithm)
				if s.Empty {
					u = fmt.Sprintf("%02x no key", s.Slot)
				}
				if c := s.Certificate; c != nil {
					u += fmt.Sprintf(" (certificate %s, until %s)", c.Subject, c.NotAfter.Format("2006-01-02"))
				}
				used = append(used, u)
			}
			if len(used) > 0 {
				fmt.Fprintf(&b, "; slots %s", strings.Join(used, ", "))
			}
			b.WriteString("\n")
		} else if h.Report.PIVError != "" {
			fmt.Fprintf(&b, "PIV: %s\n", h.Report.PIVError)
		}
		if f := h.Report.FIDO; f != nil {
			if f.PINSet {
				fmt.Fprintf(&b, "FIDO2: PIN set, %d tries left", f.PINRetries)
			} else {
				b.WriteString("FIDO2: no PIN set")
			}
			fmt.Fprintf(&b, ", minimum PIN length %d, room for %d more passkeys\n", f.MinPINLength, f.RemainingResident)
		}
	}
	return strings.TrimSpace(b.String())
}

// callbacks ask for PINs in a dialog and show the touch prompt.
func (d *Detail) callbacks(k device.Key) device.Callbacks {
	return device.Callbacks{
		PIN: func(ctx context.Context, what string) (string, error) {
			v, err := uikit.AwaitSecrets(ctx, d.env.Window, what, []string{what}, func(f *uikit.SecretForm) { d.Form = f })
			if err != nil {
				return "", err
			}
			return v[0], nil
		},
		Touch: func(context.Context) {
			fyne.Do(func() {
				d.Touch.SetText(fmt.Sprintf("Touch key %d now: its light is blinking.", k.Serial))
				d.Touch.Show()
			})
		},
	}
}

// run runs an action on the selected key in the background; done reports
// success on the UI goroutine.
func (d *Detail) run(what string, work func(ctx context.Context, k device.Key) (string, error)) {
	if !d.has || d.cancel != nil {
		return
	}
	k := d.key
	d.enable(false)
	d.say(k.Serial, what+"…")
	d.Busy.Show()
	d.Busy.Start()
	d.Cancel.Show()
	var ver uint64
	d.cancel = d.env.Go(func(ctx context.Context) error {
		release := d.env.HoldKeys()
		msg, err := work(ctx, k)
		release()
		// What the action left on the key, read before the message is
		// shown: the message is true of that state and of no later one.
		ver = d.view.refresh(context.WithoutCancel(ctx), k.Serial)
		if err == nil {
			fyne.Do(func() { d.sayAt(k.Serial, ver, msg) })
		}
		return err
	}, func(err error) {
		d.cancel = nil
		d.Busy.Stop()
		d.Busy.Hide()
		d.Cancel.Hide()
		d.Touch.Hide()
		d.enable(d.has)
		if err != nil {
			if errors.Is(err, uikit.ErrNotGiven) || errors.Is(err, context.Canceled) {
				d.sayAt(k.Serial, ver, what+": canceled; nothing was changed.")
			} else {
				d.sayAt(k.Serial, ver, what+" failed: "+uikit.Message(err))
				uikit.ShowError(what, err, d.env.Window)
			}
		}
	})
}

// ask shows a secrets dialog and runs then with the answers.
func (d *Detail) ask(title string, labels []string, then func(vals []string)) {
	if !d.has {
		return
	}
	d.Form = uikit.AskSecrets(d.env.Window, title, labels, func(vals []string, ok bool) {
		if ok {
			then(vals)
		}
	})
}

func (d *Detail) pivChange(puk bool) func() {
	what := pivkey.PromptPIN
	if puk {
		what = pivkey.PromptPUK
	}
	return func() {
		d.ask("Change "+what, []string{"Current " + what, "New " + what, "New " + what + " again"}, func(v []string) {
			if v[1] != v[2] {
				d.say(d.key.Serial, "The new values differ; nothing was changed.")
				return
			}
			d.run("Changing the "+what, func(ctx context.Context, k device.Key) (string, error) {
				card, err := d.env.Keys.PIV(k)
				if err != nil {
					return "", err
				}
				if puk {
					err = card.ChangePUK(ctx, v[0], v[1])
				} else {
					err = card.ChangePIN(ctx, v[0], v[1])
				}
				return fmt.Sprintf("%s changed on key %d.", what, k.Serial), err
			})
		})
	}
}

func (d *Detail) pivUnblock() {
	d.ask("Unblock the PIV PIN", []string{pivkey.PromptPUK, "New PIV PIN", "New PIV PIN again"}, func(v []string) {
		if v[1] != v[2] {
			d.say(d.key.Serial, "The new PINs differ; nothing was changed.")
			return
		}
		d.run("Unblocking the PIV PIN", func(ctx context.Context, k device.Key) (string, error) {
			card, err := d.env.Keys.PIV(k)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("PIN unblocked and set on key %d.", k.Serial), card.UnblockPIN(ctx, v[0], v[1])
		})
	})
}

// pivRetries sets how many PIN and PUK tries the key allows (Yubico SET
// PIN RETRIES, as "ykman piv access set-retries"). The YubiKey then puts
// the PIN and PUK back to their defaults, which the confirmation says.
func (d *Detail) pivRetries() {
	if !d.has {
		return
	}
	var pinTries, pukTries int
	check := func(v []string) (err error) {
		if pinTries, err = tries("PIN tries", v[0]); err != nil {
			return err
		}
		pukTries, err = tries("PUK tries", v[1])
		return err
	}
	d.askParams("Set PIV retries", "Next", []field{
		{Label: "PIN tries (1–255)", Value: "3"},
		{Label: "PUK tries (1–255)", Value: "3"},
	}, check, func([]string) {
		p, u := pinTries, pukTries
		consequence := fmt.Sprintf("The key will allow %d wrong PIN and %d wrong PUK tries. Setting retries also puts the PIN back to 123456 and the PUK back to 12345678 (the YubiKey does this): change both straight afterwards. You are asked for the current PIN.", p, u)
		uikit.ConfirmSerial(d.env.Window, d.key.Serial, "Set PIV retries", consequence, func() {
			d.run("Setting PIV retries", func(ctx context.Context, k device.Key) (string, error) {
				card, err := d.env.Keys.PIV(k)
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("Key %d allows %d PIN and %d PUK tries; PIN and PUK are back to their defaults (123456, 12345678): change them now.", k.Serial, p, u), card.SetRetries(ctx, d.callbacks(k), p, u)
			})
		})
	})
}

func (d *Detail) pivRotate() {
	d.run("Rotating the management key", func(ctx context.Context, k device.Key) (string, error) {
		card, err := d.env.Keys.PIV(k)
		if err != nil {
			return "", err
		}
		alg, err := card.RotateManagementKey(ctx, d.callbacks(k), pivkey.RotateOptions{Protect: true})
		return fmt.Sprintf("New random %s management key set on key %d, stored on the key behind the PIN.", alg, k.Serial), err
	})
}

func (d *Detail) pivGenerate() {
	if !d.has {
		return
	}
	uikit.ConfirmSerial(d.env.Window, d.key.Serial, "Generate a key in slot 9a", "What slot 9a holds now is replaced; sign-ins that use it stop working.", func() {
		d.run("Generating a key in slot 9a", func(ctx context.Context, k device.Key) (string, error) {
			card, err := d.env.Keys.PIV(k)
			if err != nil {
				return "", err
			}
			_, err = card.Generate(ctx, d.callbacks(k), 0x9a, pivkey.KeySpec{Algorithm: "ECCP256", PINPolicy: "once", TouchPolicy: "never"})
			return fmt.Sprintf("New ECCP256 key generated in slot 9a of key %d.", k.Serial), err
		})
	})
}

func (d *Detail) pivAttest() {
	d.run("Attesting slot 9a", func(ctx context.Context, k device.Key) (string, error) {
		card, err := d.env.Keys.PIV(k)
		if err != nil {
			return "", err
		}
		att, err := card.Attest(ctx, 0x9a)
		if err != nil {
			return "", err
		}
		pol := pivkey.AttestationPolicy{Serial: k.Serial}
		if d.env.Practice() {
			pol.ExtraRoots = []*x509.Certificate{pivapplet.VirtualRoot()}
		}
		v, err := pivkey.VerifyAttestation(att, pol)
		if err != nil {
			return "", err
		}
		kind := "a Yubico root"
		if !v.Yubico {
			kind = "keydesk's VIRTUAL root (practice mode only)"
		}
		return fmt.Sprintf("Slot 9a of key %d: generated on the key, attested by %s (%s).", v.Serial, kind, v.Root), nil
	})
}

func (d *Detail) pivReset() {
	if !d.has {
		return
	}
	uikit.ConfirmSerial(d.env.Window, d.key.Serial, "Reset PIV", "Every PIV key and certificate on it is deleted; PIN, PUK and management key go back to their defaults. The key refuses unless PIN and PUK are both blocked.", func() {
		d.run("Resetting PIV", func(ctx context.Context, k device.Key) (string, error) {
			card, err := d.env.Keys.PIV(k)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("PIV on key %d is reset: PIN 123456, PUK 12345678, default management key. Change them now.", k.Serial), card.Reset(ctx, k.Serial)
		})
	})
}

func (d *Detail) fidoSetPIN() {
	d.ask("Set the FIDO2 PIN", []string{"New FIDO2 PIN", "New FIDO2 PIN again"}, func(v []string) {
		if v[0] != v[1] {
			d.say(d.key.Serial, "The PINs differ; nothing was changed.")
			return
		}
		d.run("Setting the FIDO2 PIN", func(ctx context.Context, k device.Key) (string, error) {
			dev, err := d.env.Keys.FIDO(k)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("FIDO2 PIN set on key %d.", k.Serial), dev.SetPIN(ctx, v[0])
		})
	})
}

func (d *Detail) fidoChangePIN() {
	d.ask("Change the FIDO2 PIN", []string{"Current FIDO2 PIN", "New FIDO2 PIN", "New FIDO2 PIN again"}, func(v []string) {
		if v[1] != v[2] {
			d.say(d.key.Serial, "The new PINs differ; nothing was changed.")
			return
		}
		d.run("Changing the FIDO2 PIN", func(ctx context.Context, k device.Key) (string, error) {
			dev, err := d.env.Keys.FIDO(k)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("FIDO2 PIN changed on key %d.", k.Serial), dev.ChangePIN(ctx, v[0], v[1])
		})
	})
}

func (d *Detail) fidoCredentials() {
	d.run("Reading FIDO2 credentials", func(ctx context.Context, k device.Key) (string, error) {
		dev, err := d.env.Keys.FIDO(k)
		if err != nil {
			return "", err
		}
		creds, err := dev.Credentials(ctx, d.callbacks(k))
		if err != nil {
			return "", err
		}
		fyne.Do(func() {
			d.creds, d.credSel = creds, -1
			d.Credentials.UnselectAll()
			d.Credentials.Refresh()
			d.Tabs.SelectIndex(1)
		})
		return fmt.Sprintf("Key %d holds %s.", k.Serial, uikit.Count(len(creds), "discoverable credential", "discoverable credentials")), nil
	})
}

// Creds is the credentials listed last (for tests).
func (d *Detail) Creds() []fidokey.Credential { return d.creds }

func (d *Detail) fidoDelete() {
	if !d.has {
		return
	}
	if d.credSel < 0 || d.credSel >= len(d.creds) {
		d.say(d.key.Serial, "List the credentials and select one first.")
		return
	}
	c := d.creds[d.credSel]
	uikit.ConfirmSerial(d.env.Window, d.key.Serial, "Delete a FIDO2 credential", fmt.Sprintf("The credential for %s (%s) is deleted; sign-ins with it stop working. Revoke it in the registry too.", c.RPID, c.UserName), func() {
		d.run("Deleting the credential", func(ctx context.Context, k device.Key) (string, error) {
			dev, err := d.env.Keys.FIDO(k)
			if err != nil {
				return "", err
			}
			if err := dev.DeleteCredential(ctx, d.callbacks(k), c.ID); err != nil {
				return "", err
			}
			fyne.Do(func() {
				d.creds = append(d.creds[:0:0], d.creds...)
				for i := range d.creds {
					if base64.RawURLEncoding.EncodeToString(d.creds[i].ID) == base64.RawURLEncoding.EncodeToString(c.ID) {
						d.creds = append(d.creds[:i], d.creds[i+1:]...)
						break
					}
				}
				d.credSel = -1
				d.Credentials.UnselectAll()
				d.Credentials.Refresh()
			})
			return fmt.Sprintf("Credential deleted from key %d.", k.Serial), nil
		})
	})
}

func (d *Detail) fidoReset() {
	if !d.has {
		return
	}
	uikit.ConfirmSerial(d.env.Window, d.key.Serial, "Reset FIDO2", "Every FIDO2 credential and the PIN are deleted; registered credentials stop working. You will be asked to remove and reinsert the key, then to touch it.", func() {
		d.run("Resetting FIDO2", func(ctx context.Context, k device.Key) (string, error) {
			dev, err := d.env.Keys.FIDO(k)
			if err != nil {
				return "", err
			}
			cb := d.callbacks(k)
			cb.Reinsert = func(ctx context.Context) error {
				fyne.Do(func() {
					d.Touch.SetText(fmt.Sprintf("Remove key %d and insert it again now: a reset is accepted only in the first seconds after it is plugged in.", k.Serial))
					d.Touch.Show()
				})
				return d.env.Reinsert(ctx, k.Serial)
			}
			if err := dev.Reset(ctx, cb, k.Serial); err != nil {
				return "", err
			}
			return fmt.Sprintf("FIDO2 on key %d is reset: no credentials, no PIN. Revoke its registered FIDO2 credentials in the registry.", k.Serial), nil
		})
	})
}

// fidoMinLength raises the key's minimum FIDO2 PIN length to the desk's
// policy (CTAP 2.1 §6.11 setMinPINLength); only a reset lowers it again.
func (d *Detail) fidoMinLength() {
	n := d.env.Settings().MinPINLength
	d.ask(fmt.Sprintf("Raise the minimum FIDO2 PIN length to %d", n), []string{"FIDO2 PIN"}, func(v []string) {
		d.run("Raising the minimum PIN length", func(ctx context.Context, k device.Key) (string, error) {
			dev, err := d.env.Keys.FIDO(k)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("Key %d now needs FIDO2 PINs of at least %d characters; only a reset lowers it.", k.Serial, n), dev.SetMinPINLength(ctx, v[0], n)
		})
	})
}

// fidoForceChange makes the key demand a new FIDO2 PIN before its next use
// (CTAP 2.1 §6.11 forceChangePin).
func (d *Detail) fidoForceChange() {
	d.ask("Force a FIDO2 PIN change", []string{"FIDO2 PIN"}, func(v []string) {
		d.run("Forcing a PIN change", func(ctx context.Context, k device.Key) (string, error) {
			dev, err := d.env.Keys.FIDO(k)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("Key %d will ask for a new FIDO2 PIN before its next use.", k.Serial), dev.ForcePINChange(ctx, v[0])
		})
	})
}
