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
	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/recover"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
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

	Last *recover.Diagnosis
	// What Last was read against, so that a change made elsewhere can be
	// told from what Last already says (see noticed): whether it was read
	// from the attached key and the key's listing then, the registry
	// change feed's head before it was read, and the key-state model's
	// state of the key at that moment (nil when it had none).
	lastAttached bool
	lastKey      device.Key
	lastHead     string
	lastBase     *keys.State
	// checking is set while the registry is asked whether the record of
	// the key on screen changed; recheck is a later head seen meanwhile.
	checking bool
	recheck  string
	// resultAbout is the key the result line is about (0: none, as a
	// search's outcome); selecting is set while the screen itself moves
	// the key chosen above to the key it diagnoses.
	resultAbout uint32
	selecting   bool
	// queued is a dialog's answer that came while the key was being
	// diagnosed again; it is looked at once that is done.
	queued func()
	// rereads counts the quiet readings of the key since the last step
	// that was not one (at most maxRereads: a key whose card keeps
	// refusing is not read for ever).
	rereads int

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
	v.Attached = widget.NewSelect(nil, func(string) { v.chosen() })
	v.Attached.PlaceHolder = "Insert the person's key"
	v.Diagnose = widget.NewButtonWithIcon("Diagnose", theme.SearchIcon(), v.diagnose)
	v.Diagnose.Importance = widget.HighImportance
	v.Diagnosis = widget.NewLabel(intro)
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
	env.SubscribeStates(v.stateChanged)
	v.enable()
	return v
}

// update takes a new list of attached keys. A key diagnosed from itself
// and now pulled keeps only what the registry says of it; a key diagnosed
// from the registry alone and now inserted is diagnosed again from the
// key.
func (v *View) update(list []device.Key) {
	var was uint32
	if k, ok := v.attached(); ok {
		was = k.Serial
	}
	before := v.keys
	v.keys = list
	var again uint32
	why := ""
	if d := v.Last; d != nil && !v.busy {
		switch {
		case v.lastAttached && !listed(list, d.Serial):
			v.removed()
		case !v.lastAttached && listed(list, d.Serial) && !listed(before, d.Serial):
			again, why = d.Serial, "it was inserted"
		case v.gained() && v.rereads < maxRereads:
			v.rereads++
			again = d.Serial
		}
	}
	uikit.FillKeyPicker(v.Attached, list, was)
	if again != 0 {
		v.again(again, why)
	}
	v.enable()
}

// gained says whether the key diagnosed from itself is listed now with
// an interface it was not listed with when diagnosed (a key just
// inserted is listed as soon as one interface answers: its FIDO2 device
// may come before its smart card, and what was not listed was not read).
func (v *View) gained() bool {
	if v.Last == nil || !v.lastAttached {
		return false
	}
	for _, k := range v.keys {
		if k.Serial == v.Last.Serial {
			return (k.Reader != "" && v.lastKey.Reader == "") || (k.FIDOPath != "" && v.lastKey.FIDOPath == "")
		}
	}
	return false
}

// serialOf is a registry serial as a number (0 when it is not one).
func serialOf(s string) uint32 {
	n, _ := strconv.ParseUint(s, 10, 32)
	return uint32(n)
}

func listed(list []device.Key, serial uint32) bool {
	for _, k := range list {
		if k.Serial == serial {
			return true
		}
	}
	return false
}

// chosen follows the key chosen above: a diagnosis read from another key,
// and a message about another key, are not about the key on screen, and
// go. (While a step runs, its own outcome decides what is shown.)
func (v *View) chosen() {
	defer v.enable()
	if v.busy || v.selecting {
		return
	}
	k, ok := v.attached()
	if d := v.Last; d != nil && v.lastAttached && (!ok || d.Serial != k.Serial) {
		if ok {
			v.clear(fmt.Sprintf("Key %d is chosen: press Diagnose to read it.", k.Serial))
		} else {
			v.clear(intro)
		}
	}
	if v.resultAbout != 0 && (!ok || v.resultAbout != k.Serial) && (v.Last == nil || v.Last.Serial != v.resultAbout) {
		v.setResult("", false)
		v.resultAbout = 0
	}
	if ok && v.marked != nil && v.Result.Text == "" && strconv.FormatUint(uint64(k.Serial), 10) != v.marked.Key.Serial {
		v.setResult(fmt.Sprintf("Key %d is chosen: press %s to enrol it for %s as their new %s key.", k.Serial, replaceText, v.marked.User.ExternalID, v.marked.Key.Role), false)
		v.resultAbout = k.Serial
	}
}

