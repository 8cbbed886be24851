package keysui

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/device/mgmt"
)

// ifaceApps are the applications the management application switches, in
// the order ykman lists them.
var ifaceApps = []device.Application{device.AppOTP, device.AppU2F, device.AppFIDO2, device.AppOATH, device.AppPIV, device.AppOpenPGP, device.AppHSMAuth}

// Interfaces is the Interfaces tab: a checkbox per application and
// transport, and Apply, enabled only once a box differs from the key.
type Interfaces struct {
	USB, NFC map[device.Application]*widget.Check
	Apply    *widget.Button
	// ApplyNote says why Apply is disabled (no box differs from what the
	// key enables); hidden while Apply is enabled.
	ApplyNote *widget.Label
	Note      *widget.Label
	root      fyne.CanvasObject
	// on and key are what enable was last told: whether the key may be
	// changed now, and the key the boxes are compared with.
	on  bool
	key device.Key
	// loaded is the key and configuration the checkboxes were last set
	// from; a new look at the same key leaves the person's edits alone.
	loaded struct {
		serial   uint32
		usb, nfc device.Application
		ok       bool
	}
}

func (d *Detail) newInterfaces() *Interfaces {
	f := &Interfaces{USB: map[device.Application]*widget.Check{}, NFC: map[device.Application]*widget.Check{}}
	grid := container.NewGridWithColumns(3,
		widget.NewLabelWithStyle("Application", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		widget.NewLabelWithStyle("USB", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		widget.NewLabelWithStyle("NFC", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}))
	for _, a := range ifaceApps {
		f.USB[a] = widget.NewCheck("enabled", func(bool) { f.refreshApply() })
		f.NFC[a] = widget.NewCheck("enabled", func(bool) { f.refreshApply() })
		grid.Add(widget.NewLabel(a.String()))
		grid.Add(f.USB[a])
		grid.Add(f.NFC[a])
	}
	f.Apply = widget.NewButton("Apply…", d.applyInterfaces)
	f.Apply.Importance = widget.DangerImportance
	d.buttons = append(d.buttons, f.Apply)
	f.Note = widget.NewLabel("Which applications the key offers over USB and NFC (as \"ykman config usb\" and \"ykman config nfc\"). " +
		"Switching FIDO2 or PIV off over USB leaves keydesk unable to manage that part of the key until it is switched on again.")
	f.Note.Wrapping = fyne.TextWrapWord
	f.ApplyNote = widget.NewLabel("Nothing to apply: no interface has changed.")
	f.ApplyNote.Wrapping = fyne.TextWrapWord
	f.ApplyNote.Hide()
	f.root = container.NewVBox(f.Note, grid, container.NewGridWithColumns(3, f.Apply), f.ApplyNote)
	return f
}

// changed says whether the boxes ask for anything f.key does not already
// enable (what applyInterfaces would write).
func (f *Interfaces) changed() bool {
	usb, nfc := f.chosen()
	return usb != f.key.EnabledUSB || (f.key.SupportedNFC != 0 && nfc != f.key.EnabledNFC)
}

// refreshApply enables Apply only while the key may be changed and a box
// differs from it, and says why it is disabled when nothing differs.
func (f *Interfaces) refreshApply() {
	if !f.on {
		f.Apply.Disable()
		f.ApplyNote.Hide()
		return
	}
	if !f.changed() {
		f.Apply.Disable()
		f.ApplyNote.Show()
		return
	}
	f.Apply.Enable()
	f.ApplyNote.Hide()
}

// load sets the checkboxes from k unless they already show k's current
// configuration (so a refresh keeps what the person is changing); enable
// decides which can be changed.
func (f *Interfaces) load(k device.Key) {
	l := &f.loaded
	if l.ok && l.serial == k.Serial && l.usb == k.EnabledUSB && l.nfc == k.EnabledNFC {
		return
	}
	l.serial, l.usb, l.nfc, l.ok = k.Serial, k.EnabledUSB, k.EnabledNFC, true
	for _, a := range ifaceApps {
		f.USB[a].SetChecked(k.EnabledUSB&a != 0)
		f.NFC[a].SetChecked(k.EnabledNFC&a != 0)
	}
}

// enable lets the person change what k supports, or nothing when on is
// false (no key chosen, or an action running).
func (f *Interfaces) enable(on bool, k device.Key) {
	f.on, f.key = on, k
	for _, a := range ifaceApps {
		allow(f.USB[a], on, k.SupportedUSB&a != 0)
		allow(f.NFC[a], on, k.SupportedNFC&a != 0)
	}
	f.refreshApply()
}

func allow(c *widget.Check, on, supported bool) {
	text := "enabled"
	if !supported {
		text = "not on this key"
	}
	if c.Text != text {
		c.Text = text
		c.Refresh()
	}
	if on && supported {
		c.Enable()
	} else {
		c.Disable()
	}
}

// chosen is what the checkboxes say.
func (f *Interfaces) chosen() (usb, nfc device.Application) {
	for _, a := range ifaceApps {
		if f.USB[a].Checked {
			usb |= a
		}
		if f.NFC[a].Checked {
			nfc |= a
		}
	}
	return usb, nfc
}

// ErrNoUSBApplication: every USB application would be off, and the key
// could not be reached over USB to turn them on again.
var ErrNoUSBApplication = errors.New("refusing to switch every USB application off: the key could not be used or reconfigured over USB afterwards")

func names(a device.Application) string {
	if a == 0 {
		return "none"
	}
	return a.String()
}

// applyInterfaces writes the chosen configuration behind a confirmation
// naming the key's serial (Yubico management WRITE CONFIG), then waits for
// the key to restart, as it does to apply a USB change.
func (d *Detail) applyInterfaces() {
	if !d.has {
		return
	}
	k, f := d.key, d.Ifaces
	usb, nfc := f.chosen()
	if usb == 0 {
		d.say(k.Serial, fmt.Sprintf("Nothing was changed on key %d: %s. Leave at least one USB application on.", k.Serial, ErrNoUSBApplication))
		return
	}
	var ch mgmt.Change
	var lines, warn []string
	if usb != k.EnabledUSB {
		ch.USB = &usb
		lines = append(lines, fmt.Sprintf("Over USB: %s (now %s).", names(usb), names(k.EnabledUSB)))
	}
	if k.SupportedNFC != 0 && nfc != k.EnabledNFC {
		ch.NFC = &nfc
		lines = append(lines, fmt.Sprintf("Over NFC: %s (now %s).", names(nfc), names(k.EnabledNFC)))
	}
	if len(lines) == 0 {
		d.say(k.Serial, fmt.Sprintf("Key %d already has these applications enabled; nothing to change.", k.Serial))
		return
	}
	for _, a := range []device.Application{device.AppFIDO2, device.AppPIV} {
		if k.EnabledUSB&a != 0 && usb&a == 0 {
			warn = append(warn, fmt.Sprintf("With %s off over USB keydesk cannot manage %s on this key until it is switched on again.", a, a))
		}
	}
	if k.EnabledUSB&keys.CCIDApps != 0 && usb&keys.CCIDApps == 0 {
		warn = append(warn, "With no smart-card application (PIV, OATH, OpenPGP, YubiHSM Auth) on over USB, keydesk cannot change these settings again; only ykman can.")
	}
	if ch.USB != nil {
		lines = append(lines, "The key restarts to apply a USB change.")
	}
	consequence := strings.Join(append(lines, warn...), "\n")
	apply := func(lock []byte) {
		ch.LockCode = lock
		d.run("Changing interfaces", func(ctx context.Context, k device.Key) (string, error) {
			if k.Reader == "" {
				return "", fmt.Errorf("key %d has no smart-card interface to configure it through: %w", k.Serial, device.ErrAppDisabled)
			}
			if err := mgmt.Apply(ctx, k.Reader, k.Serial, ch); err != nil {
				return "", err
			}
			msg := fmt.Sprintf("Key %d now enables over USB: %s", k.Serial, names(usb))
			if k.SupportedNFC != 0 {
				msg += fmt.Sprintf("; over NFC: %s", names(nfc))
			}
			msg += "."
			if ch.USB == nil {
				return msg, nil
			}
			nk, err := d.awaitRestart(ctx, k, usb)
			if errors.Is(err, context.Canceled) {
				return msg + " keydesk stopped waiting for it to restart; the change is written.", nil
			}
			if err != nil {
				return "", err
			}
			uikit.Do(func() { d.view.replace(nk) })
			return msg + " It has restarted.", nil
		})
	}
	uikit.ConfirmSerial(d.env.Window, k.Serial, "Change interfaces", consequence, func() {
		if !k.ConfigLocked {
			apply(nil)
			return
		}
		d.ask("Configuration lock code", []string{"Lock code (32 hex digits)"}, func(v []string) {
			code, err := hex.DecodeString(strings.TrimSpace(v[0]))
			if err != nil || len(code) != 16 {
				d.say(k.Serial, "The lock code is 32 hex digits; nothing was changed.")
				return
			}
			apply(code)
		})
	})
}

// awaitRestart waits for the key to go away and come back with the new
// USB configuration, through the interface that stays on.
func (d *Detail) awaitRestart(ctx context.Context, k device.Key, usb device.Application) (device.Key, error) {
	nk, err := d.env.Keys.AwaitRestart(ctx, k.Serial, usb, 5*time.Second)
	if err == nil {
		// The key-state model reads it as it came back, not as the
		// hotplug watcher may still list it mid-restart: the state the
		// message describes is the key restarted, and only a change
		// after that makes the message stale.
		if t := d.env.States(); t != nil {
			t.Seen(nk)
		}
		return nk, nil
	}
	if ctx.Err() != nil {
		return nk, err
	}
	return device.Key{}, &hinted{fmt.Errorf("key %d did not come back after restarting: %w", k.Serial, err), "Remove the key and insert it again; the change was written."}
}
