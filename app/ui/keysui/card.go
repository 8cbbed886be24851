package keysui

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/device"
	"github.com/keydesk/keydesk/registry"
)

// Card is one key in the Keys list, as Yubico Authenticator's home shows
// a key: a drawing of its shape, its model, its serial in full, whose it
// is and in which role, and chips for what needs attention. Its fields
// are for tests.
type Card struct {
	widget.BaseWidget
	Glyph  *Glyph
	Model  *widget.Label
	Serial *widget.Label
	Owner  *widget.Label
	Chips  []*uikit.Chip
	chips  *fyne.Container
	root   fyne.CanvasObject
}

// maxChips is how many chips a card has room for (two rows in the
// narrowest list).
const maxChips = 8

func newCard() *Card {
	c := &Card{Glyph: NewGlyph(formC)}
	c.Model = widget.NewLabelWithStyle("YubiKey 5C NFC", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	c.Serial = widget.NewLabelWithStyle("Serial 00000000", fyne.TextAlignLeading, fyne.TextStyle{Monospace: true})
	c.Owner = widget.NewLabel("Not registered · primary key · suspended")
	c.Owner.Truncation = fyne.TextTruncateEllipsis // a long name may shorten; the role comes first
	c.chips = container.New(&uikit.Flow{Rows: 2})
	for range maxChips {
		ch := uikit.NewChip("", uikit.ChipNeutral)
		ch.Hide()
		c.Chips = append(c.Chips, ch)
		c.chips.Add(ch)
	}
	text := container.NewVBox(c.Model, c.Serial, c.Owner, c.chips)
	c.root = container.NewBorder(nil, nil, container.NewCenter(c.Glyph), nil, text)
	c.ExtendBaseWidget(c)
	return c
}

func (c *Card) CreateRenderer() fyne.WidgetRenderer { return widget.NewSimpleRenderer(c.root) }

// show fills the card for key k.
func (c *Card) show(k device.Key, h *Health, practice bool) {
	c.Glyph.SetForm(k.FormFactor)
	model := k.Model
	if model == "" {
		model = "Security key"
	}
	c.Model.SetText(model)
	if k.SerialUnknown {
		c.Serial.SetText("serial unknown")
	} else {
		c.Serial.SetText("Serial " + strconv.FormatUint(uint64(k.Serial), 10))
	}
	c.Owner.SetText(OwnerLine(h))
	chips := Chips(k, h, practice)
	for i, ch := range c.Chips {
		if i < len(chips) {
			ch.Set(chips[i].Text, chips[i].Kind)
			ch.Show()
		} else {
			ch.Hide()
		}
	}
	c.chips.Refresh()
}

// ChipTexts are the words of the chips the card shows (for tests).
func (c *Card) ChipTexts() []string {
	var out []string
	for _, ch := range c.Chips {
		if ch.Visible() {
			out = append(out, ch.Text)
		}
	}
	return out
}

// ChipText is what one chip says.
type ChipText struct {
	Text string
	Kind uikit.ChipKind
}

// OwnerLine says whose the key is and in which role: "ada · primary key"
// (and its status when not active), "Not registered", or why the registry
// cannot say.
func OwnerLine(h *Health) string {
	switch {
	case h == nil:
		return "Checking…"
	case h.Reg != nil:
		s := fmt.Sprintf("%s · %s key", h.Owner, h.Reg.Role)
		if h.Reg.Status != registry.KeyActive {
			s += " · " + string(h.Reg.Status)
		}
		return s
	case errors.Is(h.RegErr, errNotConnected):
		return "Registry not connected"
	case h.RegErr != nil:
		return "The registry could not say whose it is"
	}
	return "Not registered"
}

// Chips are a key's health chips, most urgent first: what is broken
// (PIN blocked, not genuine, out of service), what needs doing (default
// PIN, unregistered, needs a backup key), then what is well, and VIRTUAL
// for a practice key.
func Chips(k device.Key, h *Health, practice bool) []ChipText {
	var bad, todo, good []ChipText
	add := func(list *[]ChipText, text string, kind uikit.ChipKind) {
		*list = append(*list, ChipText{text, kind})
	}
	if h == nil {
		add(&todo, "CHECKING…", uikit.ChipNeutral)
	} else {
		if r := h.Report; r != nil {
			switch p := r.PIV; {
			case p != nil && p.PINRetries == 0:
				add(&bad, "PIV PIN BLOCKED", uikit.ChipDanger)
			case p != nil:
				if p.PINDefault {
					add(&todo, "DEFAULT PIN", uikit.ChipWarning)
				}
				if p.PINRetries == 1 {
					add(&todo, "PIV PIN 1 TRY LEFT", uikit.ChipWarning)
				} else if p.PINRetries == 2 {
					add(&todo, "PIV PIN 2 TRIES LEFT", uikit.ChipWarning)
				}
			case r.PIVError != "":
				add(&todo, "PIV UNREADABLE", uikit.ChipNeutral)
			}
			if r.PIV != nil && r.PIV.PUKRetries == 0 && r.PIV.PINRetries != 0 {
				add(&todo, "PUK BLOCKED", uikit.ChipWarning)
			}
			switch {
			case r.FIDO != nil && r.FIDO.PINSet && r.FIDO.PINRetries == 0:
				add(&bad, "FIDO2 PIN BLOCKED", uikit.ChipDanger)
			case r.FIDO != nil && !r.FIDO.PINSet:
				add(&todo, "NO FIDO2 PIN", uikit.ChipWarning)
			}
		}
		switch {
		case h.Reg != nil:
			switch v := genuine(h.Reg); {
			case strings.HasPrefix(v, "genuine"):
				add(&good, "GENUINE", uikit.ChipGood)
			case v == "not attested":
				add(&todo, "NOT ATTESTED", uikit.ChipWarning)
			default:
				add(&bad, "NOT GENUINE", uikit.ChipDanger)
			}
			if h.Reg.Status != registry.KeyActive {
				add(&bad, strings.ToUpper(string(h.Reg.Status)), uikit.ChipDanger)
			}
			if h.Coverage != nil && !h.Coverage.Covered {
				add(&todo, "NEEDS BACKUP", uikit.ChipWarning)
			} else if h.Coverage != nil {
				add(&good, "BACKED UP", uikit.ChipGood)
			}
		case h.RegErr != nil:
			add(&todo, "REGISTRY OFFLINE", uikit.ChipNeutral)
		default:
			add(&todo, "UNREGISTERED", uikit.ChipWarning)
		}
	}
	out := append(append(bad, todo...), good...)
	if k.Virtual || practice {
		out = append(out, ChipText{"VIRTUAL", uikit.ChipVirtual})
	}
	if len(out) > maxChips {
		out = out[:maxChips]
	}
	return out
}
