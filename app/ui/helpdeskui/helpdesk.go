// Package helpdeskui is the Helpdesk screen of keydesk's desktop app: find a
// person by name or a key by serial, or take the key they brought. Picking
// a key diagnoses it first (app/recover.Diagnose: who owns it, what is
// blocked, what to do); the recovery actions offered follow the diagnosis:
// unblock the PIV PIN with the PUK escrowed at enrolment, reset FIDO2 and
// re-create the organisation's credential, and, last, mark a key lost with a
// temporary access pass. The screen names its own buttons as next steps,
// never a command line.
package helpdeskui

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/enrol"
	"github.com/keydesk/keydesk/app/idp"
	"github.com/keydesk/keydesk/app/recover"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/registry"
)

// Screen is the Helpdesk screen, for admins and the helpdesk.
func Screen() uikit.Screen {
	return uikit.Screen{ID: "helpdesk", Title: "Helpdesk", Icon: theme.HelpIcon(), Roles: []uikit.Role{uikit.Admin, uikit.Helpdesk},
		Make: func(env *uikit.Env) fyne.CanvasObject { return New(env).Root }}
}

// View is the Helpdesk screen. Its widgets are fields for tests.
type View struct {
	env  *uikit.Env
	keys []device.Key

	// Identity returns the helpdesk's age identity; the OS keyring's when
	// New makes the view.
	Identity func() (string, error)

	Search    *uikit.Entry
	Find      *widget.Button
	Found     *widget.List
	Attached  *widget.Select
	Diagnose  *widget.Button
	Diagnosis *widget.Label
	Steps     *widget.Label
	Touch     *widget.Label
	Result    *widget.Label
	// Cancel ends the running step.
	Cancel *widget.Button

	UnblockPIV *widget.Button
	ResetFIDO  *widget.Button
	MarkLost   *widget.Button
	// Replace enrols the attached fresh key for the person whose key was
	// marked lost last, in the lost key's role.
	Replace *widget.Button
	// Replaced is the replacement's enrolment (for tests).
	Replaced *enrol.Result

	// Form is the PIN dialog open now that asks for an existing PIN or a
	// replacement's PINs; NewPIN the dialog open now that asks for a new
	// PIN for a recovery step; Pass the access pass dialog's text.
	Form   *uikit.SecretForm
	NewPIN *PINDialog
	Pass   string

	Last   *recover.Diagnosis
	marked *recover.LostResult
	Root   fyne.CanvasObject
	right  *fyne.Container
	// resultRow holds the result and Cancel beside it.
	resultRow *fyne.Container
	found     []foundKey
	pick      int
	busy      bool
	cancel    context.CancelFunc
}

// notRegistered is a diagnosis of a key the registry does not know, with
// what the helpdesk can do instead.
type notRegistered struct {
	err    error
	serial uint32
}

func (e notRegistered) Error() string { return e.err.Error() }
func (e notRegistered) Unwrap() error { return e.err }
func (e notRegistered) Hint() string {
	return fmt.Sprintf("Key %d is not registered to anyone. If it is the person's new key, enrol it on the Enrol screen; otherwise search for the person by name to find the keys registered to them.", e.serial)
}

// The buttons' words, which the next steps name.
const (
	unblockBlocked   = "Unblock PIV PIN"
	unblockForgotten = "Set a new PIV PIN"
	resetFIDOText    = "Reset FIDO2…"
	markLostText     = "Mark this key lost…"
	replaceText      = "Enrol the attached key as the replacement"
)

type foundKey struct {
	user registry.User
	key  registry.Key
}

