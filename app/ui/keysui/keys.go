// Package keysui is the Keys screen of keydesk's desktop app: the live list
// of attached keys with each key's identity and health at a glance, and a
// key's detail with its PIV and FIDO2 actions (the device layer's, as the
// CLI's "keydesk piv" and "keydesk fido" offer them). Destructive actions
// are confirmed by typing the key's serial.
package keysui

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/keys"
	"github.com/keydesk/keydesk/app/recover"
	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/registry"
	"github.com/keydesk/keydesk/registry/client"
)

// Screen is the Keys screen; every role sees it (an engineer only their
// own keys). Its content is a uikit.Revisited: shown again, it looks at
// the keys and asks the registry about them again.
func Screen() uikit.Screen {
	return uikit.Screen{ID: "keys", Title: "Keys", Icon: theme.StorageIcon(), Make: func(env *uikit.Env) fyne.CanvasObject { return newContent(New(env)) }}
}

// content is the screen as the shell holds it: the view's Root, telling
// the view when the shell shows it again.
type content struct {
	widget.BaseWidget
	v *View
}

func newContent(v *View) *content {
	c := &content{v: v}
	c.ExtendBaseWidget(c)
	return c
}

func (c *content) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(c.v.Root) }

// Shown implements uikit.Revisited.
func (c *content) Shown() { c.v.Reread() }

// Reread reads every attached key and the registry's word on it again, as
// when the keys were first listed: whom a key is registered to, its status
// and coverage change when it is enrolled elsewhere (the Enrol screen,
// another desk, the CLI), and its PIN state with it, without the key
// being replugged. The shell calls it when the Keys screen is shown again;
// Ctrl+R, which lists the keys afresh, comes to the same.
func (v *View) Reread() {
	t := v.env.States()
	if t == nil {
		return
	}
	t.ReadAll()
	for _, k := range v.all {
		if st, ok := t.Get(k.Serial); ok {
			v.regather(st.Key, st.RegistryHead)
		}
	}
}

// Health is what keydesk knows about one key beyond its identity.
type Health struct {
	Report   *keys.Report
	Reg      *client.KeyDetail // nil when not registered or not known yet
	Owner    string            // the owner's external id
	RegErr   error             // why the registry could not say
	Coverage *client.Coverage
	// Version is the key-state model's version of the key this health
	// shows (app/keys.State.Version).
	Version uint64
	regHead string // the registry feed's head when the registry was asked
	regRead bool
}

// View is the Keys screen. Its widgets are fields for tests.
type View struct {
	env    *uikit.Env
	all    []device.Key
	shown  []device.Key
	health map[uint32]*Health
	cards  map[uint32]*Card // the card showing each key, while one does
	// chosen is set once a key has been selected (by the person, or the
	// first key listed when the screen first lists keys).
	chosen bool
	sel    uint32

	List    *widget.List
	Summary *widget.Label
	Detail  *Detail
	// Split divides the cards from the detail; its divider can be dragged.
	Split *container.Split
	Root  fyne.CanvasObject
}

// New builds the Keys screen and subscribes it to the live key list.
func New(env *uikit.Env) *View {
	v := &View{env: env, health: map[uint32]*Health{}}
	v.Summary = widget.NewLabel("Looking for keys…")
	v.Summary.Wrapping = fyne.TextWrapWord
	v.cards = map[uint32]*Card{}
	v.List = widget.NewList(
		func() int { return len(v.shown) },
		func() fyne.CanvasObject { return newCard() },
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(v.shown) {
				return
			}
			k := v.shown[i]
			c := o.(*Card)
			for s, old := range v.cards {
				if old == c {
					delete(v.cards, s)
				}
			}
			v.cards[k.Serial] = c
			c.show(k, v.health[k.Serial], v.env.Practice())
		})
	v.List.OnSelected = func(i widget.ListItemID) {
		if i >= 0 && i < len(v.shown) {
			v.chosen = true
			v.sel = v.shown[i].Serial
			v.Detail.Show(v.shown[i], v.health[v.sel])
		}
	}
	v.Detail = newDetail(env, v)
	// The list is no narrower than a card needs: the divider stops there
	// rather than cut a serial.
	minW := canvas.NewRectangle(color.Transparent)
	minW.SetMinSize(fyne.NewSize(newCard().MinSize().Width+theme.Padding()*2, 0))
	left := container.NewBorder(container.NewVBox(widget.NewLabelWithStyle("Attached keys", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), v.Summary, minW), nil, nil, nil, v.List)
	v.Split = container.NewHSplit(left, v.Detail.Root)
	v.Split.Offset = 0.42
	v.Root = v.Split
	env.Feed.Subscribe(v.update)
	env.SubscribeStates(v.stateChanged)
	if t := env.States(); t != nil {
		for _, k := range v.all {
			if st, ok := t.Get(k.Serial); ok {
				v.stateChanged([]keys.State{st})
			}
		}
	}
	return v
}