// maxRereads is how many times in a row a key is read again only because
// more of it can be read now.
const maxRereads = 2

// intro is what the diagnosis says before any key is diagnosed.
const intro = "Insert the key the person brought and press Diagnose, or search for them."

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

// run runs work in the background with the buttons disabled; about is
// the key the step is about (0 for none), whose the result line is.
func (v *View) run(what string, about uint32, work func(ctx context.Context) (string, error)) {
	v.start(what, about, false, work)
}

// start is run; a quiet step leaves the result line as it is unless it
// fails.
func (v *View) start(what string, about uint32, quiet bool, work func(ctx context.Context) (string, error)) {
	if v.busy {
		return
	}
	v.busy = true
	v.enable()
	if !quiet {
		v.setResult(what+"…", false)
		v.resultAbout = about
		v.rereads = 0
	}
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
		// What changed elsewhere while the step ran is looked at now,
		// then a dialog's answer that came meanwhile.
		defer func() {
			v.settle()
			if q := v.queued; q != nil && !v.busy {
				v.queued = nil
				q()
			}
		}()
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
	v.run("Searching", 0, func(ctx context.Context) (string, error) {
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
			v.selecting = true
			v.Attached.SetSelectedIndex(i)
			v.selecting = false
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
	v.run("Diagnosing key "+strconv.FormatUint(uint64(k.Serial), 10), k.Serial, func(ctx context.Context) (string, error) {
		if err := v.examine(ctx, k, attached); err != nil {
			return "", err
		}
		return "Diagnosis done; it is recorded in the registry's audit log.", nil
	})
}

// again diagnoses the key with serial again, without a click, because it
// changed outside this screen (why says how, in a few words): from the key
// when it is attached, else from the registry. Should that fail, the
// diagnosis shown is marked out of date rather than left as if current.
// With why empty the key did not change, only more of it can be read (its
// listing caught up after it came back): the result line stays as it is.
func (v *View) again(serial uint32, why string) {
	k := device.Key{Serial: serial}
	attached := false
	for i, l := range v.keys {
		if l.Serial == serial {
			k, attached = l, true
			v.selecting = true
			v.Attached.SetSelectedIndex(i)
			v.selecting = false
		}
	}
	prev := v.Last
	what := fmt.Sprintf("Key %d: %s; diagnosing it again", serial, why)
	if why == "" {
		what = fmt.Sprintf("Reading key %d again", serial)
	}
	v.start(what, serial, why == "", func(ctx context.Context) (string, error) {
		if err := v.examine(ctx, k, attached); err != nil {
			uikit.Do(func() {
				if v.Last == prev {
					v.stale()
				}
			})
			return "", err
		}
		if why == "" {
			return "", nil
		}
		return fmt.Sprintf("Diagnosed again because %s: the diagnosis above is key %d as it is now; recorded in the registry's audit log.", why, serial), nil
	})
}

// examine diagnoses k and shows the diagnosis, from a step's goroutine;
// when attached, k is read too, with the keys held.
func (v *View) examine(ctx context.Context, k device.Key, attached bool) error {
	reg, err := v.env.Registry(ctx)
	if err != nil {
		return err
	}
	opt := v.options(k)
	opt.Registry = reg
	if attached {
		release := v.env.HoldKeys()
		defer release()
	}
	return v.diagnoseHeld(ctx, k, attached, opt)
}

// diagnoseHeld diagnoses k, with the keys held when attached, and shows
// the diagnosis with what it was read against: the registry change feed's
// head asked before, and the key-state model's state of the key now. With
// the keys held the model cannot have read the key since the diagnosis
// did, so a state it publishes later that differs from both is a change
// made elsewhere (see noticed).
func (v *View) diagnoseHeld(ctx context.Context, k device.Key, attached bool, opt recover.Options) error {
	head := ""
	if ch, err := opt.Registry.Changes(ctx, "", 1); err == nil {
		head = ch.Head
	}
	d, err := recover.Diagnose(ctx, k, opt)
	if errors.Is(err, recover.ErrNotRegistered) {
		return notRegistered{err, k.Serial}
	}
	if err != nil {
		return err
	}
	var base *keys.State
	if t := v.env.States(); t != nil && attached {
		if st, ok := t.Get(k.Serial); ok {
			base = &st
		}
	}
	uikit.Do(func() { v.present(d, k, attached, head, base) })
	return nil
}

// present shows d and what it was read against; a diagnosis read from an
// attached key makes that key the one chosen above.
func (v *View) present(d *recover.Diagnosis, k device.Key, attached bool, head string, base *keys.State) {
	v.lastAttached, v.lastKey, v.lastHead, v.lastBase = attached, k, head, base
	v.checking, v.recheck = false, ""
	if attached {
		for i, l := range v.keys {
			if l.Serial == d.Serial && v.Attached.SelectedIndex() != i {
				v.selecting = true
				v.Attached.SetSelectedIndex(i)
				v.selecting = false
			}
		}
	}
	v.show(d)
}

// rediagnose runs the diagnosis again for the key with serial once a
// recovery step has changed it, so the screen shows the key's state now
// rather than the state that asked for the step. It runs on the step's
// goroutine with the keys held; it returns a sentence to add to the step's
// result when the key could not be read again (the step itself is done).
// A key that is not attached is diagnosed from the registry alone when
// fromRegistry is set.
func (v *View) rediagnose(ctx context.Context, serial uint32, opt recover.Options, fromRegistry bool) string {
	attached := true
	k, err := v.env.Keys.Find(ctx, serial)
	if err != nil && fromRegistry {
		k, err, attached = device.Key{Serial: serial}, nil, false
	}
	if err == nil {
		if err = v.diagnoseHeld(ctx, k, attached, opt); err == nil {
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
	v.clear("The diagnosis shown before is out of date: press Diagnose to read the key again.")
}

// clear takes the diagnosis off the screen, saying why in text.
func (v *View) clear(text string) {
	v.Last, v.lastBase = nil, nil
	v.Diagnosis.SetText(text)
	v.Steps.SetText("")
	v.UnblockPIV.Importance = widget.MediumImportance
	v.UnblockPIV.Refresh()
	v.ResetFIDO.Importance = widget.MediumImportance
	v.ResetFIDO.Refresh()
	v.enable()
}

// stateChanged takes keys whose state the key-state model (uikit.Env.States)
// read anew: a PIN typed wrong or unblocked in another program, a key
// restarted, the registry's change feed moved.
func (v *View) stateChanged(changed []keys.State) {
	for _, st := range changed {
		v.noticed(st)
	}
}

// noticed compares a state the model published with the diagnosis on
// screen. A step of this screen holds the keys while it acts and
// diagnoses again before it lets go, so what it did is in the diagnosis;
// while one runs nothing is compared (settle looks once it ends). The
// key's PIN state counts as changed elsewhere as pins.changed says; a part
// of the key the model reads and the diagnosis could not is read again
// quietly. The registry counts as
// changed when its change feed moved past the head the diagnosis was read
// at and the registry's record of the key or its owner's keys differs.
func (v *View) noticed(st keys.State) {
	d := v.Last
	if d == nil || v.busy {
		return
	}
	if v.lastAttached && st.Key.Serial == d.Serial && st.Report != nil {
		now, shown := pinsOf(st.Report.PIV, st.Report.FIDO), pinsOf(d.PIV, d.FIDO)
		// With no state of the key in the model when the diagnosis was
		// read (a key just inserted or restarted), the model's first
		// reading of it came after the diagnosis's.
		base := shown
		if v.lastBase != nil && v.lastBase.Report != nil {
			base = pinsOf(v.lastBase.Report.PIV, v.lastBase.Report.FIDO)
		}
		why, reread := now.changed(base, shown)
		switch {
		case why != "":
			v.again(d.Serial, why)
			return
		case reread && v.rereads < maxRereads:
			v.rereads++
			v.again(d.Serial, "")
			return
		}
		s := st
		v.lastBase = &s
	}
	if laterHead(st.RegistryHead, v.lastHead) {
		v.checkRegistry(st.RegistryHead)
	}
}

// settle looks, once a step has ended, at what may have changed while it
// ran: the key diagnosed pulled, its state in the model.
func (v *View) settle() {
	d := v.Last
	if d == nil || v.busy {
		return
	}
	if v.lastAttached && !listed(v.keys, d.Serial) {
		v.removed()
		return
	}
	if v.gained() && v.rereads < maxRereads {
		v.rereads++
		v.again(d.Serial, "")
		return
	}
	t := v.env.States()
	if t == nil {
		return
	}
	if v.lastAttached {
		if st, ok := t.Get(d.Serial); ok {
			v.noticed(st)
		}
		return
	}
	// Diagnosed from the registry alone: the feed's head as the model
	// last had it, from any key attached.
	for _, k := range v.keys {
		if st, ok := t.Get(k.Serial); ok && laterHead(st.RegistryHead, v.lastHead) {
			v.checkRegistry(st.RegistryHead)
			return
		}
	}
}

// removed keeps, of a diagnosis read from a key that has been pulled,
// what the registry said: what was read from the key is no longer known.
func (v *View) removed() {
	d := *v.Last
	d.PIV, d.FIDO = nil, nil
	d.Problems = nil
	for _, p := range v.Last.Problems {
		if p == recover.KeyNotActive || p == recover.EscrowMissing {
			d.Problems = append(d.Problems, p)
		}
	}
	v.lastAttached, v.lastBase = false, nil
	v.checking, v.recheck = false, ""
	v.show(&d)
	msg := fmt.Sprintf("Key %d was removed: the diagnosis above is what the registry knows of it.", d.Serial)
	if v.marked != nil {
		msg += " Next: choose the fresh key above and press " + replaceText + "."
	}
	v.setResult(msg, false)
	v.resultAbout = d.Serial
}

// checkRegistry asks the registry, once its change feed has moved to head,
// whether its record of the key on screen or of its owner's keys changed
// (a key marked lost, suspended or enrolled at another desk or from the
// CLI); only then is the key diagnosed again (each diagnosis is audited,
// and most changes in a busy registry are about other people).
func (v *View) checkRegistry(head string) {
	if v.checking {
		if laterHead(head, v.recheck) {
			v.recheck = head
		}
		return
	}
	d := v.Last
	v.checking = true
	changed := false
	v.env.Go(func(ctx context.Context) error {
		reg, err := v.env.Registry(ctx)
		if err != nil {
			return err
		}
		kd, u, ks, err := recover.Find(ctx, reg, strconv.FormatUint(uint64(d.Serial), 10))
		switch {
		case errors.Is(err, recover.ErrNotRegistered):
			changed = true
			return nil
		case err != nil:
			return err
		}
		changed = recordChanged(d, kd, u, ks)
		if !changed && d.Has(recover.EscrowMissing) {
			if _, err := reg.Escrow(ctx, d.Key.ID, recover.EscrowKind); err == nil {
				changed = true
			}
		}
		return nil
	}, func(err error) {
		if v.Last != d {
			return // diagnosed again meanwhile
		}
		v.checking = false
		if err != nil || v.busy {
			// Asked again on the feed's next move or once the step ends.
			return
		}
		if changed {
			v.again(d.Serial, "its record in the registry changed")
			return
		}
		if laterHead(head, v.lastHead) {
			v.lastHead = head
		}
		if next := v.recheck; laterHead(next, v.lastHead) {
			v.recheck = ""
			v.checkRegistry(next)
		}
	})
}

// recordChanged says whether the registry's record of the key d is about,
// or of its owner and their keys, differs from what d was read from.
func recordChanged(d *recover.Diagnosis, kd client.KeyDetail, u registry.User, ks []registry.Key) bool {
	if kd.ID != d.Key.ID || kd.Version != d.Key.Version || kd.Status != d.Key.Status || kd.Role != d.Key.Role ||
		u.ID != d.User.ID || u.Version != d.User.Version || len(ks) != len(d.UserKeys) {
		return true
	}
	was := map[string]registry.Key{}
	for _, k := range d.UserKeys {
		was[k.ID] = k
	}
	for _, k := range ks {
		w, ok := was[k.ID]
		if !ok || w.Version != k.Version || w.Status != k.Status || w.Role != k.Role {
			return true
		}
	}
	return false
}

// laterHead says whether registry change feed head h is later than cur.
// Heads are the feed's sequence numbers; an unknown head ("") is never
// later, and any head is later than an unknown one.
func laterHead(h, cur string) bool {
	if h == "" {
		return false
	}
	if cur == "" {
		return true
	}
	a, errA := strconv.ParseInt(h, 10, 64)
	b, errB := strconv.ParseInt(cur, 10, 64)
	if errA != nil || errB != nil {
		return h != cur
	}
	return a > b
}

// pins is the part of a key's state a diagnosis rests on: its PIV PIN and
// PUK tries and its FIDO2 PIN, as read (a nil status: not read).
type pins struct {
	piv, fido bool
	pin, puk  int
	fidoSet   bool
	fidoTries int
}

func pinsOf(p *device.PIVStatus, f *device.FIDOStatus) pins {
	var s pins
	if p != nil {
		s.piv, s.pin, s.puk = true, p.PINRetries, p.PUKRetries
	}
	if f != nil {
		s.fido, s.fidoSet, s.fidoTries = true, f.PINSet, f.PINRetries
	}
	return s
}

// changed compares s, the model's reading of the key now, with base, its
// reading when the diagnosis shown was read, and with shown, the
// diagnosis. It says in a few words what changed elsewhere: a value that
// differs both from base (the model may not have read the key since this
// screen's own step) and from shown (the model's next reading finds what
// the step left). A part of the key read by one and not the other (a key
// just back, its card not yet answering to one of them; the model's
// listing of it not yet whole) is no change to tell of: reread is set
// when the model reads it and the diagnosis could not, or when the model
// no longer reads what it read at the diagnosis.
func (s pins) changed(base, shown pins) (why string, reread bool) {
	var what []string
	switch {
	case s.piv != shown.piv:
		reread = s.piv || s.piv != base.piv
	case s.piv && (!base.piv || s.pin != base.pin || s.puk != base.puk) && (s.pin != shown.pin || s.puk != shown.puk):
		what = append(what, "its PIV PIN or PUK")
	}
	switch {
	case s.fido != shown.fido:
		reread = reread || s.fido || s.fido != base.fido
	case s.fido && (!base.fido || s.fidoSet != base.fidoSet || s.fidoTries != base.fidoTries) && (s.fidoSet != shown.fidoSet || s.fidoTries != shown.fidoTries):
		what = append(what, "its FIDO2 PIN")
	}
	if len(what) == 0 {
		return "", reread
	}
	return strings.Join(what, " and ") + " changed outside this screen", reread
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
	}, func(pin string) { v.unblockWith(k, pin) })
}

// unblockWith unblocks the PIV PIN of k with the escrowed PUK, setting pin,
// once the new-PIN dialog is answered.
func (v *View) unblockWith(k device.Key, pin string) {
	if !v.still(v.UnblockPIV, k.Serial, true, func() { v.unblockWith(k, pin) }) {
		return
	}
	v.run("Unblocking the PIV PIN", k.Serial, func(ctx context.Context) (string, error) {
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
			var reset func()
			reset = func() {
				if !v.still(v.ResetFIDO, k.Serial, true, reset) {
					return
				}
				v.resetWith(k, pin, s)
			}
			reset()
		})
	})
}