// New builds the Helpdesk screen.
func New(env *uikit.Env) *View {
	v := &View{env: env, pick: -1}
	v.Identity = env.HelpdeskIdentity
	if v.Identity == nil {
		v.Identity = func() (string, error) { return secrets.Default().Get(secrets.HelpdeskIdentityAccount()) }
	}
	v.Search = uikit.NewEntry()
	v.Search.SetPlaceHolder("a person's id or name, or a key's serial")
	v.Search.OnSubmitted = func(string) { v.find() }
	v.Find = widget.NewButtonWithIcon("Search", theme.SearchIcon(), v.find)
	v.Found = widget.NewList(func() int { return len(v.found) },
		func() fyne.CanvasObject { return widget.NewLabel("user · key serial · role · status") },
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(v.found) {
				return
			}
			f := v.found[i]
			o.(*widget.Label).SetText(fmt.Sprintf("%s (%s) · key %s · %s · %s", f.user.ExternalID, f.user.DisplayName, f.key.Serial, f.key.Role, f.key.Status))
		})
	v.Found.OnSelected = func(i widget.ListItemID) { v.pick = i; v.diagnoseFound() }
	v.Attached = widget.NewSelect(nil, func(string) { v.enable() })
	v.Attached.PlaceHolder = "Insert the person's key"
	v.Diagnose = widget.NewButtonWithIcon("Diagnose", theme.SearchIcon(), v.diagnose)
	v.Diagnose.Importance = widget.HighImportance
	v.Diagnosis = widget.NewLabel("Insert the key the person brought and press Diagnose, or search for them.")
	v.Diagnosis.Wrapping = fyne.TextWrapWord
	v.Steps = widget.NewLabel("")
	v.Steps.Wrapping = fyne.TextWrapWord
	v.Steps.Importance = widget.DangerImportance
	v.Touch = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	v.Touch.Importance = widget.HighImportance
	v.Touch.Hide()
	v.Result = widget.NewLabel("")
	v.Result.Wrapping = fyne.TextWrapWord
	v.Cancel = widget.NewButton("Cancel", func() {
		if v.cancel != nil {
			v.cancel()
		}
	})
	v.Cancel.Hide()
	v.UnblockPIV = widget.NewButton(unblockBlocked, v.unblock)
	v.ResetFIDO = widget.NewButton(resetFIDOText, v.resetFIDO)
	// The one destructive action of the screen, and the only red button:
	// last in the list of actions.
	v.MarkLost = widget.NewButton(markLostText, v.markLost)
	v.MarkLost.Importance = widget.DangerImportance
	v.Replace = widget.NewButton(replaceText, v.replace)

	// Laid out again when Cancel shows or hides, so the result wraps to
	// the width it has.
	v.resultRow = container.NewBorder(nil, nil, nil, v.Cancel, v.Result)
	search := container.NewBorder(nil, nil, nil, v.Find, v.Search)
	left := container.NewBorder(container.NewVBox(widget.NewLabelWithStyle("Find a person or key", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), search,
		wrapped("Choose a key in the results to diagnose it.")),
		nil, nil, nil, v.Found)
	right := container.NewVBox(
		widget.NewLabelWithStyle("The key they brought", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		container.NewBorder(nil, nil, nil, v.Diagnose, v.Attached),
		v.Diagnosis, v.Steps, v.Touch,
		widget.NewLabelWithStyle("What the diagnosis allows", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		v.UnblockPIV, v.ResetFIDO, v.Replace, widget.NewSeparator(), v.MarkLost,
		v.resultRow)
	v.right = right
	split := container.NewHSplit(left, container.NewVScroll(right))
	split.Offset = 0.4
	v.Root = split
	env.Feed.Subscribe(v.update)
	v.enable()
	return v
}

func (v *View) update(list []device.Key) {
	var was uint32
	if k, ok := v.attached(); ok {
		was = k.Serial
	}
	v.keys = list
	uikit.FillKeyPicker(v.Attached, list, was)
	v.enable()
}

func (v *View) attached() (device.Key, bool) {
	i := v.Attached.SelectedIndex()
	if i < 0 || i >= len(v.keys) {
		return device.Key{}, false
	}
	return v.keys[i], true
}

func (v *View) enable() {
	set := func(b *widget.Button, on bool) {
		if on && !v.busy {
			b.Enable()
		} else {
			b.Disable()
		}
	}
	k, ok := v.attached()
	set(v.Diagnose, ok)
	// The recovery steps act on the attached key: only once the key
	// diagnosed (read from the key itself, not only the registry) is the
	// one attached and chosen, and only the steps its diagnosis allows.
	d := v.Last
	onKey := ok && d != nil && d.Serial == k.Serial && (d.PIV != nil || d.FIDO != nil)
	set(v.UnblockPIV, onKey && canUnblock(d))
	set(v.ResetFIDO, onKey && (d.Has(recover.FIDO2PINBlocked)) && k.FIDOPath != "")
	set(v.MarkLost, d != nil && d.Key.Status != registry.KeyLost)
	set(v.Replace, ok && v.marked != nil && strconv.FormatUint(uint64(k.Serial), 10) != v.marked.Key.Serial)
	set(v.Find, true)
}

// canUnblock says whether the escrowed PUK can set a new PIV PIN on the
// key d diagnosed: its PUK works and the registry holds it.
func canUnblock(d *recover.Diagnosis) bool {
	return d != nil && d.PIV != nil && !d.Has(recover.PIVPUKBlocked) && !d.Has(recover.EscrowMissing)
}

// run runs work in the background with the buttons disabled.
func (v *View) run(what string, work func(ctx context.Context) (string, error)) {
	if v.busy {
		return
	}
	v.busy = true
	v.enable()
	v.setResult(what+"…", false)
	v.Cancel.Show()
	v.resultRow.Refresh()
	v.cancel = v.env.Go(func(ctx context.Context) error {
		msg, err := work(ctx)
		if err == nil && msg != "" {
			uikit.Do(func() { v.setResult(msg, false) })
		}
		return err
	}, func(err error) {
		v.busy = false
		v.cancel = nil
		v.Cancel.Hide()
		v.resultRow.Refresh()
		v.Touch.Hide()
		v.enable()
		if err != nil {
			if errors.Is(err, recover.ErrCanceled) {
				v.setResult(what+": canceled; nothing was changed.", false)
				return
			}
			if errors.Is(err, uikit.ErrNotGiven) || errors.Is(err, context.Canceled) {
				v.setResult(what+": canceled.", false)
				return
			}
			v.setResult(what+" failed: "+uikit.Message(err), true)
		}
	})
}

// setResult shows the outcome line; a failure in the theme's error colour.
func (v *View) setResult(text string, failed bool) {
	if failed {
		v.Result.Importance = widget.DangerImportance
	} else {
		v.Result.Importance = widget.MediumImportance
	}
	v.Result.SetText(text)
}

func (v *View) options(k device.Key) recover.Options {
	return recover.Options{Keys: v.env.Keys, Identity: v.Identity,
		Callbacks: device.Callbacks{
			PIN: func(ctx context.Context, what string) (string, error) {
				// No touch prompt stands beside a PIN dialog: the key waits
				// for the PIN first.
				uikit.Do(v.Touch.Hide)
				vals, err := uikit.AwaitSecrets(ctx, v.env.Window, what, []string{what}, func(f *uikit.SecretForm) { v.Form = f })
				if err != nil {
					return "", err
				}
				return vals[0], nil
			},
			Touch: func(context.Context) {
				uikit.Do(func() {
					v.Touch.SetText(fmt.Sprintf("Touch key %d now: its light is blinking.", k.Serial))
					v.Touch.Show()
				})
			},
			Reinsert: func(ctx context.Context) error {
				uikit.Do(func() {
					v.Touch.SetText(fmt.Sprintf("Remove key %d and insert it again now: the reset is accepted only in the first seconds after it is plugged in.", k.Serial))
					v.Touch.Show()
				})
				return v.env.Reinsert(ctx, k.Serial)
			},
		},
		// The helpdesk confirmed by typing the serial before the work began.
		Confirm: func(context.Context, string) (bool, error) { return true, nil },
	}
}

// find searches the registry: a number is a key serial, anything else a
// person's id or name.
func (v *View) find() {
	q := strings.TrimSpace(v.Search.Text)
	if q == "" {
		return
	}
	var out []foundKey
	v.run("Searching", func(ctx context.Context) (string, error) {
		reg, err := v.env.Registry(ctx)
		if err != nil {
			return "", err
		}
		if _, err := strconv.ParseUint(q, 10, 32); err == nil {
			kd, u, _, err := recover.Find(ctx, reg, q)
			if errors.Is(err, recover.ErrNotRegistered) {
				return fmt.Sprintf("No key with serial %s is registered.", q), publish(v, nil)
			}
			if err != nil {
				return "", err
			}
			out = append(out, foundKey{u, kd.Key})
		} else {
			lq := strings.ToLower(q)
			after := ""
			for pages := 0; pages < 50; pages++ {
				users, next, err := reg.Users(ctx, after, 200)
				if err != nil {
					return "", err
				}
				for _, u := range users {
					if strings.Contains(strings.ToLower(u.ExternalID), lq) || strings.Contains(strings.ToLower(u.DisplayName), lq) || strings.Contains(strings.ToLower(u.Email), lq) {
						ks, err := reg.UserKeys(ctx, u.ID)
						if err != nil {
							return "", err
						}
						for _, k := range ks {
							out = append(out, foundKey{u, k})
						}
					}
				}
				if next == "" {
					break
				}
				after = next
			}
		}
		if err := publish(v, out); err != nil {
			return "", err
		}
		if len(out) == 0 {
			return fmt.Sprintf("Nobody matching %q has a key.", q), nil
		}
		return fmt.Sprintf("%s found. Choose one to diagnose it.", uikit.Count(len(out), "key", "keys")), nil
	})
}

func publish(v *View, out []foundKey) error {
	uikit.Do(func() {
		v.found, v.pick = out, -1
		v.Found.UnselectAll()
		v.Found.Refresh()
		v.enable()
	})
	return nil
}

// FoundSerials lists the serials the last search found (for tests).
func (v *View) FoundSerials() []string {
	var s []string
	for _, f := range v.found {
		s = append(s, f.key.Serial)
	}
	return s
}

// diagnose reads the attached key and the registry's record of it.
func (v *View) diagnose() {
	k, ok := v.attached()
	if !ok {
		return
	}
	v.diagnoseKey(k, true)
}

// diagnoseFound diagnoses the key chosen in the search results: from the
// key itself when it is attached (it becomes the key chosen above), else
// from the registry alone.
func (v *View) diagnoseFound() {
	if v.pick < 0 || v.pick >= len(v.found) {
		v.enable()
		return
	}
	f := v.found[v.pick]
	for i, k := range v.keys {
		if strconv.FormatUint(uint64(k.Serial), 10) == f.key.Serial {
			v.Attached.SetSelectedIndex(i)
			v.diagnoseKey(k, true)
			return
		}
	}
	serial, err := strconv.ParseUint(f.key.Serial, 10, 32)
	if err != nil {
		v.enable()
		return
	}
	v.diagnoseKey(device.Key{Serial: uint32(serial)}, false)
}

// diagnoseKey runs app/recover.Diagnose on k (attached: read from the key
// too, with the keys held) and shows the diagnosis.
func (v *View) diagnoseKey(k device.Key, attached bool) {
	var d *recover.Diagnosis
	v.run("Diagnosing key "+strconv.FormatUint(uint64(k.Serial), 10), func(ctx context.Context) (string, error) {
		reg, err := v.env.Registry(ctx)
		if err != nil {
			return "", err
		}
		opt := v.options(k)
		opt.Registry = reg
		if attached {
			release := v.env.HoldKeys()
			defer release()
		}
		d, err = recover.Diagnose(ctx, k, opt)
		if errors.Is(err, recover.ErrNotRegistered) {
			return "", notRegistered{err, k.Serial}
		}
		if err != nil {
			return "", err
		}
		uikit.Do(func() { v.show(d) })
		return "Diagnosis done; it is recorded in the registry's audit log.", nil
	})
}

// rediagnose runs the diagnosis again for the key with serial once a
// recovery step has changed it, so the screen shows the key's state now
// rather than the state that asked for the step. It runs on the step's
// goroutine with the keys held; it returns a sentence to add to the step's
// result when the key could not be read again (the step itself is done).
// A key that is not attached is diagnosed from the registry alone when
// fromRegistry is set.
func (v *View) rediagnose(ctx context.Context, serial uint32, opt recover.Options, fromRegistry bool) string {
	k, err := v.env.Keys.Find(ctx, serial)
	if err != nil && fromRegistry {
		k, err = device.Key{Serial: serial}, nil
	}
	if err == nil {
		var d *recover.Diagnosis
		if d, err = recover.Diagnose(ctx, k, opt); err == nil {
			uikit.Do(func() { v.show(d) })
			return ""
		}
	}
	uikit.Do(func() {
		if v.Last != nil && v.Last.Serial == serial {
			v.stale()
		}
	})
	return fmt.Sprintf(" Key %d could not be read again (%s): press Diagnose for its state now.", serial, uikit.Plain(err))
}

// stale marks the diagnosis shown as out of date: what it says was true
// before the last recovery step.
func (v *View) stale() {
	v.Last = nil
	v.Diagnosis.SetText("The diagnosis shown before is out of date: press Diagnose to read the key again.")
	v.Steps.SetText("")
	v.UnblockPIV.Importance = widget.MediumImportance
	v.UnblockPIV.Refresh()
	v.enable()
}

// tries is "N tries" with the right plural.
func tries(n int) string { return uikit.Count(n, "try", "tries") }

func (v *View) show(d *recover.Diagnosis) {
	v.Last = d
	var b strings.Builder
	fmt.Fprintf(&b, "Key %d (%s, %s) belongs to %s (%s).\n", d.Serial, d.Key.Role, d.Key.Status, d.User.ExternalID, d.User.DisplayName)
	var theirs []string
	for _, k := range d.UserKeys {
		theirs = append(theirs, fmt.Sprintf("%s %s %s", k.Serial, k.Role, k.Status))
	}
	if len(theirs) == 1 {
		fmt.Fprintf(&b, "It is their only key.\n")
	} else {
		fmt.Fprintf(&b, "Their %s: %s.\n", uikit.Count(len(theirs), "key", "keys"), strings.Join(theirs, ", "))
	}
	if d.PIV != nil {
		fmt.Fprintf(&b, "PIV PIN: %s left; PUK: %s left.\n", tries(d.PIV.PINRetries), tries(d.PIV.PUKRetries))
	}
	switch {
	case d.FIDO != nil && d.FIDO.PINSet:
		fmt.Fprintf(&b, "FIDO2 PIN: %s left.\n", tries(d.FIDO.PINRetries))
	case d.FIDO != nil:
		b.WriteString("FIDO2: no PIN set.\n")
	}
	if d.PIV == nil && d.FIDO == nil {
		fmt.Fprintf(&b, "Key %d is not attached: this is what the registry knows. Insert it and press Diagnose to read its PINs.\n", d.Serial)
	}
	v.Diagnosis.SetText(strings.TrimSpace(b.String()))
	if len(d.Problems) == 0 {
		v.Steps.Importance = widget.SuccessImportance
		note := "No problem found."
		if canUnblock(d) {
			note += " If the person forgot the PIV PIN, press " + unblockForgotten + "."
		}
		v.Steps.SetText(note)
	} else {
		var s []string
		for _, p := range d.Problems {
			s = append(s, fmt.Sprintf("Problem: %s\n  Next: %s", p.Text(), nextStep(d, p)))
		}
		v.Steps.Importance = widget.DangerImportance
		v.Steps.SetText(strings.Join(s, "\n"))
	}
	v.Steps.Refresh()
	if d.Has(recover.PIVPINBlocked) {
		v.UnblockPIV.SetText(unblockBlocked)
	} else {
		v.UnblockPIV.SetText(unblockForgotten)
	}
	if d.Has(recover.PIVPINBlocked) && canUnblock(d) {
		v.UnblockPIV.Importance = widget.HighImportance
	} else {
		v.UnblockPIV.Importance = widget.MediumImportance
	}
	if d.Has(recover.FIDO2PINBlocked) {
		v.ResetFIDO.Importance = widget.HighImportance
	} else {
		v.ResetFIDO.Importance = widget.MediumImportance
	}
	v.UnblockPIV.Refresh()
	v.ResetFIDO.Refresh()
	v.enable()
	v.right.Refresh()
}

// nextStep is what to do about p on this screen, in its own words: the
// button to press or the screen to go to. (app/recover's Steps name the
// CLI's commands, for the CLI.)
func nextStep(d *recover.Diagnosis, p recover.Problem) string {
	attached := d.PIV != nil || d.FIDO != nil
	insert := ""
	if !attached {
		insert = "insert the key, press Diagnose, then "
	}
	switch p {
	case recover.PIVPINBlocked:
		switch {
		case d.Has(recover.PIVPUKBlocked):
			return "the PIN and the PUK are both blocked: reset the key's PIV application on the Keys screen, then enrol it again on the Enrol screen."
		case d.Has(recover.EscrowMissing):
			return "no escrowed PUK can unblock it: reset the key's PIV application on the Keys screen, then enrol it again on the Enrol screen."
		}
		return insert + "press " + unblockBlocked + ": the PUK escrowed at enrolment sets a new PIN the person chooses."
	case recover.PIVPUKBlocked:
		if d.Has(recover.PIVPINBlocked) {
			return "see above."
		}
		return "the PIV PIN still works. Should it ever be blocked, the PIV application must be reset (Keys screen) and the key enrolled again."
	case recover.FIDO2PINBlocked:
		return insert + "press " + strings.TrimSuffix(resetFIDOText, "…") + ": it erases the key's passkeys and makes the organisation's credential again."
	case recover.FIDO2AuthLocked:
		return "remove the key and insert it again, then the person types the right PIN; press Diagnose afterwards."
	case recover.KeyNotActive:
		return fmt.Sprintf("the registry marks the key %s; if it was found again, an admin reactivates it.", d.Key.Status)
	case recover.EscrowMissing:
		return "its enrolment did not store the escrow: on the desk that enrolled it, resume it under \"Unfinished enrolments\" on the Enrol screen."
	}
	return "press Diagnose again after the person has tried the key."
}

// pivPINRule is the rule for a new PIV PIN, shown before it is typed.
var pivPINRule = fmt.Sprintf("The new PIV PIN: %d to %d characters (digits are easiest to type), not the factory PIN 123456. The person chooses it and types it twice.", recover.PIVPINMin, recover.PIVPINMax)

// unblock sets a new PIV PIN with the escrowed PUK. The PIN is checked in
// the dialog: only a PIN the key will take leaves it, so a refused PIN
// never opens the escrow.
func (v *View) unblock() {
	k, ok := v.attached()
	if !ok {
		return
	}
	v.NewPIN = askNewPIN(v.env.Window, "New PIV PIN for key "+strconv.FormatUint(uint64(k.Serial), 10), pivPINRule, func(pin string) string {
		if err := recover.CheckPIVPIN(pin); err != nil {
			return strings.TrimPrefix(err.Error(), recover.ErrPIVPINRule.Error()+": ")
		}
		return ""
	}, func(pin string) {
		v.run("Unblocking the PIV PIN", func(ctx context.Context) (string, error) {
			reg, err := v.env.Registry(ctx)
			if err != nil {
				return "", err
			}
			opt := v.options(k)
			opt.Registry = reg
			release := v.env.HoldKeys()
			defer release()
			if err := recover.UnblockPIVPIN(ctx, k, pin, opt); err != nil {
				return "", err
			}
			return fmt.Sprintf("PIV PIN on key %d unblocked with the escrowed PUK and set to the new PIN; recorded in the registry's audit log.", k.Serial) + v.rediagnose(ctx, k.Serial, opt, false), nil
		})
	})
}

// resetFIDO resets FIDO2 and re-creates the organisation's credential.
func (v *View) resetFIDO() {
	k, ok := v.attached()
	if !ok {
		return
	}
	who := ""
	if v.Last != nil {
		who = " of " + v.Last.User.ExternalID
	}
	uikit.ConfirmSerial(v.env.Window, k.Serial, "Reset FIDO2", "This erases every passkey on the key"+who+", including any the person made themselves; the organisation's credential is made again and the old ones revoked.", func() {
		s := v.env.Settings()
		rule := fmt.Sprintf("The new FIDO2 PIN: at least %d characters (the organisation's minimum), at most 63 bytes. The person chooses it and types it twice.", s.MinPINLength)
		v.NewPIN = askNewPIN(v.env.Window, "New FIDO2 PIN for key "+strconv.FormatUint(uint64(k.Serial), 10), rule, func(pin string) string {
			switch n := len([]rune(pin)); {
			case n < s.MinPINLength:
				return fmt.Sprintf("the PIN must be at least %d characters; this one has %d", s.MinPINLength, n)
			case len(pin) > 63:
				return "the PIN must be at most 63 bytes"
			}
			return ""
		}, func(pin string) {
			v.run("Resetting FIDO2", func(ctx context.Context) (string, error) {
				reg, err := v.env.Registry(ctx)
				if err != nil {
					return "", err
				}
				opt := v.options(k)
				opt.Registry = reg
				release := v.env.HoldKeys()
				defer release()
				res, err := recover.ResetFIDO2(ctx, k, pin, recover.FIDO2Policy{RPID: s.RPID, RPName: s.RPName, CredProtect: s.CredProtect, Discoverable: s.Discoverable}, opt)
				if err != nil {
					return "", err
				}
				if _, err := recover.WaitWhole(ctx, v.env.Keys, k.Serial, res.PIV, true, 15*time.Second); err != nil {
					return "", err
				}
				return fmt.Sprintf("FIDO2 on key %d reset; new credential for %s registered and verified; %s revoked.", k.Serial, s.RPID, uikit.Count(len(res.Revoked), "old credential", "old credentials")) + v.rediagnose(ctx, k.Serial, opt, false), nil
			})
		})
	})
}

// markLost marks the key on screen (the one diagnosed last) lost and
// shows the temporary access pass once.
func (v *View) markLost() {
	d := v.Last
	if d == nil {
		return
	}
	f := foundKey{user: d.User, key: d.Key.Key}
	serial, err := strconv.ParseUint(f.key.Serial, 10, 32)
	if err != nil {
		return
	}
	uikit.ConfirmSerial(v.env.Window, uint32(serial), "Mark lost", fmt.Sprintf("Key %s of %s stops working for sign-in at once; they get a temporary access pass for 8 hours.", f.key.Serial, f.user.ExternalID), func() {
		v.lost(f, "")
	})
}

func (v *View) lost(f foundKey, breakGlass string) {
	var res *recover.LostResult
	// The diagnosis on screen, of this key or another of the same person,
	// shows their keys: it is read again once the key is marked.
	last := v.Last
	v.run("Marking key "+f.key.Serial+" lost", func(ctx context.Context) (string, error) {
		reg, err := v.env.Registry(ctx)
		if err != nil {
			return "", err
		}
		res, err = recover.MarkLost(ctx, reg, f.key.Serial, recover.LostOptions{BreakGlass: breakGlass, PassValidity: "8h"})
		if errors.Is(err, registry.ErrLastKey) {
			uikit.Do(func() { v.askBreakGlass(f) })
			return "It is their last active key: give a reason to go ahead.", nil
		}
		if err != nil {
			return "", err
		}
		// The registry took the key out of service; its methods now go
		// from every identity provider that holds them.
		note := ""
		if prov, err := regconn.Providers(v.env.Settings(), reg); err != nil {
			note = " Deleting it at the identity providers failed: " + uikit.Message(err)
		} else if prov != nil {
			out, err := prov.Unregister(ctx, res.Key.ID, idp.UserOf(res.User))
			prov.Close()
			note = providersNote(out, err)
		}
		if last != nil && last.User.ID == res.User.ID {
			k, attached := v.attachedSerial(last.Serial)
			if !attached {
				k = device.Key{Serial: last.Serial}
			}
			opt := v.options(k)
			opt.Registry = reg
			release := v.env.HoldKeys()
			note += v.rediagnose(ctx, last.Serial, opt, true)
			release()
		}
		uikit.Do(func() {
			v.marked = res
			v.Pass = res.Pass
			msg := fmt.Sprintf("Key %s of %s is marked lost; %s left.", f.key.Serial, res.User.ExternalID, uikit.Count(res.ActiveKeys, "active key", "active keys"))
			if res.Pass != "" {
				uikit.ShowInfo("Temporary access pass", fmt.Sprintf("Give %s this pass; it is shown only now and is valid until %s:\n\n%s\n\nNext: insert a fresh key and enrol it as the replacement.",
					res.User.ExternalID, res.AccessPass.ExpiresAt.Format("2006-01-02 15:04 MST"), res.Pass), v.env.Window)
			}
			v.setResult(msg+" Next: insert a fresh key, choose it above and press "+replaceText+"."+note, false)
			v.enable()
			for i := range v.found {
				if v.found[i].key.ID == res.Key.ID {
					v.found[i].key = res.Key
				}
			}
			v.Found.Refresh()
		})
		return "", nil
	})
}

// providersNote says in a sentence what became of deleting a lost key's
// methods at the identity providers.
func providersNote(out []idp.Outcome, err error) string {
	if err != nil {
		return " Deleting it at the identity providers failed: " + uikit.Message(err)
	}
	var parts []string
	for _, o := range out {
		switch {
		case o.State == idp.IntentDone:
			parts = append(parts, "deleted at "+o.Provider)
		case o.Queued:
			parts = append(parts, o.Provider+" is unreachable, the delete is queued (keydesk idp sync)")
		default:
			parts = append(parts, o.Provider+": "+string(o.State)+" "+o.Error)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " Identity providers: " + strings.Join(parts, "; ") + "."
}

// attachedSerial is the attached key with serial, from the last list the
// feed published. Safe from any goroutine.
func (v *View) attachedSerial(serial uint32) (device.Key, bool) {
	for _, k := range v.env.Feed.Current() {
		if k.Serial == serial {
			return k, true
		}
	}
	return device.Key{}, false
}

func (v *View) askBreakGlass(f foundKey) {
	reason := uikit.NewEntry()
	reason.SetPlaceHolder("why the person may be left without an active key (audited)")
	d := dialog.NewForm("Their last active key", "Mark lost", "Cancel", []*widget.FormItem{widget.NewFormItem("Reason", reason)}, func(ok bool) {
		if ok && strings.TrimSpace(reason.Text) != "" {
			v.lost(f, strings.TrimSpace(reason.Text))
		}
	}, v.env.Window)
	// Enter confirms, Escape cancels.
	reason.OnSubmitted = func(string) { d.Submit() }
	reason.OnEscape = d.Hide
	uikit.UnfocusOnClose(d, reason)
	d.Show()
	v.env.Window.Canvas().Focus(reason)
}

// replace enrols the attached factory-fresh key for the person whose key
// was marked lost, in the lost key's role (app/recover.Replace over
// app/enrol): new PINs are chosen in dialogs, touches are shown as they
// are asked for, and the registry activates the key after a verified
// challenge, as any enrolment.
func (v *View) replace() {
	k, ok := v.attached()
	if !ok || v.marked == nil {
		return
	}
	lost := v.marked
	var res *enrol.Result
	v.run(fmt.Sprintf("Enrolling key %d for %s", k.Serial, lost.User.ExternalID), func(ctx context.Context) (string, error) {
		reg, err := v.env.Registry(ctx)
		if err != nil {
			return "", err
		}
		prov, err := regconn.Providers(v.env.Settings(), reg)
		if err != nil {
			return "", err
		}
		en, err := enrol.New(enrol.Config{Settings: v.env.Settings(), Keys: v.env.Keys, Registry: reg, IDP: prov})
		if err != nil {
			prov.Close()
			return "", err
		}
		defer en.Close()
		ui := enrol.UI{
			Progress: func(ev enrol.Event) {
				uikit.Do(func() { v.setResult(fmt.Sprintf("Key %d: %s %s", ev.Serial, ev.Step, ev.Detail), false) })
			},
			NewPIN: func(ctx context.Context, r enrol.PINRequest) (string, error) {
				uikit.Do(v.Touch.Hide)
				title := fmt.Sprintf("New %s for %s (%d to %d characters)", r.Kind, lost.User.ExternalID, r.MinLength, r.MaxLength)
				if r.Problem != "" {
					title = r.Problem + " — " + title
				}
				for {
					vals, err := uikit.AwaitSecrets(ctx, v.env.Window, title, []string{string(r.Kind), string(r.Kind) + " again"}, func(f *uikit.SecretForm) { v.Form = f })
					if err != nil {
						return "", err
					}
					if vals[0] == vals[1] {
						return vals[0], nil
					}
					title = "The two differ — " + title
				}
			},
			Touch: func(_ context.Context, serial uint32) {
				uikit.Do(func() {
					v.Touch.SetText(fmt.Sprintf("Touch key %d now: its light is blinking.", serial))
					v.Touch.Show()
				})
			},
		}
		release := v.env.HoldKeys()
		defer release()
		res, err = recover.Replace(ctx, en, lost, k.Serial, ui)
		if err != nil {
			return "", err
		}
		uikit.Do(func() { v.Replaced, v.marked = res, nil })
		opt := v.options(k)
		opt.Registry = reg
		return fmt.Sprintf("Key %d enrolled for %s as %s, %s.", res.Serial, res.ExternalID, res.Role, res.Status) + v.rediagnose(ctx, res.Serial, opt, false), nil
	})
}