// Title is a key's identity line.
func Title(k device.Key) string {
	model := k.Model
	if model == "" {
		model = "Security key"
	}
	serial := "serial unknown"
	if !k.SerialUnknown {
		serial = "serial " + strconv.FormatUint(uint64(k.Serial), 10)
	}
	return fmt.Sprintf("%s · %s · firmware %s", model, serial, k.Firmware)
}

// HealthLine is a key's health at a glance: genuine, registered to whom,
// PIN states with tries left, coverage.
func HealthLine(k device.Key, h *Health) string {
	if h == nil {
		return "checking…"
	}
	var p []string
	if h.Reg != nil {
		p = append(p, genuine(h.Reg))
		p = append(p, fmt.Sprintf("registered to %s (%s, %s)", h.Owner, h.Reg.Role, h.Reg.Status))
	} else if errors.Is(h.RegErr, errNotConnected) {
		// The status line and one message say why, once.
		p = append(p, "registry not connected")
	} else if h.RegErr != nil {
		p = append(p, "registry: "+short(h.RegErr))
	} else {
		p = append(p, "not registered")
	}
	if r := h.Report; r != nil {
		switch {
		case r.PIV != nil && r.PIV.PINRetries == 0:
			p = append(p, "PIV PIN BLOCKED")
		case r.PIV != nil && r.PIV.PINDefault:
			p = append(p, "PIV PIN default, "+uikit.Count(r.PIV.PINRetries, "try", "tries"))
		case r.PIV != nil:
			p = append(p, "PIV PIN "+uikit.Count(r.PIV.PINRetries, "try", "tries"))
		case r.PIVError != "":
			p = append(p, "PIV unreadable: "+r.PIVError)
		}
		switch {
		case r.FIDO != nil && !r.FIDO.PINSet:
			p = append(p, "FIDO2 PIN not set")
		case r.FIDO != nil && r.FIDO.PINRetries == 0:
			p = append(p, "FIDO2 PIN BLOCKED")
		case r.FIDO != nil:
			p = append(p, "FIDO2 PIN "+uikit.Count(r.FIDO.PINRetries, "try", "tries"))
		case r.FIDOError != "":
			p = append(p, "FIDO2: "+r.FIDOError)
		}
	}
	if h.Coverage != nil {
		if h.Coverage.Covered {
			p = append(p, "covered (primary + backup)")
		} else {
			p = append(p, "NOT covered: missing "+strings.Join(h.Coverage.Missing, ", "))
		}
	}
	return strings.Join(p, " · ")
}

func genuine(d *client.KeyDetail) string {
	v := registry.AttestationVerdict("")
	for _, s := range d.PIV {
		v = s.Verdict
	}
	for _, f := range d.FIDO2 {
		if v == "" || v == registry.VerdictGenuine {
			v = f.Verdict
		}
	}
	switch v {
	case registry.VerdictGenuine:
		return "genuine (attested)"
	case "":
		return "not attested"
	}
	return "attestation: " + string(v)
}

// short is why the registry could not say, in plain words, cut to 60
// characters.
func short(err error) string {
	s := uikit.Reason(err)
	if r := []rune(s); len(r) > 60 {
		s = string(r[:60]) + "…"
	}
	return s
}

// update takes a new key list from the feed: which keys are listed. Their
// state comes from the key-state model (uikit.Env.States), which reads a
// key again whenever its listing changes; a list published again (Ctrl+R,
// a hotplug) has every key read again in full and the registry asked
// again about each, which is how a person with the self role, who cannot
// read the registry's change feed, sees the registry's word change.
func (v *View) update(list []device.Key) {
	v.all = list
	v.filter()
	t := v.env.States()
	if t == nil {
		// No key service (a screen test without keys): list only.
		return
	}
	t.ReadAll()
	for _, k := range list {
		if st, ok := t.Get(k.Serial); ok && v.health[k.Serial] != nil {
			v.regather(st.Key, st.RegistryHead)
		}
	}
	if v.sel != 0 && !attached(list, v.sel) {
		v.sel = 0
		v.List.UnselectAll()
		v.Detail.Clear("The key was removed.")
	}
	if !v.chosen && len(v.shown) > 0 {
		// The first time keys are listed the first is shown, as a key's
		// home; after that the person chooses.
		v.Select(v.shown[0].Serial)
	}
}

// stateChanged takes keys whose state changed from the model. The
// registry is asked again about a key when the registry's change feed
// moved since it was last asked (or never was); otherwise the new device
// state joins what the registry said.
func (v *View) stateChanged(changed []keys.State) {
	for _, st := range changed {
		if !attached(v.all, st.Key.Serial) {
			continue
		}
		h := v.health[st.Key.Serial]
		if h != nil && h.regRead && h.regHead == st.RegistryHead {
			n := *h
			n.Report, n.Version = st.Report, st.Version
			v.set(st.Key, &n)
			continue
		}
		v.regather(st.Key, st.RegistryHead)
	}
}