// resetWith resets FIDO2 on k with the new PIN pin, once the dialogs are
// answered.
func (v *View) resetWith(k device.Key, pin string, s settings.Settings) {
	v.run("Resetting FIDO2", k.Serial, func(ctx context.Context) (string, error) {
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
		var mark func()
		mark = func() {
			if v.still(v.MarkLost, uint32(serial), false, mark) {
				v.lost(f, "")
			}
		}
		mark()
	})
}

func (v *View) lost(f foundKey, breakGlass string) {
	var res *recover.LostResult
	// The diagnosis on screen, of this key or another of the same person,
	// shows their keys: it is read again once the key is marked.
	last := v.Last
	v.run("Marking key "+f.key.Serial+" lost", serialOf(f.key.Serial), func(ctx context.Context) (string, error) {
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

// still says whether the action of button b on the key with serial, asked
// for in a dialog, is still offered now that the dialog is answered: the
// key may have changed while it was open (and been diagnosed again), or
// another key been chosen (attached: the action acts on the key chosen
// above). If not, nothing is done and the result line says so. While the
// key is being diagnosed again the answer waits: retry is called once that
// is done.
func (v *View) still(b *widget.Button, serial uint32, attached bool, retry func()) bool {
	if v.busy {
		v.queued = retry
		return false
	}
	if k, chosen := v.attached(); attached && (!chosen || k.Serial != serial) {
		v.setResult(fmt.Sprintf("Nothing was done: key %d is no longer the key chosen above.", serial), true)
		v.resultAbout = serial
		return false
	}
	if b.Disabled() || v.Last == nil || v.Last.Serial != serial {
		v.setResult(fmt.Sprintf("Nothing was done: key %d changed while the dialog was open. Read the diagnosis and press %s again if it still applies.", serial, strings.TrimSuffix(b.Text, "…")), true)
		v.resultAbout = serial
		return false
	}
	return true
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
	v.run(fmt.Sprintf("Enrolling key %d for %s", k.Serial, lost.User.ExternalID), k.Serial, func(ctx context.Context) (string, error) {
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
