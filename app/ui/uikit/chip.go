package uikit

import (
	"image/color"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// ChipKind is what a chip says about its subject, and so its colour.
type ChipKind int

// The kinds of chip. Each pairs white text with a background dark enough
// for 4.5:1 (WCAG 2.1 AA) in the light and the dark theme alike (checked
// by app/ui's TestThemeContrast through ChipKinds).
const (
	ChipNeutral ChipKind = iota // a fact: "PIV PIN 3 tries"
	ChipGood                    // all is well: "GENUINE"
	ChipInfo                    // worth knowing: "PRIMARY"
	ChipWarning                 // needs attention: "DEFAULT PIN", "NEEDS BACKUP"
	ChipDanger                  // broken or unsafe: "PIN BLOCKED", "NOT GENUINE"
	ChipVirtual                 // a practice key: "VIRTUAL"
)

// ChipKinds lists every kind, for the contrast test.
func ChipKinds() []ChipKind {
	return []ChipKind{ChipNeutral, ChipGood, ChipInfo, ChipWarning, ChipDanger, ChipVirtual}
}

// Colors are the chip's text and background colours.
func (k ChipKind) Colors() (fg, bg color.Color) {
	fg = color.White
	switch k {
	case ChipGood:
		bg = color.NRGBA{0x18, 0x72, 0x2A, 0xff}
	case ChipInfo:
		bg = color.NRGBA{0x1A, 0x5A, 0xC7, 0xff}
	case ChipWarning:
		bg = color.NRGBA{0x8A, 0x4B, 0x00, 0xff}
	case ChipDanger:
		bg = color.NRGBA{0xB3, 0x26, 0x1E, 0xff}
	case ChipVirtual:
		bg = color.NRGBA{0x6A, 0x1B, 0x9A, 0xff}
	default:
		bg = color.NRGBA{0x4A, 0x4A, 0x4A, 0xff}
	}
	return fg, bg
}

// Chip is a short label in colour, a word and a colour together (colour is
// never the only sign: the text says it).
type Chip struct {
	widget.BaseWidget
	Text string
	Kind ChipKind
}

// NewChip returns a chip.
func NewChip(text string, kind ChipKind) *Chip {
	c := &Chip{Text: text, Kind: kind}
	c.ExtendBaseWidget(c)
	return c
}

// Set changes the chip's text and kind.
func (c *Chip) Set(text string, kind ChipKind) {
	if c.Text == text && c.Kind == kind {
		return
	}
	c.Text, c.Kind = text, kind
	c.Refresh()
}

func (c *Chip) CreateRenderer() fyne.WidgetRenderer {
	r := &chipRenderer{c: c, bg: canvas.NewRectangle(color.Black), text: canvas.NewText("", color.White)}
	r.text.TextStyle = fyne.TextStyle{Bold: true}
	r.Refresh()
	return r
}

type chipRenderer struct {
	c    *Chip
	bg   *canvas.Rectangle
	text *canvas.Text
}

func chipPad() (h, v float32) { return theme.Padding() * 2, theme.Padding() }

func (r *chipRenderer) Layout(size fyne.Size) {
	r.bg.Resize(size)
	ts := r.text.MinSize()
	r.text.Move(fyne.NewPos((size.Width-ts.Width)/2, (size.Height-ts.Height)/2))
	r.text.Resize(ts)
}

func (r *chipRenderer) MinSize() fyne.Size {
	h, v := chipPad()
	ts := r.text.MinSize()
	return fyne.NewSize(ts.Width+2*h, ts.Height+2*v)
}

func (r *chipRenderer) Refresh() {
	fg, bg := r.c.Kind.Colors()
	r.bg.FillColor = bg
	r.bg.CornerRadius = theme.InputRadiusSize() * 2
	r.text.Text = r.c.Text
	r.text.Color = fg
	r.text.TextSize = theme.TextSize() * 0.9
	r.bg.Refresh()
	r.text.Refresh()
}

func (r *chipRenderer) Objects() []fyne.CanvasObject { return []fyne.CanvasObject{r.bg, r.text} }
func (r *chipRenderer) Destroy()                     {}

// Fits says whether the chip is given at least the room its text needs
// (for tests of small windows).
func (c *Chip) Fits() bool {
	m := c.MinSize()
	s := c.Size()
	return s.Width+0.5 >= m.Width && s.Height+0.5 >= m.Height
}

// Flow lays its objects out left to right, wrapping onto as many rows as
// Rows when the width runs out; its minimum height is Rows rows, so a list
// row of chips keeps one height whatever the chips.
type Flow struct {
	Rows int
}

// Layout implements fyne.Layout.
func (f *Flow) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	gap := theme.Padding()
	x, y, rowH := float32(0), float32(0), float32(0)
	for _, o := range objs {
		if !o.Visible() {
			continue
		}
		m := o.MinSize()
		if x > 0 && x+m.Width > size.Width {
			x, y = 0, y+rowH+gap
			rowH = 0
		}
		o.Move(fyne.NewPos(x, y))
		o.Resize(m)
		x += m.Width + gap
		rowH = max(rowH, m.Height)
	}
}

// MinSize implements fyne.Layout: the widest object, Rows rows high.
func (f *Flow) MinSize(objs []fyne.CanvasObject) fyne.Size {
	var w, h float32
	for _, o := range objs {
		if !o.Visible() {
			continue
		}
		m := o.MinSize()
		w, h = max(w, m.Width), max(h, m.Height)
	}
	if h == 0 {
		h = NewChip("X", ChipNeutral).MinSize().Height
	}
	rows := float32(max(f.Rows, 1))
	return fyne.NewSize(w, rows*h+(rows-1)*theme.Padding())
}