// regather asks the registry about k in the background, then shows k with
// the model's newest state of it.
func (v *View) regather(k device.Key, head string) {
	v.env.Go(func(ctx context.Context) error {
		h := v.askRegistry(ctx, k)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		uikit.Do(func() {
			st, ok := v.env.States().Get(k.Serial)
			if !ok || !attached(v.all, k.Serial) {
				return
			}
			h.Report, h.Version, h.regHead, h.regRead = st.Report, st.Version, head, true
			v.set(st.Key, h)
		})
		return nil
	}, nil)
}

// set shows h as the health of k, in its card and, when k is selected,
// in the detail.
func (v *View) set(k device.Key, h *Health) {
	if cur, ok := v.current(k.Serial); ok {
		k = cur // the key feed's listing is the one actions go through
	}
	v.health[k.Serial] = h
	v.filter()
	if v.sel == k.Serial {
		v.Detail.Show(k, h)
	}
}

func attached(list []device.Key, serial uint32) bool {
	for _, k := range list {
		if k.Serial == serial {
			return true
		}
	}
	return false
}

// filter picks the keys the person sees: an engineer (self) sees only keys
// registered to them.
func (v *View) filter() {
	v.shown = v.shown[:0]
	hidden := 0
	for _, k := range v.all {
		if v.env.Role == uikit.Self {
			h := v.health[k.Serial]
			if h == nil || h.Reg == nil || h.Reg.OwnerID != v.env.User {
				hidden++
				continue
			}
		}
		v.shown = append(v.shown, k)
	}
	switch {
	case len(v.all) == 0:
		v.Summary.SetText("No key attached. Insert a YubiKey.")
	case hidden > 0:
		v.Summary.SetText(fmt.Sprintf("%s attached; %d not registered to you %s hidden.", uikit.Count(len(v.all), "key", "keys"), hidden, map[bool]string{true: "is", false: "are"}[hidden == 1]))
	default:
		v.Summary.SetText(uikit.Count(len(v.all), "key", "keys") + " attached.")
	}
	v.List.Refresh()
}

// askRegistry asks the registry about k: to whom it is registered, in
// which role and status, and that person's coverage.
func (v *View) askRegistry(ctx context.Context, k device.Key) *Health {
	h := &Health{}
	if k.SerialUnknown {
		return h
	}
	reg, err := v.env.Registry(ctx)
	if err != nil {
		h.RegErr = fmt.Errorf("%w: %w", errNotConnected, err)
		return h
	}
	kd, u, _, err := recover.Find(ctx, reg, strconv.FormatUint(uint64(k.Serial), 10))
	switch {
	case err == nil:
		h.Reg, h.Owner = &kd, u.ExternalID
		if cv, err := reg.Coverage(ctx, u.ID); err == nil {
			h.Coverage = &cv
		}
	case isNotRegistered(err):
	default:
		h.RegErr = err
	}
	return h
}

// errNotConnected marks a key's registry state as unknown because the
// desk has no registry connection (not because of anything about the key).
var errNotConnected = errors.New("registry not connected")

func isNotRegistered(err error) bool { return errors.Is(err, recover.ErrNotRegistered) }

// Shown lists the serials in the list, in order (for tests).
func (v *View) Shown() []uint32 {
	out := make([]uint32, len(v.shown))
	for i, k := range v.shown {
		out[i] = k.Serial
	}
	return out
}

// CardOf is the card showing the key with serial now, or nil (for tests).
func (v *View) CardOf(serial uint32) *Card { return v.cards[serial] }

// HealthOf is what the screen knows of the key with serial (for tests).
func (v *View) HealthOf(serial uint32) *Health { return v.health[serial] }

// Select opens the key with serial in the detail pane.
func (v *View) Select(serial uint32) bool {
	for i, k := range v.shown {
		if k.Serial == serial {
			v.List.Select(i)
			return true
		}
	}
	return false
}

// refresh reads the key again after an action (in the model, so every
// screen showing it sees the change) and returns its state version then.
// Call it off the UI goroutine.
func (v *View) refresh(ctx context.Context, serial uint32) uint64 {
	t := v.env.States()
	if t == nil {
		return 0
	}
	st, _ := t.Refresh(ctx, serial)
	return st.Version
}

// current is the key with serial as the list has it now.
func (v *View) current(serial uint32) (device.Key, bool) {
	for _, k := range v.all {
		if k.Serial == serial {
			return k, true
		}
	}
	return device.Key{}, false
}

// replace takes what an action learnt of a key (its configuration after a
// restart) before the watcher reports it, and shows the key again if it
// was selected, or if the restart emptied the pane.
func (v *View) replace(k device.Key) {
	found := false
	v.all = append([]device.Key(nil), v.all...) // the feed's list is shared
	for i := range v.all {
		if v.all[i].Serial == k.Serial {
			v.all[i], found = k, true
		}
	}
	if !found {
		return
	}
	v.filter()
	switch v.sel {
	case k.Serial:
		v.Detail.Show(k, v.health[k.Serial])
	case 0:
		v.Select(k.Serial)
	}
}
