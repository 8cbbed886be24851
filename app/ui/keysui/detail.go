package keysui

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"

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
	// The sections, one tab each.
	OverviewTab, PIVTab, FIDOTab, RegistryTab, IfacesTab *container.TabItem
	sections

	// PIV actions.
	PIVChangePIN, PIVChangePUK, PIVUnblock, PIVRetries, PIVRotate, PIVAttest, PIVReset *widget.Button
	// PIVSlot is the slot the slot row's action acts on (each row's
	// buttons choose their slot; it is not shown).
	PIVSlot *widget.Select
	// FIDO2 actions.
	FIDOSetPIN, FIDOChangePIN, FIDOCredentials, FIDOReset *widget.Button
	FIDOMinLength, FIDOForceChange                        *widget.Button
	// Ifaces is the Interfaces tab.
	Ifaces *Interfaces
	// creds are the FIDO2 credentials read last (Passkeys shows them,
	// Delete on each row).
	creds   []fidokey.Credential
	credSel int

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
	d.Heading.Truncation = fyne.TextTruncateEllipsis // the Overview has each fact in full
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
	d.PIVRetries = b("Set retries…", false, d.pivRetries)
	d.PIVRotate = b("Rotate management key", false, d.pivRotate)
	d.PIVAttest = b("Attest slot 9a", false, d.pivAttest)
	d.PIVReset = b("Reset PIV…", true, d.pivReset)
	d.PIVSlot = widget.NewSelect(slotNames(), nil)
	d.PIVSlot.SetSelectedIndex(0)
	d.FIDOSetPIN = b("Set PIN", false, d.fidoSetPIN)
	d.FIDOChangePIN = b("Change PIN", false, d.fidoChangePIN)
	d.FIDOCredentials = b("List credentials", false, d.fidoCredentials)
	d.FIDOReset = b("Reset FIDO2…", true, d.fidoReset)
	d.FIDOMinLength = b("Raise minimum PIN length", false, d.fidoMinLength)
	d.FIDOForceChange = b("Force PIN change", false, d.fidoForceChange)

	d.PIVSlot.Hide() // the slot rows choose it
	d.Ifaces = d.newInterfaces()
	overview, piv, fido, reg := d.buildSections()
	d.OverviewTab = container.NewTabItem("Overview", overview)
	d.PIVTab = container.NewTabItem("PIV", piv)
	d.FIDOTab = container.NewTabItem("FIDO2", fido)
	d.RegistryTab = container.NewTabItem("Registry", reg)
	d.IfacesTab = container.NewTabItem("Interfaces", container.NewScroll(d.Ifaces.root))
	d.Tabs = container.NewAppTabs(d.OverviewTab, d.PIVTab, d.FIDOTab, d.RegistryTab, d.IfacesTab)
	d.head = container.NewBorder(nil, nil, nil, d.Badge, d.Heading)
	top := container.NewVBox(d.head, d.Touch, container.NewBorder(nil, nil, nil, d.Cancel, d.Busy), d.Result)
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
	d.showPasskeys(nil)
	d.showGlyph(false)
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
	d.fill(k, h)
	d.Ifaces.load(k)
	if d.cancel == nil {
		d.enable(true)
		d.applyReasons(h)
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

// describe is the Overview's line on the key's applications.
func describe(k device.Key, _ *Health) string {
	t := fmt.Sprintf("Applications enabled over USB: %s", k.EnabledUSB)
	if k.SupportedNFC != 0 {
		t += fmt.Sprintf("\nover NFC: %s", k.EnabledNFC)
	}
	return t
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
			uikit.Do(func() {
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
	if cur, ok := d.view.current(k.Serial); ok {
		k = cur // as the key list has it now (a restart may have changed it)
	}
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
			uikit.Do(func() { d.sayAt(k.Serial, ver, msg) })
		}
		return err
	}, func(err error) {
		d.cancel = nil
		d.Busy.Stop()
		d.Busy.Hide()
		d.Cancel.Hide()
		d.Touch.Hide()
		d.enable(d.has)
		if d.has {
			d.applyReasons(d.view.health[d.key.Serial])
		}
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
	slot := d.slot()
	uikit.ConfirmSerial(d.env.Window, d.key.Serial, fmt.Sprintf("Generate a key in slot %02x of key %d", slot, d.key.Serial), fmt.Sprintf("What slot %02x (%s) holds now is replaced; sign-ins that use it stop working.", slot, slotName(slot)), func() {
		d.run(fmt.Sprintf("Generating a key in slot %02x", slot), func(ctx context.Context, k device.Key) (string, error) {
			card, err := d.env.Keys.PIV(k)
			if err != nil {
				return "", err
			}
			_, err = card.Generate(ctx, d.callbacks(k), slot, pivkey.KeySpec{Algorithm: "ECCP256", PINPolicy: "once", TouchPolicy: "never"})
			return fmt.Sprintf("New ECCP256 key generated in slot %02x of key %d.", slot, k.Serial), err
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
		uikit.Do(func() {
			d.creds, d.credSel = creds, -1
			d.showPasskeys(creds)
			d.Tabs.Select(d.FIDOTab)
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
	uikit.ConfirmSerial(d.env.Window, d.key.Serial, fmt.Sprintf("Delete a passkey from key %d", d.key.Serial), fmt.Sprintf("The passkey for %s (user %s) on key %d is deleted; sign-ins with it stop working. Revoke it in the registry too.", c.RPID, c.UserName, d.key.Serial), func() {
		d.run("Deleting the credential", func(ctx context.Context, k device.Key) (string, error) {
			dev, err := d.env.Keys.FIDO(k)
			if err != nil {
				return "", err
			}
			if err := dev.DeleteCredential(ctx, d.callbacks(k), c.ID); err != nil {
				return "", err
			}
			uikit.Do(func() {
				d.creds = append(d.creds[:0:0], d.creds...)
				for i := range d.creds {
					if base64.RawURLEncoding.EncodeToString(d.creds[i].ID) == base64.RawURLEncoding.EncodeToString(c.ID) {
						d.creds = append(d.creds[:i], d.creds[i+1:]...)
						break
					}
				}
				d.credSel = -1
				d.showPasskeys(d.creds)
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
				uikit.Do(func() {
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
